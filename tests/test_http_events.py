"""Function URL mapping (invocations.sources.http): requests to payload 2.0 events, results to HTTP, CORS.

No database: plain pytest functions over django.test.RequestFactory requests.
"""

import base64
import copy
import json
import pickle
from datetime import datetime, timezone

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory

from invocations.sources.http import (
    FUNCTION_ERROR,
    THROTTLED,
    TIMED_OUT,
    apply_cors,
    build_event,
    error_response,
    preflight_response,
    response_from_result,
)

rf = RequestFactory()

# The request payload example of https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html
# ("Request payload format"), copied as published.
DOC_REQUEST_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/my/path",
    "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
    "cookies": ["cookie1", "cookie2"],
    "headers": {"header1": "value1", "header2": "value1,value2"},
    "queryStringParameters": {"parameter1": "value1,value2", "parameter2": "value"},
    "requestContext": {
        "accountId": "123456789012",
        "apiId": "<urlid>",
        "authentication": None,
        "authorizer": {
            "iam": {
                "accessKey": "AKIA...",
                "accountId": "111122223333",
                "callerId": "AIDA...",
                "cognitoIdentity": None,
                "principalOrgId": None,
                "userArn": "arn:aws:iam::111122223333:user/example-user",
                "userId": "AIDA...",
            }
        },
        "domainName": "<url-id>.lambda-url.us-west-2.on.aws",
        "domainPrefix": "<url-id>",
        "http": {
            "method": "POST",
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "sourceIp": "123.123.123.123",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "12/Mar/2020:19:03:58 +0000",
        "timeEpoch": 1583348638390,
    },
    "body": "Hello from client!",
    "pathParameters": None,
    "isBase64Encoded": False,
    "stageVariables": None,
}

# A GET through a function URL with auth type NONE, as published by AWS in Powertools for AWS Lambda
# (tests/events/lambdaFunctionUrlEvent.json of aws-powertools/powertools-lambda-python; shown in
# https://docs.aws.amazon.com/powertools/typescript/2.16.0/api/variables/_aws-lambda-powertools_parser.schemas.LambdaFunctionUrlSchema.html).
# Its requestContext.http.userAgent was redacted to "agent" while the user-agent header was kept.
DOC_GET_EVENT = {
    "version": "2.0",
    "routeKey": "$default",
    "rawPath": "/",
    "rawQueryString": "",
    "headers": {
        "sec-fetch-mode": "navigate",
        "x-amzn-tls-version": "TLSv1.2",
        "sec-fetch-site": "cross-site",
        "accept-language": "pt-BR,pt;q=0.9",
        "x-forwarded-proto": "https",
        "x-forwarded-port": "443",
        "x-forwarded-for": "123.123.123.123",
        "sec-fetch-user": "?1",
        "accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.9",
        "x-amzn-tls-cipher-suite": "ECDHE-RSA-AES128-GCM-SHA256",
        "sec-ch-ua": '" Not A;Brand";v="99", "Chromium";v="102", "Google Chrome";v="102"',
        "sec-ch-ua-mobile": "?0",
        "x-amzn-trace-id": "Root=1-62ecd163-5f302e550dcde3b12402207d",
        "sec-ch-ua-platform": '"Linux"',
        "host": "<url-id>.lambda-url.us-east-1.on.aws",
        "upgrade-insecure-requests": "1",
        "cache-control": "max-age=0",
        "accept-encoding": "gzip, deflate, br",
        "sec-fetch-dest": "document",
        "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/102.0.0.0 Safari/537.36",
    },
    "requestContext": {
        "accountId": "anonymous",
        "apiId": "<url-id>",
        "domainName": "<url-id>.lambda-url.us-east-1.on.aws",
        "domainPrefix": "<url-id>",
        "http": {
            "method": "GET",
            "path": "/",
            "protocol": "HTTP/1.1",
            "sourceIp": "123.123.123.123",
            "userAgent": "agent",
        },
        "requestId": "id",
        "routeKey": "$default",
        "stage": "$default",
        "time": "05/Aug/2022:08:14:39 +0000",
        "timeEpoch": 1659687279885,
    },
    "isBase64Encoded": False,
}

NOW = datetime(2020, 3, 12, 19, 3, 58, tzinfo=timezone.utc)


def event_for(request, raw_path="/", **kwargs):
    kwargs.setdefault("api_id", "abc123")
    kwargs.setdefault("request_id", "req-1")
    kwargs.setdefault("now", NOW)
    return build_event(request, raw_path=raw_path, **kwargs)


def wsgi_headers(response):
    """The (name, value) header list Django's real WSGI handler hands the server for `response`."""

    class Handler(WSGIHandler):
        def get_response(self, request):
            return response

    seen = []
    Handler()(rf.get("/").environ, lambda status, headers: seen.extend(headers))
    return seen


def set_cookies(headers):
    # Django writes Set-Cookie values as Morsel.output(header=""), which starts with a space (for its
    # own cookies too); the HTTP server sends it as optional whitespace after the colon.
    return [value.lstrip() for name, value in headers if name == "Set-Cookie"]


# --- build_event ---------------------------------------------------------------------------------


def test_doc_request_example_field_by_field():
    request = rf.post(
        "/url/abc/my/path?parameter1=value1&parameter1=value2&parameter2=value",
        data="Hello from client!",
        content_type="text/plain",
        headers={
            "header1": "value1",
            "header2": "value1,value2",  # what gunicorn makes of two "Header2:" lines
            "cookie": "cookie1; cookie2",
            "user-agent": "agent",
            "host": "<url-id>.lambda-url.us-west-2.on.aws",
        },
        REMOTE_ADDR="123.123.123.123",
    )
    event = build_event(
        request, raw_path="/my/path", api_id="<urlid>", request_id="id", account_id="123456789012", now=NOW
    )

    expected = copy.deepcopy(DOC_REQUEST_EVENT)
    # Present only for AWS_IAM auth; the docs say Lambda "sets this to null or excludes this from the JSON".
    for key in ("pathParameters", "stageVariables"):
        del expected[key]
    for key in ("authentication", "authorizer"):
        del expected["requestContext"][key]
    # The docs' timeEpoch (04 Mar 2020 19:03:58.390) does not match its own "time" (12 Mar), so it is
    # checked separately below; the docs list only two example headers, a real request carries more.
    expected["requestContext"]["timeEpoch"] = 1584039838000
    expected["headers"].update(
        {
            "user-agent": "agent",
            "host": "<url-id>.lambda-url.us-west-2.on.aws",
            "content-type": "text/plain",
            "content-length": "18",
        }
    )
    assert event == expected
    assert list(event) == [k for k in DOC_REQUEST_EVENT if k in event]  # same keys, same order
    assert json.loads(json.dumps(event)) == event  # plain JSON types only


def test_doc_time_epoch_is_milliseconds():
    now = datetime(2020, 3, 4, 19, 3, 58, 390000, tzinfo=timezone.utc)
    context = event_for(rf.get("/"), now=now)["requestContext"]
    assert context["timeEpoch"] == DOC_REQUEST_EVENT["requestContext"]["timeEpoch"]
    assert context["time"] == "04/Mar/2020:19:03:58 +0000"


def test_published_get_event_exactly():
    headers = {k: v for k, v in DOC_GET_EVENT["headers"].items()}
    request = rf.get("/url/abc/", headers=headers, REMOTE_ADDR="123.123.123.123")
    now = datetime(2022, 8, 5, 8, 14, 39, 885000, tzinfo=timezone.utc)
    event = build_event(request, raw_path="/", api_id="<url-id>", request_id="id", now=now)

    expected = copy.deepcopy(DOC_GET_EVENT)
    expected["requestContext"]["http"]["userAgent"] = headers["user-agent"]  # undo the redaction
    assert event == expected


def test_time_in_other_timezone_is_converted_to_utc():
    from zoneinfo import ZoneInfo

    now = datetime(2020, 3, 12, 20, 3, 58, tzinfo=ZoneInfo("Europe/Paris"))
    assert event_for(rf.get("/"), now=now)["requestContext"]["time"] == "12/Mar/2020:19:03:58 +0000"


def test_default_now_is_current_time():
    before = int(datetime.now(timezone.utc).timestamp() * 1000)
    event = build_event(rf.get("/"), raw_path="/", api_id="a", request_id="r")
    assert before - 1000 <= event["requestContext"]["timeEpoch"] <= before + 5000


def test_no_body_no_query_no_cookies_are_omitted():
    event = event_for(rf.get("/x"))
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert "cookies" not in event
    assert "queryStringParameters" not in event
    assert event["rawQueryString"] == ""
    assert "content-length" not in event["headers"] and "content-type" not in event["headers"]


def test_empty_post_has_no_body():
    event = event_for(rf.post("/x", data=b"", content_type="application/octet-stream"))
    assert "body" not in event
    assert event["isBase64Encoded"] is False


def test_binary_body_is_base64():
    data = bytes(range(256))
    event = event_for(rf.post("/x", data=data, content_type="application/octet-stream"))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == data
    assert event["headers"]["content-type"] == "application/octet-stream"
    assert event["headers"]["content-length"] == "256"


def test_body_without_content_type_is_base64():
    request = rf.generic("POST", "/x", data=b"plain words", content_type="")
    event = event_for(request)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"plain words"


def test_textual_type_with_invalid_utf8_is_base64():
    # RequestFactory encodes str data in the declared charset: the body is b"caf\xe9", not UTF-8.
    event = event_for(rf.post("/x", data="café", content_type="text/plain; charset=latin-1"))
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"caf\xe9"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/html; charset=utf-8",
        "text/csv",
        "application/json",
        "Application/JSON; charset=UTF-8",
        "application/vnd.api+json",
        "application/xml",
        "application/atom+xml",
        "application/javascript",
        "application/x-www-form-urlencoded",
    ],
)
def test_textual_body_is_a_string(content_type):
    text = '{"naïve": "✓"}'
    event = event_for(rf.post("/x", data=text.encode(), content_type=content_type))
    assert event["isBase64Encoded"] is False
    assert event["body"] == text


@pytest.mark.parametrize("content_type", ["image/png", "application/pdf", "multipart/form-data; boundary=x"])
def test_non_textual_utf8_body_is_still_base64(content_type):
    event = event_for(rf.post("/x", data=b"hello", content_type=content_type))
    assert event["isBase64Encoded"] is True
    assert event["body"] == base64.b64encode(b"hello").decode()


def test_query_string_repeats_and_encoded_values():
    raw = "a=1&a=2&b=hello%20world&c=x%2By&d=&e=a+b&%C3%A9=%E2%9C%93&a=3&flag"
    event = event_for(rf.get("/x?" + raw))
    assert event["rawQueryString"] == raw  # as received
    assert event["queryStringParameters"] == {
        "a": "1,2,3",
        "b": "hello world",
        "c": "x+y",
        "d": "",
        "e": "a b",
        "é": "✓",
        "flag": "",
    }


def test_cookies_split_and_not_in_headers():
    event = event_for(rf.get("/", headers={"cookie": "a=1; b=two words;c=3; ;"}))
    assert event["cookies"] == ["a=1", "b=two words", "c=3"]
    assert "cookie" not in event["headers"]


def test_header_names_are_lower_case_with_dashes():
    request = rf.get("/", headers={"X-Custom-Header": "v1,v2", "Accept-Language": "en"})
    headers = event_for(request)["headers"]
    assert headers["x-custom-header"] == "v1,v2"
    assert headers["accept-language"] == "en"
    assert all(name == name.lower() and "_" not in name for name in headers)


def test_source_ip_protocol_method_and_path():
    request = rf.generic("DELETE", "/prefix/a%20b/c", REMOTE_ADDR="2001:db8::1", SERVER_PROTOCOL="HTTP/1.0")
    event = event_for(request, raw_path="/a%20b/c")
    assert event["rawPath"] == "/a%20b/c"
    assert event["requestContext"]["http"] == {
        "method": "DELETE",
        "path": "/a%20b/c",
        "protocol": "HTTP/1.0",
        "sourceIp": "2001:db8::1",
        "userAgent": "",
    }


@pytest.mark.parametrize(
    "host, prefix",
    [
        ("abc.lambda-url.example.com", "abc"),
        ("abc.lambda-url.example.com:8443", "abc"),
        ("localhost:8000", "localhost"),
        ("[::1]:8000", "[::1]"),
    ],
)
def test_domain_name_is_the_host_header(host, prefix):
    context = event_for(rf.get("/", headers={"host": host}))["requestContext"]
    assert context["domainName"] == host
    assert context["domainPrefix"] == prefix


# --- response_from_result -------------------------------------------------------------------------
# Examples from https://docs.aws.amazon.com/lambda/latest/dg/urls-invocation.html ("Response payload format").


def test_doc_string_response():
    response = response_from_result(json.dumps("Hello, world!"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == b'"Hello, world!"'
    assert len(response.content) == 15  # the docs' content-length


def test_doc_json_response_is_sent_as_returned():
    text = '{\n  "message": "Hello, world!"\n}'
    response = response_from_result(text)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == text.encode()


def test_doc_custom_response():
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
        "body": json.dumps({"message": "Hello, world!"}, separators=(",", ":")),
        "isBase64Encoded": False,
    }
    response = response_from_result(json.dumps(result))
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response["My-Custom-Header"] == "Custom Value"
    assert response.content == b'{"message":"Hello, world!"}'
    assert len(response.content) == 27  # the docs' content-length


def test_doc_cookies_become_separate_set_cookie_lines():
    result = {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json", "My-Custom-Header": "Custom Value"},
        "body": '{"message":"Hello, world!"}',
        "cookies": ["Cookie_1=Value1; Expires=21 Oct 2021 07:48 GMT", "Cookie_2=Value2; Max-Age=78000"],
        "isBase64Encoded": False,
    }
    headers = wsgi_headers(response_from_result(json.dumps(result)))
    assert set_cookies(headers) == result["cookies"]  # verbatim, one line each
    assert ("My-Custom-Header", "Custom Value") in headers


def test_cookies_with_the_same_name_are_all_sent():
    result = {"statusCode": 200, "cookies": ["a=1; Path=/x", "a=2; Path=/y", "flag"]}
    response = response_from_result(json.dumps(result))
    assert set_cookies(wsgi_headers(response)) == result["cookies"]
    assert response.cookies["a"].value == "1"  # name and value stay readable (e.g. by the test client)


def test_cookies_survive_pickling():
    response = response_from_result(json.dumps({"statusCode": 200, "cookies": ["s=1; HttpOnly"]}))
    copy_ = pickle.loads(pickle.dumps(response))
    assert set_cookies(wsgi_headers(copy_)) == ["s=1; HttpOnly"]


@pytest.mark.parametrize("text", ["42", "3.5", "[1, 2, 3]", "null", "true", '{"body": "x", "headers": {}}'])
def test_json_without_status_code_is_sent_as_returned(text):
    response = response_from_result(text)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response.content == text.encode()


def test_bytes_payload():
    assert response_from_result(b'"hi"').content == b'"hi"'
    assert response_from_result(b'{"statusCode": 204}').status_code == 204


def test_status_code_without_headers_or_body():
    response = response_from_result('{"statusCode": 404}')
    assert response.status_code == 404
    assert response.content == b""
    assert response["Content-Type"] == "application/json"


def test_function_content_type_wins_over_the_default():
    result = {"statusCode": 200, "headers": {"content-type": "text/html"}, "body": "<p>hi</p>"}
    response = response_from_result(json.dumps(result))
    assert response["Content-Type"] == "text/html"
    assert response.content == b"<p>hi</p>"


def test_base64_body_is_decoded():
    data = bytes(range(256))
    result = {
        "statusCode": 200,
        "headers": {"Content-Type": "image/png"},
        "body": base64.b64encode(data).decode(),
        "isBase64Encoded": True,
    }
    response = response_from_result(json.dumps(result))
    assert response.content == data
    assert response["Content-Type"] == "image/png"


def test_header_values_are_stringified_and_framing_headers_dropped():
    result = {
        "statusCode": 200,
        "headers": {"X-Count": 5, "X-Flag": True, "Content-Length": "999", "Transfer-Encoding": "chunked"},
        "body": "abc",
    }
    response = response_from_result(json.dumps(result))
    assert response["X-Count"] == "5"
    assert response["X-Flag"] == "true"
    assert "Transfer-Encoding" not in response
    assert response.get("Content-Length") in (None, "3")


def test_non_string_body_is_sent_as_json():
    response = response_from_result(json.dumps({"statusCode": 200, "body": {"a": 1}}))
    assert json.loads(response.content) == {"a": 1}


@pytest.mark.parametrize("status", ["200", "201.0", "  302 "])
def test_status_code_spelled_as_integer_is_accepted(status):
    value = json.loads(status) if "." in status else status
    assert response_from_result(json.dumps({"statusCode": value})).status_code == int(float(status))


@pytest.mark.parametrize("status", [99, 600, -1, 200.5, "abc", "", None, True, [200], {"x": 1}])
def test_invalid_status_code_is_502(status):
    response = response_from_result(json.dumps({"statusCode": status, "body": "x"}))
    assert response.status_code == 502
    assert json.loads(response.content) == {"message": "Internal Server Error"}
    assert response["Content-Type"] == "application/json"


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "",
        '{"statusCode": 200, "body": "!!!", "isBase64Encoded": true}',
        '{"statusCode": 200, "headers": ["a"]}',
        '{"statusCode": 200, "cookies": "a=1"}',
        '{"statusCode": 200, "headers": {"X-Bad": "a\\nb"}}',
    ],
)
def test_malformed_result_is_502(text):
    response = response_from_result(text)
    assert response.status_code == 502
    assert json.loads(response.content) == {"message": "Internal Server Error"}


def test_error_responses():
    for (status, message), expected in [
        (FUNCTION_ERROR, (502, "Internal Server Error")),
        (THROTTLED, (429, "Too Many Requests")),
        (TIMED_OUT, (504, "Endpoint request timed out")),
    ]:
        assert (status, message) == expected
        response = error_response(status, message)
        assert response.status_code == status
        assert response["Content-Type"] == "application/json"
        assert json.loads(response.content) == {"message": message}


# --- CORS ----------------------------------------------------------------------------------------

CORS = {
    "allow_origins": ["https://app.example.com", "http://localhost:60905"],
    "allow_methods": ["GET", "POST"],
    "allow_headers": ["content-type", "x-custom-header"],
    "expose_headers": ["x-request-id", "date"],
    "max_age": 300,
    "allow_credentials": False,
}


def preflight(origin="https://app.example.com", method="POST", headers="content-type"):
    extra = {"origin": origin, "access-control-request-method": method}
    if headers:
        extra["access-control-request-headers"] = headers
    return rf.options("/", headers=extra)


def test_preflight_from_listed_origin():
    response = preflight_response(preflight(), CORS)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert response["Access-Control-Allow-Methods"] == "GET,POST"
    assert response["Access-Control-Allow-Headers"] == "content-type,x-custom-header"
    assert response["Access-Control-Max-Age"] == "300"
    assert "Access-Control-Allow-Credentials" not in response
    assert "Access-Control-Expose-Headers" not in response
    assert response["Vary"] == "Origin"
    assert response.content == b""


def test_preflight_origin_match_ignores_case_and_trailing_slash():
    cors = {**CORS, "allow_origins": ["https://App.Example.com/"]}
    response = preflight_response(preflight(origin="https://app.example.com"), cors)
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"


def test_preflight_from_other_origin_is_refused_without_cors_headers():
    response = preflight_response(preflight(origin="https://evil.example"), CORS)
    assert response.status_code == 403
    assert json.loads(response.content) == {"message": "Forbidden"}
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]


def test_preflight_wildcard_origin():
    cors = {"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"]}
    response = preflight_response(preflight(origin="https://anyone.example"), cors)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == "*"
    assert response["Access-Control-Allow-Methods"] == "*"
    assert response["Access-Control-Allow-Headers"] == "*"
    assert "Vary" not in response
    assert "Access-Control-Max-Age" not in response


def test_preflight_wildcard_with_credentials_echoes_the_request():
    cors = {"allow_origins": ["*"], "allow_methods": ["*"], "allow_headers": ["*"], "allow_credentials": True}
    response = preflight_response(preflight(origin="https://anyone.example", method="PUT", headers="x-a,x-b"), cors)
    assert response["Access-Control-Allow-Origin"] == "https://anyone.example"
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert response["Access-Control-Allow-Methods"] == "PUT"
    assert response["Access-Control-Allow-Headers"] == "x-a,x-b"
    assert response["Vary"] == "Origin"


def test_preflight_with_credentials_from_listed_origin():
    response = preflight_response(preflight(), {**CORS, "allow_credentials": True})
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert response["Access-Control-Allow-Origin"] == "https://app.example.com"


@pytest.mark.parametrize(
    "request_, cors",
    [
        (rf.get("/", headers={"origin": "https://app.example.com"}), CORS),  # not OPTIONS
        (rf.options("/", headers={"origin": "https://app.example.com"}), CORS),  # no request method
        (rf.options("/", headers={"access-control-request-method": "GET"}), CORS),  # no origin
        (preflight(), {}),  # CORS not configured: the function answers OPTIONS itself
        (preflight(), None),
    ],
)
def test_not_a_preflight_returns_none(request_, cors):
    assert preflight_response(request_, cors) is None


def function_response(**headers):
    response = response_from_result(json.dumps({"statusCode": 200, "headers": headers, "body": "ok"}))
    assert response.status_code == 200
    return response


def test_apply_cors_for_listed_origin_overrides_function_headers():
    request = rf.get("/", headers={"origin": "http://localhost:60905"})
    response = function_response(**{"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "x-old"})
    response = apply_cors(request, response, {**CORS, "allow_credentials": True})
    assert response["Access-Control-Allow-Origin"] == "http://localhost:60905"
    assert response["Access-Control-Expose-Headers"] == "x-request-id,date"
    assert response["Access-Control-Allow-Credentials"] == "true"
    assert response["Vary"] == "Origin"
    assert "Access-Control-Allow-Methods" not in response  # preflight-only headers stay off
    assert response.content == b"ok"


def test_apply_cors_wildcard():
    request = rf.get("/", headers={"origin": "https://anyone.example"})
    response = apply_cors(request, function_response(), {"allow_origins": ["*"]})
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response
    assert "Access-Control-Expose-Headers" not in response
    assert "Vary" not in response


def test_apply_cors_other_origin_gets_no_cors_headers_even_from_the_function():
    request = rf.get("/", headers={"origin": "https://evil.example"})
    response = function_response(
        **{"Access-Control-Allow-Origin": "https://evil.example", "Access-Control-Allow-Credentials": "true"}
    )
    response = apply_cors(request, response, CORS)
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Credentials" not in response
    assert response["Vary"] == "Origin"


def test_apply_cors_keeps_existing_vary():
    request = rf.get("/", headers={"origin": "https://app.example.com"})
    response = apply_cors(request, function_response(Vary="Accept-Encoding"), CORS)
    assert response["Vary"] == "Accept-Encoding, Origin"


def test_apply_cors_without_configuration_leaves_the_function_alone():
    request = rf.get("/", headers={"origin": "https://app.example.com"})
    response = apply_cors(request, function_response(**{"Access-Control-Allow-Origin": "https://x.example"}), {})
    assert response["Access-Control-Allow-Origin"] == "https://x.example"
    assert "Vary" not in response


def test_apply_cors_without_origin_adds_nothing():
    response = apply_cors(rf.get("/"), function_response(), CORS)
    assert not [h for h in response.headers if h.lower().startswith("access-control-")]

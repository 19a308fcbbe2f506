"""Who may reach what: sign-in on every URL, one owner's objects invisible to another, CSRF on session POSTs
(../shared/reference/security-and-reliability.md §5 and §6 items 46-48)."""

import re
import re._constants as sre
import re._parser as sre_parse
from urllib.parse import quote

from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings
from django.urls import URLResolver, converters, get_resolver, resolve, reverse

from functions.models import CodeArtifact, Function, TestEvent
from invocations.buckets.urls import KeyConverter
from invocations.models import Invocation
from tests.base import BaseTestCase, handler_zip

# Pages anyone may see. Django's admin has its own sign-in page (public, like /login/): anonymous visitors
# of the admin's site-level pages (index, app lists, password change...) are sent there, those of its model
# pages and of the django-rq dashboard to the console's /login/ (LoginRequiredMiddleware acts first).
PUBLIC = {"/status/", "/login/", "/admin/login/"}
# HTTP endpoints answer anyone, authenticated by their own settings: an unknown one is a 404.
ENDPOINT_PREFIX = "/url/"
ADMIN_PREFIX = "/admin/"


def regex_example(regex):
    """Return a string the regex matches, for the simple regexes URL patterns use."""
    return _example(sre_parse.parse(regex))


def _example(parsed):
    out = []
    for op, av in parsed:
        if op is sre.LITERAL:
            out.append(chr(av))
        elif op is sre.ANY:
            out.append(".")
        elif op is sre.AT:
            pass  # ^ and $
        elif op is sre.IN:
            out.append(_example_in(av))
        elif op is sre.BRANCH:
            out.append(_example(av[1][0]))
        elif op is sre.SUBPATTERN:
            out.append(_example(av[-1]))
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            low, _, item = av
            out.append(_example(item) * max(low, 1))
        else:
            raise ValueError(f"no example for regex op {op} in a URL pattern; extend regex_example")
    return "".join(out)


def _example_in(items):
    op, av = items[0]
    if op is sre.LITERAL:
        return chr(av)
    if op is sre.RANGE:
        return chr(av[0])
    if op is sre.CATEGORY:
        return {sre.CATEGORY_DIGIT: "1", sre.CATEGORY_WORD: "a"}[av]
    raise ValueError(f"no example for character class {items}")


ROUTE_PARAMETER = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<parameter>[^>]+)>")


def walk(patterns, samples, chain=(), prefix="/"):
    """Yield (chain of patterns, concrete URL) for every URL pattern under `patterns`.

    Route parameters get a sample value by converter class (`samples`); regex patterns get an example
    string that matches them.
    """
    for p in patterns:
        if hasattr(p.pattern, "_route"):
            route = p.pattern._route

            def fill(m, converters_=p.pattern.converters):
                converter = converters_[m["parameter"]]
                return samples[type(converter)]

            piece = ROUTE_PARAMETER.sub(fill, route)
        else:
            piece = regex_example(p.pattern.regex.pattern)
        if isinstance(p, URLResolver):
            yield from walk(p.url_patterns, samples, chain + (p,), prefix + piece)
        else:
            yield chain + (p,), prefix + piece


def matches_chain(chain, url):
    """Return whether `url` goes through every pattern of `chain` (so the sample really exercises it)."""
    path = url[1:]
    for p in chain:
        match = p.pattern.match(path)
        if match is None:
            return False
        path = match[0]
    return True


def db_state():
    return [list(model.objects.order_by("pk").values()) for model in (Function, CodeArtifact, TestEvent, Invocation)]


# These tests sign in with force_login: a fast hasher saves PBKDF2's 0.3 s per user created in setUp.
@override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"])
class AccessTestCase(BaseTestCase):
    def setUp(self):
        super().setUp()
        self.fn = self.create_function(handler_zip("def handler(event, context):\n    return 'alice'\n"), name="hello")
        self.event = TestEvent.objects.create(function=self.fn, name="saved", body='{"a": 1}')
        self.invocation = Invocation.objects.create(
            function=self.fn, config=self.fn.config_snapshot(), event="{}", memory_size_mb=128,
            status=Invocation.Status.SUCCEEDED, result='"alice"',
        )


class AnonymousAccessTests(AccessTestCase):
    def urls(self):
        # Real objects' ids, so a page that forgot the sign-in check would show something rather than 404.
        samples = {
            converters.StringConverter: self.fn.name,
            converters.IntConverter: str(self.event.pk),
            converters.UUIDConverter: str(self.invocation.pk),
            converters.PathConverter: str(self.fn.pk),
            converters.SlugConverter: self.fn.name,
            KeyConverter: str(self.fn.pk),
        }
        found = list(walk(get_resolver().url_patterns, samples))
        for chain, url in found:
            assert matches_chain(chain, url), f"sample URL {url} does not match its own pattern {chain[-1]}"
        return [url for _, url in found]

    def test_it_walks_every_pattern_including_those_with_converters(self):
        urls = self.urls()
        self.assertIn("/functions/hello/", urls)
        self.assertIn(f"/functions/hello/events/{self.event.pk}/delete/", urls)
        self.assertIn(f"/invocations/{self.invocation.pk}/", urls)
        self.assertIn("/admin/django-rq/stats.json/a/", urls)
        self.assertIn("/admin/functions/", urls)
        self.assertGreater(len(urls), 50)

    def test_it_sends_anonymous_visitors_of_every_url_to_the_login_page(self):
        before = db_state()
        urls = self.urls()
        self.assertTrue(PUBLIC <= set(urls), PUBLIC - set(urls))
        wrong = []
        for url in urls:
            for method in ("get", "post"):
                response = getattr(self.client, method)(url)
                if url in PUBLIC:
                    if method == "get" and response.status_code != 200:
                        wrong.append(f"GET {url}: {response.status_code}, expected the public page")
                    continue
                if getattr(resolve(url).func, "is_api", False):
                    # Programs' APIs: no sign-in page, a 401 naming what to send.
                    if response.status_code != 401 or "__type" not in response.json():
                        wrong.append(f"{method.upper()} {url}: {response.status_code}, expected 401 from the API")
                    continue
                if getattr(resolve(url).func, "lambda_api", False):
                    # The Lambda API: unsigned is AWS's 403 (or 405 where the method names no operation).
                    expected = {403: "MissingAuthenticationTokenException", 405: "MethodNotAllowedException"}
                    if expected.get(response.status_code, "?") != response.get("x-amzn-ErrorType"):
                        wrong.append(f"{method.upper()} {url}: {response.status_code}, expected 403 from the Lambda API")
                    continue
                if getattr(resolve(url).func, "signed_link", False):
                    # A download link: public, so an unsigned (made-up) token is simply not found.
                    if response.status_code != (404 if method == "get" else 405):
                        wrong.append(f"{method.upper()} {url}: {response.status_code}, expected 404 for a bad link")
                    continue
                if url.startswith(ENDPOINT_PREFIX):
                    if response.status_code != 404 or response.json() != {"message": "Not Found"}:
                        wrong.append(f"{method.upper()} {url}: {response.status_code}, expected 404 for no endpoint")
                    continue
                logins = ["/login/"] + (["/admin/login/"] if url.startswith(ADMIN_PREFIX) else [])
                expected = [f"{login}?next={quote(url)}" for login in logins]
                location = response.get("Location")
                if response.status_code != 302 or location not in expected:
                    wrong.append(f"{method.upper()} {url}: {response.status_code} {location}, expected 302 {expected}")
        self.maxDiff = None
        self.assertEqual(wrong, [])
        self.assertEqual(db_state(), before)

    def test_it_serves_the_public_pages_anonymously(self):
        self.assertContains(self.client.get("/login/"), 'name="password"')
        self.assertEqual(self.client.get("/status/").status_code, 200)
        self.assertContains(self.client.get("/admin/login/"), 'name="password"')


class OtherOwnerTests(AccessTestCase):
    """bob, signed in, aims at alice's function, test event and invocation: 404 everywhere, nothing changes."""

    def setUp(self):
        super().setUp()
        self.client.force_login(self.bob)
        self.before = db_state()

    def assertNotFoundAndUnchanged(self, response):
        self.assertEqual(response.status_code, 404)
        self.assertEqual(db_state(), self.before)

    def test_it_hides_the_function_page(self):
        self.assertNotFoundAndUnchanged(self.client.get(reverse("functions:detail", args=["hello"])))

    def test_it_leaves_the_function_out_of_bobs_list(self):
        response = self.client.get(reverse("functions:list"))
        self.assertEqual(response.status_code, 200)
        self.assertNotContains(response, "/functions/hello/")
        self.assertEqual(list(response.context["functions"]), [])

    def test_it_refuses_to_invoke_it(self):
        response = self.client.post(reverse("functions:invoke", args=["hello"]), {"event": "{}"})
        self.assertNotFoundAndUnchanged(response)
        self.assertEqual(Invocation.objects.count(), 1)

    def test_it_refuses_to_replace_its_code(self):
        code = handler_zip("def handler(event, context):\n    return 'bob'\n")
        response = self.client.post(reverse("functions:upload_code", args=["hello"]),
                                    {"code": SimpleUploadedFile("code.zip", code, content_type="application/zip")})
        self.assertNotFoundAndUnchanged(response)

    def test_it_refuses_to_delete_it(self):
        # The console has no delete view at the moment (d726468); the URL it had must not delete either.
        self.assertNotFoundAndUnchanged(self.client.post("/functions/hello/delete/"))
        self.assertTrue(Function.objects.filter(pk=self.fn.pk).exists())

    def test_it_refuses_to_save_a_test_event_on_it(self):
        response = self.client.post(reverse("functions:save_event", args=["hello"]), {"name": "bobs", "event": "{}"})
        self.assertNotFoundAndUnchanged(response)

    def test_it_refuses_to_overwrite_its_test_event(self):
        response = self.client.post(reverse("functions:save_event", args=["hello"]), {"name": "saved", "event": "{}"})
        self.assertNotFoundAndUnchanged(response)

    def test_it_refuses_to_delete_its_test_event(self):
        response = self.client.post(reverse("functions:delete_event", args=["hello", self.event.pk]))
        self.assertNotFoundAndUnchanged(response)

    def test_it_hides_its_invocation(self):
        self.assertNotFoundAndUnchanged(self.client.get(reverse("invocations:detail", args=[self.invocation.pk])))


class CsrfTests(AccessTestCase):
    def setUp(self):
        super().setUp()
        self.browser = Client(enforce_csrf_checks=True)
        self.browser.force_login(self.alice)

    def test_it_refuses_a_delete_without_a_csrf_token(self):
        response = self.browser.post(reverse("functions:delete_event", args=["hello", self.event.pk]))
        self.assertEqual(response.status_code, 403)
        self.assertContains(response, "CSRF", status_code=403)
        self.assertTrue(TestEvent.objects.filter(pk=self.event.pk).exists())

    def test_it_refuses_an_invoke_without_a_csrf_token(self):
        response = self.browser.post(reverse("functions:invoke", args=["hello"]), {"event": "{}"})
        self.assertEqual(response.status_code, 403)
        self.assertEqual(Invocation.objects.count(), 1)

    def test_it_refuses_a_create_without_a_csrf_token(self):
        code = handler_zip("def handler(event, context):\n    return 1\n")
        response = self.browser.post(reverse("functions:create"), {
            "name": "other", "handler": "lambda_function.handler", "memory_size": "128", "timeout": "3",
            "code": SimpleUploadedFile("code.zip", code, content_type="application/zip"),
        })
        self.assertEqual(response.status_code, 403)
        self.assertEqual(Function.objects.count(), 1)

    def test_it_accepts_the_same_delete_with_the_token(self):
        # The control: with the page's token the same POST goes through, so the 403s above are CSRF's.
        self.browser.get(reverse("functions:detail", args=["hello"]))
        token = self.browser.cookies["csrftoken"].value
        response = self.browser.post(reverse("functions:delete_event", args=["hello", self.event.pk]),
                                     {"csrfmiddlewaretoken": token})
        self.assertEqual(response.status_code, 302)
        self.assertFalse(TestEvent.objects.filter(pk=self.event.pk).exists())

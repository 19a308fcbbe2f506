"""The console in a real browser: Debian's Chromium driven by Playwright against the gunicorn server.

Sign in, create a function from a ZIP, save a test event, invoke it through the real RQ workers and read
the invocation page; and see that a broken ZIP is refused with a form error naming the problem. Then what
invokes a function by itself: an HTTP endpoint called from the browser, a schedule previewed, saved and fired
by a real `run_event_sources` process, and an asynchronous event that fails into the dead-letter inbox and is
edited and redriven from there.
"""

import base64
import hashlib
import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from functions.models import Function, Trigger
from tests.base import handler_zip, make_zip
from tests.browser import browser, page, submit  # noqa: F401 (fixtures)
from tests.browser import sign_in as browser_sign_in
from tests.processes import ROOT, child_env, log_dir, wait_for


USERNAME, PASSWORD = "carol", "carol-password-1"

HANDLER = """
    def handler(event, context):
        print("hello from the browser,", event["name"])
        return {"greeting": "Hello, " + event["name"] + "!", "items": len(event["items"]), "nested": {"ok": True}}
"""


def sign_in(page):
    browser_sign_in(page, USERNAME, PASSWORD, start="/functions/")


def open_create_form(page):
    page.click("#new-function")
    page.wait_for_url(re.compile(r"/functions/new/$"))


@pytest.mark.django_db(transaction=True)
def test_create_save_event_invoke_and_read_the_invocation(page):
    from playwright.sync_api import expect

    code = handler_zip(HANDLER)
    sign_in(page)
    expect(page.locator("p.empty")).to_contain_text("No functions yet.")

    # Create the function from an in-memory ZIP.
    open_create_form(page)
    page.fill("#id_name", "hello-browser")
    page.fill("#id_handler", "lambda_function.handler")
    page.fill("#id_memory_size", "256")
    page.fill("#id_timeout", "10")
    page.set_input_files("#id_code", {"name": "hello.zip", "mimeType": "application/zip", "buffer": code})
    submit(page, "#create", r"/functions/hello-browser/$")
    expect(page.locator("#function-name")).to_have_text("hello-browser")
    expect(page.locator(".messages")).to_contain_text("Created function hello-browser.")
    expect(page.locator("#code-sha256")).to_have_text(base64.b64encode(hashlib.sha256(code).digest()).decode())
    expect(page.locator("#configuration")).to_contain_text("256 MB")
    expect(page.locator("#code")).to_contain_text("lambda_function.py")

    # Type a test event and save it under a name: the chip appears and the editor keeps the event.
    event = '{\n  "name": "Browser",\n  "items": [1, 2, 3]\n}'
    page.fill("#id_event", event)
    page.fill("#test #id_name", "three-items")
    submit(page, "#save-event", r"/functions/hello-browser/\?event=\d+#test$")
    chip = page.locator(".saved-events .chip")
    expect(chip).to_have_count(1)
    expect(chip).to_contain_text("three-items")
    expect(chip).to_have_class(re.compile(r"\bcurrent\b"))
    expect(page.locator("#id_event")).to_have_value(event)

    # Invoke: the console waits for the worker and lands on the invocation page.
    submit(page, "#invoke", r"/invocations/[0-9a-f-]{36}/$")
    expect(page.locator("#status")).to_have_text("Succeeded")
    expected_result = {"greeting": "Hello, Browser!", "items": 3, "nested": {"ok": True}}
    expect(page.locator("#result")).to_have_text(json.dumps(expected_result, indent=2))
    log = page.locator("#log")
    expect(log).to_contain_text("hello from the browser, Browser\n")
    expect(log).to_contain_text(re.compile(
        r"REPORT RequestId: [0-9a-f-]{36}\tDuration: \d+\.\d\d ms\tBilled Duration: \d+ ms\t"
        r"Memory Size: 256 MB\tMax Memory Used: \d+ MB"
    ))
    expect(page.locator("#billed-duration")).to_have_text(re.compile(r"^\d+ ms$"))
    expect(page.locator("#duration")).to_have_text(re.compile(r"^[\d,]+\.\d\d ms$"))
    expect(page.locator("#max-memory")).to_have_text(re.compile(r"^\d+ MB$"))
    expect(page.locator("#cost")).to_have_text(re.compile(r"^\$0\.0\d*[1-9]$"))
    expect(page.locator("#init-duration")).to_have_text(re.compile(r"^[\d,]+\.\d\d ms$"))  # the first run is cold
    expect(page.locator("#event")).to_have_text(json.dumps(json.loads(event), indent=2))

    shot = Path(settings.DATA_DIR) / "test-logs" / "browser-invocation.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot), full_page=True)

    # Back to the function page (the invocation is listed), then the list counts it.
    page.go_back()
    page.reload()
    expect(page.locator("#invocations tbody tr")).to_have_count(1)
    expect(page.locator("#invocations tbody tr")).to_contain_text("Succeeded")
    page.click("header nav a:text-is('Functions')")
    page.wait_for_url(re.compile(r"/functions/$"))
    row = page.locator("#functions tr.fn")
    expect(row).to_have_count(1)
    expect(row.locator("td.name")).to_have_text("hello-browser")
    expect(row.locator("td").nth(4)).to_have_text("1")  # Invocations (24 h)
    expect(row.locator("td").nth(5)).to_have_text("0")  # Errors (24 h)
    expect(row.locator("td").nth(3)).not_to_have_text("never")


@pytest.mark.django_db(transaction=True)
def test_an_invalid_zip_is_refused_with_a_form_error(page):
    from playwright.sync_api import expect

    sign_in(page)
    open_create_form(page)
    page.fill("#id_name", "broken")
    page.set_input_files("#id_code", {"name": "broken.zip", "mimeType": "application/zip",
                                      "buffer": b"this is not a zip file at all"})
    page.click("#create")
    expect(page.locator("#create-function")).to_contain_text("The file is not a valid ZIP archive.")
    assert page.url.endswith("/functions/new/")
    expect(page.locator("#id_name")).to_have_value("broken")  # the form keeps what was typed
    assert not Function.objects.filter(name="broken").exists()


@pytest.mark.django_db(transaction=True)
def test_layer_environment_versions_and_a_canary_alias(page):
    from playwright.sync_api import expect

    sign_in(page)

    # A layer whose module the handler imports.
    page.click("header nav a:text-is('Layers')")
    page.wait_for_url(re.compile(r"/layers/$"))
    page.fill("#create-layer #id_name", "greetings")
    page.check("#id_compatible_runtimes_0")
    layer_zip = make_zip({"python/greetings.py": "def hello(name):\n    return 'hi ' + name\n"})
    page.set_input_files("#id_code", {"name": "layer.zip", "mimeType": "application/zip", "buffer": layer_zip})
    submit(page, "#upload-layer", r"/layers/greetings/$")
    expect(page.locator("#layer-versions")).to_contain_text(":layer:greetings:1")

    page.goto("/functions/")
    open_create_form(page)
    page.fill("#id_name", "canary-fn")
    code = handler_zip("""
        import os, greetings
        def handler(event, context):
            return {"greeting": greetings.hello(os.environ["NAME"]), "version": context.function_version}
    """)
    page.set_input_files("#id_code", {"name": "fn.zip", "mimeType": "application/zip", "buffer": code})
    submit(page, "#create", r"/functions/canary-fn/$")

    page.select_option("#function-layers select[aria-label='Layer 1']", label="greetings:1")
    submit(page, "#save-layers", r"/functions/canary-fn/#layers$")

    # An environment variable: set in its editor, masked on the function page.
    def set_name(value):
        page.click("#edit-environment")
        page.wait_for_url(re.compile(r"/functions/canary-fn/environment/$"))
        page.fill("#id_form-0-key", "NAME")
        page.fill("#id_form-0-value", value)
        submit(page, "#save-environment", r"/functions/canary-fn/#environment$")

    set_name("first")
    expect(page.locator("#environment-table")).to_contain_text("NAME")
    expect(page.locator("#environment-table")).to_contain_text("••••••")
    assert "first" not in page.locator("#environment").inner_text()

    # Two versions, then an alias on the first with a 10% canary on the second.
    submit(page, "#publish-version", r"/functions/canary-fn/#versions$")
    set_name("second")
    submit(page, "#publish-version", r"/functions/canary-fn/#versions$")
    expect(page.locator("#version-list tbody tr")).to_have_count(2)
    page.fill("#create-alias #id_name", "live")
    page.select_option("#create-alias #id_version", "1")
    page.select_option("#create-alias #id_additional_version", "2")
    page.fill("#create-alias #id_additional_weight", "0.1")
    submit(page, "#save-alias", r"/functions/canary-fn/#aliases$")
    expect(page.locator("#alias-live")).to_contain_text("version 1, 0.10 of invocations to version 2")

    # Invoke through the alias.
    page.select_option("#id_qualifier", "live")
    page.fill("#id_event", "{}")
    submit(page, "#invoke", r"/invocations/[0-9a-f-]{36}/$")
    expect(page.locator("#status")).to_have_text("Succeeded")
    result = json.loads(page.locator("#result").inner_text())
    assert result in ({"greeting": "hi first", "version": "1"}, {"greeting": "hi second", "version": "2"}), result


BACKGROUND_TIMEOUT = 90  # seconds for what happens without the browser asking: schedules, async attempts


def create_function(page, name, body):
    """Create a function (128 MB, 10 s) from `body` through the console; land on its page."""
    page.goto("/functions/")
    open_create_form(page)
    page.fill("#id_name", name)
    page.fill("#id_handler", "lambda_function.handler")
    page.fill("#id_timeout", "10")
    page.set_input_files("#id_code", {"name": f"{name}.zip", "mimeType": "application/zip",
                                      "buffer": handler_zip(body)})
    submit(page, "#create", rf"/functions/{name}/$")


def screenshot(page, name):
    shot = log_dir() / f"browser-{name}.png"
    page.screenshot(path=str(shot), full_page=True)


def reload_until(page, locator, text, timeout=BACKGROUND_TIMEOUT):
    """Reload the page, as a user waiting for something in the background does, until `locator` reads `text`."""
    def shows():
        page.reload()
        return locator.count() == 1 and locator.inner_text().strip() == text

    if not wait_for(shows, timeout, interval=0.5):
        shown = locator.all_inner_texts()
        pytest.fail(f"{page.url}: {locator} still reads {shown} after {timeout} s, expected {text!r}")


@pytest.fixture
def scheduler(workers):
    """A real `manage.py run_event_sources` on the test database, as `./dev run` starts one; stopped with SIGTERM."""
    log_path = log_dir() / "run_event_sources.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "manage.py", "run_event_sources"], cwd=ROOT,
                                   env=child_env(PYTHONUNBUFFERED="1"), stdout=log, stderr=subprocess.STDOUT)
    try:
        # It says so as it starts polling; only then can a due tick be expected to fire.
        assert wait_for(lambda: "firing schedules" in log_path.read_text() or process.poll() is not None, 30), \
            f"run_event_sources did not start; see {log_path}"
        assert process.poll() is None, f"run_event_sources exited with {process.returncode}: {log_path.read_text()}"
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()  # so the session goes on; the test still fails below
            process.wait()
            code = None
    assert code == 0, f"run_event_sources did not exit cleanly on SIGTERM (exit {code}); see {log_path}"


@pytest.mark.django_db(transaction=True)
def test_an_http_endpoint_called_from_the_browser(page, gunicorn):
    from playwright.sync_api import expect

    sign_in(page)
    create_function(page, "web-fn", """
        def handler(event, context):
            return {"statusCode": 200, "headers": {"content-type": "text/plain"}, "body": "hi " + event["rawPath"]}
    """)
    expect(page.locator("#triggers")).to_contain_text("No triggers")

    # Add an endpoint anyone with the URL may call.
    page.click("#add-http")
    page.wait_for_url(re.compile(r"/functions/web-fn/triggers/new/http/$"))
    page.select_option("#id_auth_type", "NONE")
    submit(page, "#save-trigger", r"/functions/web-fn/#triggers$")
    expect(page.locator(".messages")).to_contain_text("Saved the HTTP endpoint.")
    row = page.locator("#trigger-list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("auth NONE")
    expect(row.locator(".trigger-count")).to_have_text("0")
    listed = row.locator("a.endpoint-url")
    expect(listed).to_have_text(re.compile(r"^/url/[a-z0-9]{32}/$"))
    path = listed.inner_text()

    # Its page shows the full URL.
    row.locator("a", has_text="HTTP endpoint").click()
    page.wait_for_url(re.compile(r"/functions/web-fn/triggers/\d+/$"))
    expect(page.locator("#endpoint-url")).to_have_text(gunicorn + path)
    url = page.locator("#endpoint-url").get_attribute("href")
    assert url == gunicorn + path, url

    # Call it, as anyone with the URL would: the function's response is the page.
    response = page.goto(url + "from/browser")
    assert response is not None and response.status == 200, response and response.status
    assert response.headers["content-type"].startswith("text/plain"), response.headers
    expect(page.locator("body")).to_have_text("hi /from/browser")

    # Back on the function page, the endpoint counts its invocation.
    page.goto("/functions/web-fn/")
    expect(page.locator("#trigger-list .trigger-count")).to_have_text("1")
    expect(page.locator("#trigger-list tbody tr")).to_contain_text("—")  # no last error
    expect(page.locator("#invocations tbody tr")).to_have_count(1)
    expect(page.locator("#invocations tbody tr")).to_contain_text("Succeeded")


@pytest.mark.django_db(transaction=True)
def test_a_schedule_previewed_saved_and_fired(page, scheduler):
    from playwright.sync_api import expect

    sign_in(page)
    create_function(page, "ticker", """
        def handler(event, context):
            return {"source": event["source"], "detail-type": event["detail-type"]}
    """)

    # A daily schedule at noon, Paris time: the preview lists the next five noons there.
    page.click("#add-schedule")
    page.wait_for_url(re.compile(r"/functions/ticker/triggers/new/schedule/$"))
    page.fill("#id_expression", "cron(0 12 * * ? *)")
    page.fill("#id_timezone", "Europe/Paris")
    with page.expect_navigation():
        page.click("#preview-button")
    times = page.locator("#preview li")
    expect(times).to_have_count(5)
    shown = times.all_inner_texts()
    for text in shown:
        assert re.fullmatch(r"\d{4}-\d\d-\d\d 12:00:00 CES?T \(\w+day\)", text), shown
    assert len(set(shown)) == 5, shown
    screenshot(page, "schedule-preview")
    expect(page.locator("#id_expression")).to_have_value("cron(0 12 * * ? *)")  # the form keeps what was typed
    assert not Trigger.objects.exists()  # a preview saves nothing

    # Changed to every minute, and saved.
    page.fill("#id_expression", "rate(1 minute)")
    submit(page, "#save-trigger", r"/functions/ticker/#triggers$")
    expect(page.locator(".messages")).to_contain_text("Saved the schedule.")
    row = page.locator("#trigger-list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("rate(1 minute) Europe/Paris")
    expect(row).to_contain_text(" · next ")
    expect(row.locator(".trigger-count")).to_have_text("0")

    # This stands in for the clock reaching the schedule's first tick (a minute away): the tick is due now,
    # and the run_event_sources process fires it within its one-second poll.
    assert Trigger.objects.filter(function__name="ticker", kind=Trigger.Kind.SCHEDULE).update(
        next_fire_at=timezone.now()) == 1

    reload_until(page, page.locator("#trigger-list .trigger-count"), "1")
    invocations = page.locator("#invocations tbody tr")
    expect(invocations).to_have_count(1)
    invocations.locator("a").click()
    page.wait_for_url(re.compile(r"/invocations/[0-9a-f-]{36}/$"))
    # The page refreshes itself until the (asynchronous) invocation has finished.
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=BACKGROUND_TIMEOUT * 1000)
    expect(page.locator("#summary")).to_contain_text("Event (schedule: Schedule)")
    event = page.locator("#event")
    expect(event).to_contain_text('"detail-type": "Scheduled Event"')
    expect(event).to_contain_text('"source": "aws.events"')
    expect(page.locator("#result")).to_contain_text('"source": "aws.events"')


@pytest.mark.django_db(transaction=True)
def test_a_failed_async_event_is_edited_and_redriven_from_the_inbox(page):
    from playwright.sync_api import expect

    sign_in(page)
    create_function(page, "flaky", """
        def handler(event, context):
            if event["fail"]:
                raise ValueError("asked to fail")
            return {"fixed": True}
    """)

    # No retries: the first failure goes straight to the dead-letter inbox.
    page.click("#async-settings")
    page.wait_for_url(re.compile(r"/functions/flaky/async/$"))
    expect(page.locator("#async-configs")).to_have_count(0)
    page.fill("#id_maximum_retry_attempts", "0")
    submit(page, "#save-async", r"/functions/flaky/async/$")
    expect(page.locator(".messages")).to_contain_text("Saved the asynchronous settings for $LATEST.")
    expect(page.locator("#async-configs tbody tr")).to_have_count(1)
    expect(page.locator("#async-configs tbody td").nth(1)).to_have_text("0")

    # Invoke asynchronously with an event that makes it raise: the answer comes at once, queued.
    page.click("h1 a:text-is('flaky')")
    page.wait_for_url(re.compile(r"/functions/flaky/$"))
    expect(page.locator("#dead-letter-link")).to_have_text("Dead-letter inbox (0)")
    page.select_option("#id_invocation_type", "Event")
    page.fill("#id_event", '{"fail": true}')
    with page.expect_navigation() as navigation:
        page.click("#invoke")
    assert navigation.value is not None and navigation.value.status == 202, navigation.value
    expect(page.locator("#status")).to_have_text("Queued")
    expect(page.locator("#summary")).to_contain_text("Event (console)")
    expect(page.locator("#attempts")).to_have_text("0 of 1")
    # The page refreshes itself until the event has had its one attempt.
    expect(page.locator("#status")).to_have_text("Failed", timeout=BACKGROUND_TIMEOUT * 1000)
    expect(page.locator("#error-type")).to_have_text("ValueError")
    expect(page.locator("#attempts")).to_have_text("1 of 1")
    expect(page.locator("#destination")).to_contain_text("dead-letter inbox")

    # The inbox holds it, with its error; fix the payload and redrive it.
    page.click("h1 a:text-is('flaky')")
    page.wait_for_url(re.compile(r"/functions/flaky/$"))
    expect(page.locator("#dead-letter-link")).to_have_text("Dead-letter inbox (1)")
    page.click("#dead-letter-link")
    page.wait_for_url(re.compile(r"/functions/flaky/dead-letters/$"))
    letter = page.locator("article.dead-letter")
    expect(letter).to_have_count(1)
    expect(letter.locator(".error-type")).to_have_text("ValueError")
    expect(letter).to_contain_text("RetriesExhausted")
    expect(letter.locator("pre.json")).to_contain_text("asked to fail")
    payload = letter.locator("textarea")
    expect(payload).to_have_value('{"fail": true}')
    screenshot(page, "dead-letter-inbox")
    payload.fill('{"fail": false}')
    submit(page, "article.dead-letter button:text-is('Save and redrive')", r"/functions/flaky/dead-letters/$")
    expect(page.locator(".messages")).to_contain_text(re.compile(r"Redrove event [0-9a-f-]{36} as invocation"))
    expect(page.locator("#inbox-empty")).to_have_text("The inbox is empty.")
    expect(page.locator("#redrive-all")).to_have_count(0)

    # Follow it from "Recently redriven" to the new invocation: it succeeds with the edited payload.
    redriven = page.locator("#redriven tbody tr")
    expect(redriven).to_have_count(1)
    redriven.locator("td").nth(2).locator("a").click()
    page.wait_for_url(re.compile(r"/invocations/[0-9a-f-]{36}/$"))
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=BACKGROUND_TIMEOUT * 1000)
    expect(page.locator("#summary")).to_contain_text("Event (redrive)")
    expect(page.locator("#event")).to_have_text(json.dumps({"fail": False}, indent=2))
    expect(page.locator("#result")).to_have_text(json.dumps({"fixed": True}, indent=2))

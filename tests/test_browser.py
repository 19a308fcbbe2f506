"""The console in a real browser: Debian's Chromium driven by Playwright against the gunicorn server.

Sign in, create a function from a ZIP, save a test event, invoke it through the real RQ workers and read
the invocation page; and see that a broken ZIP is refused with a form error naming the problem.
"""

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from functions.models import Function
from tests.base import handler_zip, make_zip

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000  # an invocation's cold start runs through a worker and a sandbox; give it room

USERNAME, PASSWORD = "carol", "carol-password-1"

HANDLER = """
    def handler(event, context):
        print("hello from the browser,", event["name"])
        return {"greeting": "Hello, " + event["name"] + "!", "items": len(event["items"]), "nested": {"ok": True}}
"""


@pytest.fixture(scope="module")
def browser():
    if shutil.which("chromium") is None:
        reason = "chromium is not installed (apt-get install chromium); skipping the browser tests"
        print(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, gunicorn):
    context = browser.new_context(base_url=gunicorn, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page):
    User.objects.create_user(USERNAME, password=PASSWORD)
    page.goto("/functions/")
    # Not signed in: the console sends us to the sign-in page, which brings us back afterwards.
    page.wait_for_url(re.compile(r"/login/\?next=/functions/$"))
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_url(re.compile(r"/functions/$"))


def submit(page, selector, path_pattern):
    """Click a submit button; fail at once, with the address, unless it lands on an OK page at `path_pattern`."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    response = navigation.value
    assert response is not None and response.ok, f"{selector} landed on {page.url} with HTTP {response and response.status}"
    assert re.search(path_pattern, page.url), f"{selector} landed on {page.url}, expected {path_pattern}"


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

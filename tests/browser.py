"""What the browser tests share: Debian's Chromium driven by Playwright against the gunicorn server.

The fixtures are imported into each browser test module (`from tests.browser import browser, page`).
"""

import re
import shutil

import pytest
from django.contrib.auth.models import User

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 30_000  # an invocation's cold start runs through a worker and a sandbox; give it room


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


def sign_in(page, username, password, start="/functions/"):
    """Create the user, open `start` and sign in through the page the console sends us to."""
    User.objects.create_user(username, password=password)
    page.goto(start)
    # Not signed in: the console sends us to the sign-in page, which brings us back afterwards.
    page.wait_for_url(re.compile(rf"/login/\?next={re.escape(start)}$"))
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#sign-in")
    page.wait_for_url(re.compile(rf"{re.escape(start)}$"))


def submit(page, selector, path_pattern):
    """Click a submit button; fail at once, with the address, unless it lands on an OK page at `path_pattern`."""
    with page.expect_navigation() as navigation:
        page.click(selector)
    response = navigation.value
    assert response is not None and response.ok, \
        f"{selector} landed on {page.url} with HTTP {response and response.status}"
    assert re.search(path_pattern, page.url), f"{selector} landed on {page.url}, expected {path_pattern}"

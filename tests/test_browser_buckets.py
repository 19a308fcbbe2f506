"""A storage bucket in a real browser (Debian's Chromium driven by Playwright against the gunicorn server).

Create a bucket, add a notification from it to a function whose handler reads the object at
/mnt/<bucket>/<key>, upload two files from the bucket page (each with its progress bar reaching 100%), and
see the invocation the matching one caused succeed, on the function page and the invocation's page, with
the object's content.
"""

import json
import os
import re

import pytest

from functions.models import Trigger
from invocations.buckets.models import Object
from tests.base import handler_zip
from tests.browser import browser, page, submit  # noqa: F401 (fixtures)
from tests.browser import sign_in as browser_sign_in
from tests.processes import log_dir, wait_for

BACKGROUND_TIMEOUT = 90  # seconds for what happens without the browser asking: an asynchronous invocation

USERNAME, PASSWORD = "erin", "erin-password-1"

READER = """
    import urllib.parse

    def handler(event, context):
        s3 = event["Records"][0]["s3"]
        key = urllib.parse.unquote_plus(s3["object"]["key"])
        with open("/mnt/" + s3["bucket"]["name"] + "/" + key, "rb") as f:
            data = f.read()
        return {"key": key, "size": len(data), "text": data.decode()}
"""


def sign_in(page):
    browser_sign_in(page, USERNAME, PASSWORD, start="/buckets/")


def screenshot(page, name):
    page.screenshot(path=str(log_dir() / f"browser-{name}.png"), full_page=True)


def reload_until(page, locator, text, timeout=BACKGROUND_TIMEOUT):
    """Reload the page, as a user waiting for something in the background does, until `locator` reads `text`."""
    def shows():
        page.reload()
        return locator.count() == 1 and locator.inner_text().strip() == text

    if not wait_for(shows, timeout, interval=0.5):
        pytest.fail(f"{page.url}: {locator} still reads {locator.all_inner_texts()} after {timeout} s, "
                    f"expected {text!r}")


@pytest.mark.django_db(transaction=True)
def test_an_upload_to_a_bucket_invokes_the_function_that_reads_it(page):
    from playwright.sync_api import expect

    sign_in(page)
    expect(page.locator("p.empty")).to_contain_text("No buckets yet.")

    # A bucket.
    page.fill("#id_name", "browser-uploads")
    submit(page, "#create", r"/buckets/browser-uploads/$")
    expect(page.locator(".messages")).to_contain_text("Created bucket browser-uploads.")
    expect(page.locator("#objects")).to_contain_text("No objects yet")

    # A function whose handler reads the object its event names.
    page.goto("/functions/new/")
    page.fill("#id_name", "reader")
    page.fill("#id_handler", "lambda_function.handler")
    page.fill("#id_timeout", "10")
    page.set_input_files("#id_code", {"name": "reader.zip", "mimeType": "application/zip",
                                      "buffer": handler_zip(READER)})
    submit(page, "#create", r"/functions/reader/$")

    # Its notification from the bucket: objects created under incoming/ ending in .txt.
    page.click("#add-bucket")
    page.wait_for_url(re.compile(r"/functions/reader/triggers/new/bucket/$"))
    page.select_option("#id_bucket", label="browser-uploads")
    expect(page.locator("input[name=events][value='s3:ObjectCreated:*']")).to_be_checked()
    page.fill("#id_prefix", "incoming/")
    page.fill("#id_suffix", ".txt")
    submit(page, "#save-trigger", r"/functions/reader/#triggers$")
    expect(page.locator(".messages")).to_contain_text("Saved the bucket notification.")
    row = page.locator("#trigger-list tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("browser-uploads · s3:ObjectCreated:* · prefix incoming/ · suffix .txt")
    expect(row.locator(".trigger-count")).to_have_text("0")

    # Two files at once from the bucket page, under incoming/: a text file the notification takes, and a
    # larger one it does not (its suffix). Each shows its own progress bar, up to 100%.
    page.goto("/buckets/browser-uploads/")
    page.fill("#upload-prefix", "incoming/")
    text = "Hello from Chromium, with a bucket trigger!\n"
    big = os.urandom(3 * 1024 * 1024)
    page.set_input_files("#upload-files", [
        {"name": "hello world.txt", "mimeType": "text/plain", "buffer": text.encode()},
        {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": big},
    ])
    page.click("#upload-button")
    uploads = page.locator("#uploads li")
    expect(uploads).to_have_count(2)
    for name in ("incoming/hello world.txt", "incoming/big.bin"):
        item = uploads.filter(has_text=name)
        expect(item).to_have_class(re.compile(r"\bok\b"))
        expect(item.locator(".percent")).to_have_text("100%")
        assert item.locator("progress").evaluate("bar => bar.value === bar.max && bar.max > 0")
        expect(item.locator(".upload-status")).to_contain_text("uploaded")
    expect(page.locator("#uploads-done")).to_be_visible()
    screenshot(page, "bucket-uploads")
    assert Object.objects.get(key="incoming/big.bin").size == len(big)

    # The listing shows them, in their folder.
    page.click("#uploads-done a")
    page.wait_for_load_state()
    folder = page.locator("#object-list tr.folder")
    expect(folder).to_contain_text("incoming/")
    expect(folder).to_contain_text("2 objects")
    folder.locator("a").click()
    page.wait_for_url(re.compile(r"/buckets/browser-uploads/\?prefix=incoming%2F$"))
    expect(page.locator("#object-list tr.object .key")).to_have_text(["big.bin", "hello world.txt"])
    screenshot(page, "bucket-listing")

    # The function page counts the one invocation the text file caused; it succeeds with the file's content.
    page.goto("/functions/reader/")
    reload_until(page, page.locator("#trigger-list .trigger-count"), "1")
    invocations = page.locator("#invocations tbody tr")
    expect(invocations).to_have_count(1)
    invocations.locator("a").click()
    page.wait_for_url(re.compile(r"/invocations/[0-9a-f-]{36}/$"))
    # The page refreshes itself until the (asynchronous) invocation has finished.
    expect(page.locator("#status")).to_have_text("Succeeded", timeout=BACKGROUND_TIMEOUT * 1000)
    expect(page.locator("#event")).to_contain_text('"key": "incoming/hello+world.txt"')
    expect(page.locator("#event")).to_contain_text('"eventName": "ObjectCreated:Put"')
    result = json.loads(page.locator("#result").inner_text())
    assert result == {"key": "incoming/hello world.txt", "size": len(text.encode()), "text": text}, result
    assert Trigger.objects.get().invocations.count() == 1

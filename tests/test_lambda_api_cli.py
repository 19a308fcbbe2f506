"""The README's AWS CLI example, run as written (with this test server's URL and a fresh key) by the real
AWS CLI (awscli v1, in .venv) against gunicorn."""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from functions.forms import host_runtime
from functions.models import Function
from invocations.models import Invocation
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase
from tests.processes import ROOT

HELLO = """\
def handler(event, context):
    print("hello from", context.function_name)
    return {"greeting": "hello " + event["name"]}
"""


def readme_example():
    """The lines of the README's fenced block that follows the <!-- aws-cli-example --> marker."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- aws-cli-example -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "README.md has no <!-- aws-cli-example --> block"
    return block.group(1)


@pytest.mark.usefixtures("workers")
class ReadmeExampleTests(ApiTestCase):
    def test_the_readmes_three_lines_deploy_and_invoke_a_function(self):
        script = readme_example()
        self.assertEqual(len(script.strip().splitlines()), 3, script)
        # The placeholders a reader fills in from the Access keys page, and this server's address.
        script = (script.replace("http://127.0.0.1:8000", self.base_url)
                  .replace("AKIA…", self.key.access_key_id).replace("SECRET…", self.secret))
        if host_runtime() != "python3.11":
            script = script.replace("python3.11", host_runtime())
        work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        (work / "hello.zip").write_bytes(handler_zip(HELLO))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"  # .venv/bin/aws
        env["HOME"] = str(work)  # no ~/.aws of the machine's
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env,
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, done.stderr)
        function = Function.objects.get(owner=self.alice, name="hello")
        self.assertEqual(function.handler, "lambda_function.handler")
        # The decoded log tail and the result, as the README promises.
        self.assertIn("START RequestId:", done.stdout)
        self.assertIn("hello from hello", done.stdout)
        self.assertIn("REPORT RequestId:", done.stdout)
        self.assertEqual((work / "out.json").read_text(), '{"greeting": "hello world"}')
        invocation = Invocation.objects.get(function=function)
        self.assertEqual(invocation.status, "SUCCEEDED")
        self.assertIn(f"START RequestId: {invocation.request_id}", done.stdout)

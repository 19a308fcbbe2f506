"""A deploy script, end to end, as a user's CI would run it (issue 8, item 5): boto3 creates a function
from a ZIP, invokes it every way, reads the log tail, publishes versions, moves an alias with a weight,
updates code and configuration, sets concurrency and async settings, lists with paging and deletes; and the
same cycle with the AWS CLI. Against the real gunicorn, workers and sandboxes; the console sees it all."""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from functions.forms import host_runtime
from functions.models import Alias, EventInvokeConfig, Function
from invocations.models import Invocation
from tests.base import handler_zip
from tests.lambda_api import ApiTestCase

V1 = """
    def handler(event, context):
        print("v1 got", event)
        return {"version": context.function_version, "code": 1, "event": event}
"""
V2 = """
    import os
    def handler(event, context):
        print("v2 got", event)
        return {"version": context.function_version, "code": 2, "greeting": os.environ.get("GREETING")}
"""
ROLE = "arn:aws:iam::000000000001:role/deploy"


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.mark.usefixtures("workers")
class Boto3DeployTests(ApiTestCase):
    def test_a_deploy_script_runs_through_every_step(self):
        lam = self.lam
        created = lam.create_function(FunctionName="deployed", Runtime=host_runtime(), Role=ROLE,
                                      Handler="lambda_function.handler", Code={"ZipFile": handler_zip(V1)},
                                      MemorySize=256, Timeout=10)
        self.assertEqual(created["State"], "Active")
        lam.get_waiter("function_active_v2").wait(FunctionName="deployed")

        # Every way to invoke.
        response = lam.invoke(FunctionName="deployed", Payload=b'{"n": 1}', LogType="Tail")
        self.assertEqual(json.loads(response["Payload"].read()), {"version": "$LATEST", "code": 1, "event": {"n": 1}})
        log = base64.b64decode(response["LogResult"]).decode()
        self.assertIn("v1 got {'n': 1}", log)
        self.assertIn("REPORT RequestId:", log)
        self.assertEqual(lam.invoke(FunctionName="deployed", InvocationType="Event", Payload=b'{"n": 2}')["StatusCode"], 202)
        self.assertEqual(lam.invoke(FunctionName="deployed", InvocationType="DryRun")["StatusCode"], 204)
        function = Function.objects.get(owner=self.alice, name="deployed")
        wait_for(lambda: Invocation.objects.filter(function=function, kind=Invocation.Kind.ASYNC, status="SUCCEEDED").exists())

        # Version 1, an alias on it; then new code and configuration, version 2, and a 10% canary.
        self.assertEqual(lam.publish_version(FunctionName="deployed", Description="first")["Version"], "1")
        lam.create_alias(FunctionName="deployed", Name="live", FunctionVersion="1")
        lam.update_function_code(FunctionName="deployed", ZipFile=handler_zip(V2))
        lam.get_waiter("function_updated_v2").wait(FunctionName="deployed")
        lam.update_function_configuration(FunctionName="deployed", MemorySize=512,
                                          Environment={"Variables": {"GREETING": "hi"}})
        lam.get_waiter("function_updated_v2").wait(FunctionName="deployed")
        self.assertEqual(lam.publish_version(FunctionName="deployed")["Version"], "2")
        alias = lam.update_alias(FunctionName="deployed", Name="live",
                                 RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})
        self.assertEqual(alias["RoutingConfig"], {"AdditionalVersionWeights": {"2": 0.1}})
        live = Alias.objects.get(function=function, name="live")
        self.assertEqual((live.version.number, live.additional_version.number, live.additional_weight), (1, 2, 0.1))
        served = {json.loads(lam.invoke(FunctionName="deployed", Qualifier="live")["Payload"].read())["version"]
                  for _ in range(3)}
        self.assertLessEqual(served, {"1", "2"})
        by_arn = lam.invoke(FunctionName=f"{created['FunctionArn']}:2")
        self.assertEqual(by_arn["ExecutedVersion"], "2")
        self.assertEqual(json.loads(by_arn["Payload"].read()), {"version": "2", "code": 2, "greeting": "hi"})
        lam.update_alias(FunctionName="deployed", Name="live", FunctionVersion="2", RoutingConfig={})

        # Concurrency and asynchronous settings, read back through the API and seen by the console's models.
        lam.put_function_concurrency(FunctionName="deployed", ReservedConcurrentExecutions=5)
        self.assertEqual(lam.get_function_concurrency(FunctionName="deployed")["ReservedConcurrentExecutions"], 5)
        lam.put_function_event_invoke_config(FunctionName="deployed", MaximumRetryAttempts=0,
                                             MaximumEventAgeInSeconds=120)
        config = lam.get_function_event_invoke_config(FunctionName="deployed")
        self.assertEqual((config["MaximumRetryAttempts"], config["MaximumEventAgeInSeconds"]), (0, 120))
        function.refresh_from_db()
        self.assertEqual(function.reserved_concurrency, 5)
        self.assertEqual(function.memory_size, 512)
        self.assertEqual(EventInvokeConfig.objects.get(function=function).maximum_retry_attempts, 0)

        # Lists with paging: three more functions, two to a page.
        for name in ("a-one", "a-two", "a-three"):
            lam.create_function(FunctionName=name, Runtime=host_runtime(), Role=ROLE,
                                Handler="lambda_function.handler", Code={"ZipFile": handler_zip(V1)})
        pages = list(lam.get_paginator("list_functions").paginate(PaginationConfig={"PageSize": 2}))
        self.assertEqual(len(pages), 2)
        self.assertEqual(sorted(f["FunctionName"] for p in pages for f in p["Functions"]),
                         ["a-one", "a-three", "a-two", "deployed"])
        versions = lam.list_versions_by_function(FunctionName="deployed")["Versions"]
        self.assertEqual([v["Version"] for v in versions], ["$LATEST", "1", "2"])

        # Delete: gone for the API and for the console.
        lam.delete_alias(FunctionName="deployed", Name="live")
        lam.delete_function(FunctionName="deployed")
        with self.assertRaises(ClientError) as caught:
            lam.get_function(FunctionName="deployed")
        self.assertApiError(caught, "ResourceNotFoundException", 404)
        self.assertFalse(Function.objects.filter(owner=self.alice, name="deployed").exists())
        # bob saw none of it.
        self.assertEqual(self.bob_lam.list_functions()["Functions"], [])


@pytest.mark.usefixtures("workers")
class CliDeployTests(ApiTestCase):
    def aws(self, *args):
        """Run the AWS CLI (awscli v1, from .venv) against the test server; return its parsed JSON output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ENDPOINT_URL_LAMBDA=self.base_url, AWS_ACCESS_KEY_ID=self.key.access_key_id,
                   AWS_SECRET_ACCESS_KEY=self.secret, AWS_DEFAULT_REGION=self.lam.meta.region_name,
                   HOME=str(self.work))
        done = subprocess.run([str(Path(sys.executable).with_name("aws")), "lambda", *args], cwd=self.work, env=env,
                              capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 0, f"aws lambda {' '.join(args)}: {done.stderr}")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def test_the_aws_cli_deploys_publishes_and_deletes(self):
        self.work = Path(self.enterContext(tempfile.TemporaryDirectory()))
        (self.work / "v1.zip").write_bytes(handler_zip(V1))
        (self.work / "v2.zip").write_bytes(handler_zip(V2))
        (self.work / "event.json").write_text('{"from": "cli"}')
        created = self.aws("create-function", "--function-name", "cli-fn", "--runtime", host_runtime(),
                           "--role", ROLE, "--handler", "lambda_function.handler", "--zip-file", "fileb://v1.zip")
        self.assertEqual(created["Role"], ROLE)
        self.aws("wait", "function-active-v2", "--function-name", "cli-fn")
        result = self.aws("invoke", "--function-name", "cli-fn", "--payload", "fileb://event.json",
                          "--log-type", "Tail", "out.json")
        self.assertIn('v1 got {\'from\': \'cli\'}', base64.b64decode(result["LogResult"]).decode())
        self.assertEqual(json.loads((self.work / "out.json").read_text())["event"], {"from": "cli"})
        self.aws("update-function-code", "--function-name", "cli-fn", "--zip-file", "fileb://v2.zip")
        self.aws("update-function-configuration", "--function-name", "cli-fn", "--environment",
                 "Variables={GREETING=cli}")
        self.aws("wait", "function-updated-v2", "--function-name", "cli-fn")
        self.assertEqual(self.aws("publish-version", "--function-name", "cli-fn")["Version"], "1")
        self.aws("create-alias", "--function-name", "cli-fn", "--name", "prod", "--function-version", "1")
        self.aws("invoke", "--function-name", "cli-fn", "--qualifier", "prod", "out.json")
        self.assertEqual(json.loads((self.work / "out.json").read_text()),
                         {"version": "1", "code": 2, "greeting": "cli"})
        names = [f["FunctionName"] for f in self.aws("list-functions")["Functions"]]
        self.assertEqual(names, ["cli-fn"])
        # The console shows what the CLI did.
        function = Function.objects.get(owner=self.alice, name="cli-fn")
        self.assertEqual(function.environment, {"GREETING": "cli"})
        self.assertEqual(Invocation.objects.filter(function=function, source="api").count(), 2)
        self.aws("delete-alias", "--function-name", "cli-fn", "--name", "prod")
        self.aws("delete-function", "--function-name", "cli-fn")
        self.assertFalse(Function.objects.filter(owner=self.alice).exists())

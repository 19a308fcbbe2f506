"""Encrypt every stored environment, and every API secret access key, with the first of ENVIRONMENT_KEYS.

Rotation: put a new key first in ENVIRONMENT_KEYS (keep the old one after it), restart, run this, then
drop the old key. Published versions and queued invocations carry a token of their own, so they are
rotated too; finished invocations keep theirs (nothing decrypts a finished invocation's environment).
"""

from django.core.management.base import BaseCommand
from django.db import transaction

from console.models import AccessKey
from functions import envvars
from functions.models import Function, Version
from invocations.models import Invocation


class Command(BaseCommand):
    help = ("Re-encrypt every function's environment variables and every API secret access key with the first "
            "key of ENVIRONMENT_KEYS.")

    def handle(self, *args, **options):
        functions = invocations = 0
        with transaction.atomic():
            for function in Function.objects.exclude(environment_token="").select_for_update():
                function.environment_token = envvars.rotate(function.environment_token)
                function.save(update_fields=["environment_token"])
                functions += 1
            versions = 0
            for version in Version.objects.exclude(config__environment_token="").select_for_update():
                if version.config.get("environment_token"):
                    version.config["environment_token"] = envvars.rotate(version.config["environment_token"])
                    version.save(update_fields=["config"])
                    versions += 1
            waiting = Invocation.objects.filter(status__in=[Invocation.Status.QUEUED, Invocation.Status.RUNNING])
            for invocation in waiting.select_for_update():
                if invocation.config.get("environment_token"):
                    invocation.config["environment_token"] = envvars.rotate(invocation.config["environment_token"])
                    invocation.save(update_fields=["config"])
                    invocations += 1
            keys = 0
            for key in AccessKey.objects.select_for_update():
                key.secret_token = envvars.rotate(key.secret_token)
                key.save(update_fields=["secret_token"])
                keys += 1
        self.stdout.write(f"Re-encrypted the environment of {functions} functions, {versions} published versions "
                          f"and {invocations} waiting invocations, and {keys} API secret access keys.")

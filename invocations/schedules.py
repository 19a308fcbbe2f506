"""Fire schedules: each tick of an enabled schedule invokes its function once, asynchronously, with
EventBridge's Scheduled Event.

Any number of schedulers may run (`manage.py run_event_sources`, one per `./dev run`): a tick belongs to the
one whose conditional UPDATE moves the schedule's `next_fire_at` past it, in the transaction that records
the invocation, so each tick fires exactly once.
"""

import json
import logging
import os
import socket
import uuid
from datetime import timezone as dt_timezone

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from functions.models import Alias, Trigger, Version, account_id
from invocations import queue
from invocations.invoke import invoke
from invocations.models import Invocation
from invocations.sources import schedule

log = logging.getLogger(__name__)

# Names the Scheduled Event ids, which are derived from (schedule, tick) so a tick has one id.
EVENT_ID_NAMESPACE = uuid.UUID("6f1f8a5e-4d1c-4a59-9d62-2c6a1f0e7b3d")


# A runner says it is alive at each pass; /status/ reads it.
HEARTBEAT_SECONDS = 10


def _heartbeat_key():
    return f"{settings.INVOCATION_QUEUE}:schedule-runner"


def beat():
    """Record that a schedule runner is polling (for HEARTBEAT_SECONDS)."""
    queue.connection().set(_heartbeat_key(), f"{socket.gethostname()}:{os.getpid()}", ex=HEARTBEAT_SECONDS)


def runner():
    """The host:pid of a schedule runner that polled within HEARTBEAT_SECONDS, or None."""
    value = queue.connection().get(_heartbeat_key())
    return value.decode() if value else None


def next_tick(trigger, after):
    expression = schedule.parse(trigger.config["expression"])
    return expression.next_after(after, trigger.config.get("timezone", "UTC"), trigger.created_at)


def arm(trigger, now=None):
    """Set a saved schedule's next tick from now (none while it is disabled)."""
    following = next_tick(trigger, now or timezone.now()) if trigger.enabled else None
    Trigger.objects.filter(pk=trigger.pk).update(next_fire_at=following)
    trigger.next_fire_at = following


def fire_due(now=None):
    """Fire every schedule whose tick has come; return the invocations made.

    Ticks missed while nothing was running fire once, as one late invocation (its event's time is the
    first missed tick), not once each: the next tick is the first one after now.
    """
    now = now or timezone.now()
    fired = []
    due = Trigger.objects.filter(kind=Trigger.Kind.SCHEDULE, enabled=True, next_fire_at__lte=now)
    for trigger in due.select_related("function", "function__owner"):
        tick = trigger.next_fire_at
        following = next_tick(trigger, now)
        try:
            with transaction.atomic():
                won = Trigger.objects.filter(pk=trigger.pk, enabled=True, next_fire_at=tick).update(
                    next_fire_at=following)
                if won:
                    fired.append(fire(trigger, tick))
        except (Version.DoesNotExist, Alias.DoesNotExist):
            # Its alias or version was deleted: the tick is skipped, and said so in the log.
            log.warning("schedule %s: %s no longer exists; tick %s skipped", trigger.pk, trigger.target, tick)
            Trigger.objects.filter(pk=trigger.pk, next_fire_at=tick).update(next_fire_at=following)
        except Exception:
            # One schedule's trouble must not starve the others: the next pass tries it again.
            log.exception("schedule %s: tick %s not fired", trigger.pk, tick)
    return fired


def fire(trigger, tick):
    """Invoke the schedule's function for the tick at `tick` (also the console's "fire now")."""
    event = scheduled_event(trigger, tick)
    return invoke(trigger.function, json.dumps(event), kind=Invocation.Kind.ASYNC, source="schedule",
                  qualifier=trigger.qualifier or None, trigger=trigger)


def scheduled_event(trigger, tick):
    """EventBridge's Scheduled Event for one tick."""
    return {
        "version": "0",
        "id": str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{trigger.pk}:{tick.isoformat()}")),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id(trigger.function.owner),
        "time": tick.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": settings.LAMBDA_REGION,
        "resources": [trigger.rule_arn],
        "detail": {},
    }

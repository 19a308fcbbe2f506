"""Bucket notifications: which triggers an object's change invokes, with S3's event, and how they may overlap.

A notification is a `functions.models.Trigger` of kind BUCKET whose config holds {"bucket": id, "bucket_name",
"id" (its configurationId), "events", "prefix", "suffix", "summary"}. Every put or delete queues its
invocations inside the transaction that changes the object (invocations.buckets.models), so the object and
its events are committed together; from there Lambda's asynchronous retries apply.
"""

import base64
import json
import logging
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote_plus

from django.conf import settings
from django.contrib import messages
from django.shortcuts import redirect
from django.utils import timezone

from functions.models import Alias, Trigger, Version, account_id
from invocations.invoke import invoke
from invocations.models import Invocation

log = logging.getLogger(__name__)

# The event types a notification may choose (S3's names), and the event names objects' changes have.
EVENT_TYPES = ["s3:ObjectCreated:*", "s3:ObjectCreated:Put", "s3:ObjectRemoved:*", "s3:ObjectRemoved:Delete"]
CREATED, REMOVED = "ObjectCreated:Put", "ObjectRemoved:Delete"


def covers(event_type, event_name):
    """Whether a chosen event type (s3:ObjectCreated:*) takes an event (ObjectCreated:Put)."""
    family, _, kind = event_type.removeprefix("s3:").partition(":")
    return event_name.startswith(family + ":") and kind in ("*", event_name.partition(":")[2])


def matches(config, event_name, key):
    return (any(covers(t, event_name) for t in config["events"])
            and key.startswith(config["prefix"]) and key.endswith(config["suffix"]))


def overlap(a, b):
    """Whether two notifications on one bucket could take the same event, which S3 refuses: a common event
    type, and prefixes (likewise suffixes) of which one starts (ends) the other. An empty filter overlaps all."""
    common = any(covers(x, y.removeprefix("s3:")) or covers(y, x.removeprefix("s3:"))
                 for x in a["events"] for y in b["events"])
    prefixes = a["prefix"].startswith(b["prefix"]) or b["prefix"].startswith(a["prefix"])
    suffixes = a["suffix"].endswith(b["suffix"]) or b["suffix"].endswith(a["suffix"])
    return common and prefixes and suffixes


def triggers_of(bucket):
    """The bucket's notifications, whichever of the owner's functions they invoke."""
    return (Trigger.objects.filter(kind=Trigger.Kind.BUCKET, config__bucket=bucket.pk, function__owner=bucket.owner)
            .select_related("function", "function__owner"))


def encode_key(key):
    """The key as S3's events show it: URL-encoded as a form value (a space is "+"), leaving S3's safe
    characters (letters, digits, ! - _ . * ' ( )) and the folder delimiter / as they are.

    https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html: "red flower.jpg"
    becomes "red+flower.jpg"; safe characters: https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
    """
    # quote_plus never encodes "~", which is not one of S3's safe characters.
    return quote_plus(key, safe="/!*'()").replace("~", "%7E")


@dataclass
class Requester:
    """Who changed an object, from where, and S3's ids for that request (one set per request)."""

    user: object
    source_ip: str
    request_id: str = field(default_factory=lambda: secrets.token_hex(8).upper())
    # S3's x-amz-id-2: 76 characters of base64.
    host_id: str = field(default_factory=lambda: base64.b64encode(secrets.token_bytes(56)).decode())

    @classmethod
    def of(cls, request):
        return cls(request.user, request.META.get("REMOTE_ADDR", ""))


def event(bucket, obj, event_name, requester, trigger, when=None):
    """S3's event (version 2.1) for one object's change, as a notification delivers it to Lambda."""
    s3_object = {"key": encode_key(obj.key)}
    if event_name.startswith("ObjectCreated:"):
        # S3 leaves size and eTag out of ObjectRemoved events.
        s3_object.update(size=obj.size, eTag=obj.etag.strip('"'))
    s3_object["sequencer"] = obj.sequencer
    when = when or timezone.now()
    return {"Records": [{
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": settings.LAMBDA_REGION,
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": event_name,
        "userIdentity": {"principalId": f"AWS:{account_id(requester.user)}"},
        "requestParameters": {"sourceIPAddress": requester.source_ip},
        "responseElements": {"x-amz-request-id": requester.request_id, "x-amz-id-2": requester.host_id},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": trigger.config["id"],
            "bucket": {"name": bucket.name, "ownerIdentity": {"principalId": account_id(bucket.owner)},
                       "arn": bucket.arn},
            "object": s3_object,
        },
    }]}


def notify(bucket, obj, event_name, requester):
    """Invoke, asynchronously, every enabled notification of the bucket that takes this event; return the
    invocations. Call inside the transaction that changes the object: they are queued when it commits."""
    now = timezone.now()
    invoked = []
    for trigger in triggers_of(bucket).filter(enabled=True):
        if matches(trigger.config, event_name, obj.key):
            try:
                invoked.append(send(trigger, event(bucket, obj, event_name, requester, trigger, now)))
            except (Version.DoesNotExist, Alias.DoesNotExist):
                # As a schedule's tick is: its alias or version is gone, so it has nothing to invoke.
                log.warning("bucket notification %s: %s no longer exists; %s of %s not sent",
                            trigger.pk, trigger.target, event_name, obj.key)
    return invoked


def send(trigger, s3_event):
    return invoke(trigger.function, json.dumps(s3_event), kind=Invocation.Kind.ASYNC, source="bucket",
                  qualifier=trigger.qualifier or None, trigger=trigger)


def fire(request, trigger):
    """Fire now: an event of the kind the notification takes (ObjectCreated:Put if it takes both) for the
    newest object it takes, or a made-up key when there is none, through the same asynchronous invocation
    a real change makes."""
    from invocations.buckets.models import Bucket, Object  # models import this module

    bucket = Bucket.objects.filter(pk=trigger.config["bucket"], owner=trigger.function.owner).first()
    if bucket is None:
        messages.error(request, "The notification's bucket no longer exists.")
        return redirect(f"{trigger.function.get_absolute_url()}#triggers")
    name = CREATED if any(covers(t, CREATED) for t in trigger.config["events"]) else REMOVED
    candidates = [o for o in bucket.contents.order_by("-last_modified")[:1000]
                  if matches(trigger.config, name, o.key)]
    sample = candidates[0] if candidates else Object(
        bucket=bucket, key=f"{trigger.config['prefix']}example{trigger.config['suffix']}", size=0,
        etag='"d41d8cd98f00b204e9800998ecf8427e"', sequencer=f"{bucket.sequence:018X}")
    try:
        invocation = send(trigger, event(bucket, sample, name, Requester.of(request), trigger))
    except (Version.DoesNotExist, Alias.DoesNotExist):
        messages.error(request, f"The notification was not fired: {trigger.target} no longer exists.")
        return redirect(f"{trigger.function.get_absolute_url()}#triggers")
    messages.success(request, f"Sent {name} for {bucket.name}/{sample.key}: its invocation is queued.")
    return redirect(invocation)

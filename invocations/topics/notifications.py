"""What a topic delivers, in SNS's shapes: Lambda's SNS event for a subscribed function, and the JSON
envelope a subscribed queue receives (unless it asked for raw delivery)."""

import base64
import json

from django.conf import settings
from django.utils.crypto import salted_hmac


def timestamp(moment):
    """SNS's time: UTC, milliseconds, Z."""
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signature(notification):
    """A signature over SNS's string to sign, with the console's secret key (HMAC-SHA256).

    SNS signs with an RSA key whose certificate it serves; nothing here can sign as AWS, so this only keeps
    the field's place and lets the console tell its own notifications.
    """
    fields = ["Message", "MessageId"] + (["Subject"] if notification["Subject"] else []) + [
        "Timestamp", "TopicArn", "Type"]
    text = "".join(f"{name}\n{notification[name]}\n" for name in fields)
    return base64.b64encode(salted_hmac("topics.notification", text, algorithm="sha256").digest()).decode()


def _urls(subscription_arn):
    host = f"https://sns.{settings.LAMBDA_REGION}.amazonaws.com"
    return (f"{host}/SimpleNotificationService-lambda-console.pem",
            f"{host}/?Action=Unsubscribe&SubscriptionArn={subscription_arn}")


def lambda_event(notification, subscription_arn):
    """Lambda's SNS event for one function subscription. `notification`: Type, MessageId, TopicArn, Subject
    ("" for none), Message, Timestamp, MessageAttributes (SNS's {name: {Type, Value}})."""
    cert_url, unsubscribe_url = _urls(subscription_arn)
    return {"Records": [{
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": subscription_arn,
        "Sns": {
            "Type": "Notification",
            "MessageId": notification["MessageId"],
            "TopicArn": notification["TopicArn"],
            "Subject": notification["Subject"] or None,  # null when published without one
            "Message": notification["Message"],
            "Timestamp": notification["Timestamp"],
            "SignatureVersion": "1",
            "Signature": signature(notification),
            "SigningCertUrl": cert_url,
            "UnsubscribeUrl": unsubscribe_url,
            "MessageAttributes": notification["MessageAttributes"],
        },
    }]}


def envelope(notification, subscription_arn):
    """The body a queue subscription receives without raw delivery: SNS's JSON notification (its
    "Subject" only when there is one, "MessageAttributes" only when there are some), formatted as SNS does."""
    cert_url, unsubscribe_url = _urls(subscription_arn)
    document = {"Type": "Notification", "MessageId": notification["MessageId"], "TopicArn": notification["TopicArn"]}
    if notification["Subject"]:
        document["Subject"] = notification["Subject"]
    document.update({
        "Message": notification["Message"], "Timestamp": notification["Timestamp"], "SignatureVersion": "1",
        "Signature": signature(notification), "SigningCertURL": cert_url, "UnsubscribeURL": unsubscribe_url,
    })
    if notification["MessageAttributes"]:
        document["MessageAttributes"] = notification["MessageAttributes"]
    return json.dumps(document, indent=2, separators=(",", " : "), ensure_ascii=False)

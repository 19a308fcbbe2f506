"""Wake a synchronous caller when its invocation finishes. Redis carries the signal; the row is the truth."""

from invocations.queue import connection

KEY = "lambda:invocation:{}:finished"


def notify_finished(invocation_id):
    key = KEY.format(invocation_id)
    with connection().pipeline() as p:
        p.rpush(key, 1)
        p.expire(key, 300)
        p.execute()


def wait_finished(invocation_id, timeout):
    """Block until the worker signals `invocation_id` or `timeout` seconds pass; return whether it did."""
    return connection(blocking=True).blpop([KEY.format(invocation_id)], timeout=max(1, timeout)) is not None

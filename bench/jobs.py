"""The baseline job: RQ's own round trip, woken the same way a synchronous invocation is."""

from invocations.wakeup import notify_finished


def noop(token):
    notify_finished(token)

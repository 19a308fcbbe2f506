"""Jobs the RQ workers run. Each takes an id and writes its outcome to the database."""

import logging
import os
import socket

from django.db import close_old_connections

from invocations.models import Invocation
from invocations.runtime.pool import pool
from invocations.wakeup import notify_finished

log = logging.getLogger(__name__)


def run_invocation(invocation_id):
    """Claim the invocation, run it in an execution environment, record the outcome, wake the caller."""
    close_old_connections()
    invocation = Invocation.objects.filter(pk=invocation_id).first()
    if invocation is None:
        return "missing"
    if not invocation.claim(worker_name=f"{socket.gethostname()}:{os.getpid()}"):  # fail_orphans() reads it
        return "already claimed"
    try:
        outcome = pool.run(invocation.config, invocation.request_id, invocation.event)
        invocation.finish(outcome)
    except BaseException as e:
        # Also SystemExit (a forced worker shutdown) and RQ's job timeout: the row must not stay RUNNING.
        log.exception("invocation %s failed inside the platform", invocation_id)
        invocation.fail("ServiceException", f"The platform failed to run the invocation: {e!r}")
        raise
    finally:
        notify_finished(invocation_id)
    # Housekeeping after the caller has been woken: stopping an old environment takes milliseconds.
    pool.evict()
    return invocation.status

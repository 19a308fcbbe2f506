from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import connection
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from rq import Worker

from invocations import queue, schedules
from invocations.runtime.sandbox import layers


def background(redis):
    """The processes that do the work: without workers nothing runs, without a runner no schedule fires and no queue or stream is read.
    Neither makes the web unhealthy (a load balancer should keep sending requests)."""
    workers = Worker.all(connection=redis, queue=queue.queue())
    runner = schedules.runner()
    return {
        "RQ workers": (bool(workers), f"{len(workers)} listening on {settings.INVOCATION_QUEUE}" if workers
                       else "none: invocations wait in the queue"),
        "event source runner": (runner is not None, f"{runner} polling" if runner
                            else "none seen in the last seconds: schedules, queues and streams wait (manage.py run_event_sources)"),
    }


@login_not_required
@never_cache
def status(request):
    """Check the database and Redis (503 if either fails); show the workers, the event source runner and which
    isolation layers this host has."""
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = (True, connection.vendor)
    except Exception as e:
        checks["database"] = (False, str(e))
    redis = queue.connection()
    try:
        redis.ping()
        checks["redis"] = (True, "PING answered")
    except Exception as e:
        checks["redis"] = (False, str(e))
    healthy = all(ok for ok, _ in checks.values())
    has_password = bool(redis.connection_pool.connection_kwargs.get("password"))
    redis_password = (
        has_password,
        "REDIS_URL has a password" if has_password
        else "REDIS_URL has none: a function with outbound network on shares the host's network and could "
             "reach Redis, and whoever writes to RQ's queues runs code in the workers",
    )
    context = {"healthy": healthy, "checks": checks, "background": background(redis) if checks["redis"][0] else {},
               "layers": {**layers(), "Redis password": redis_password}}
    return render(request, "console/status.html", context, status=200 if healthy else 503)

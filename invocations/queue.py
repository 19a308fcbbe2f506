"""The Redis connection and the RQ queue invocations go through: one client per process.

django_rq.get_connection() builds a new client, so a new TCP connection, at every call, and redis-py
reads its own package metadata for each one: about 3 ms, more than a warm invocation's work.
"""

import functools
import os
import socket

import django_rq
import redis
from django.conf import settings


@functools.lru_cache(maxsize=None)
def _client(url, blocking):
    # redis-py gives up on a reply after 5 s by default: a blocking wait for a longer run needs no limit.
    # Keepalive, so that a dead server is noticed on a connection that waits without a timeout.
    if blocking:
        return redis.Redis.from_url(url, socket_timeout=None, socket_keepalive=True)
    return redis.Redis.from_url(url)


def connection(blocking=False):
    """The Redis client; `blocking` for commands that wait server-side (BLPOP) as long as they are told."""
    return _client(settings.RQ_QUEUES[settings.INVOCATION_QUEUE]["URL"], blocking)


def queue():
    """The invocation queue. Enqueueing happens at once: callers already wait for the commit themselves."""
    return django_rq.get_queue(settings.INVOCATION_QUEUE, commit_mode="auto", connection=connection())


def turn_key(name):
    return f"{settings.INVOCATION_QUEUE}:{name}-turn"


def take_turn(name, seconds):
    """Return whether this process takes the turn `name`: true for one caller per `seconds`, across every
    process on the Redis (SET NX with an expiry; the holder's host:pid is the value, for whoever looks)."""
    holder = f"{socket.gethostname()}:{os.getpid()}"
    return bool(connection().set(turn_key(name), holder, nx=True, ex=seconds))

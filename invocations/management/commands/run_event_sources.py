import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from invocations import sources
from invocations.schedules import beat

# Schedules tick on whole minutes at the finest; a second's poll fires them within about a second, and
# keeps a queue's or a stream's waiting records within about a second of their function.
POLL_SECONDS = 1.0


class Command(BaseCommand):
    help = ("Fire schedules as their ticks come and deliver what queues and table streams hold. Several may "
            "run at once: each tick fires once and each record is taken by one of them.")

    def handle(self, *args, **options):
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        self.stdout.write("run_event_sources: firing schedules and polling event sources (SIGTERM or Ctrl-C stops)")
        try:
            while not stopping:
                started = time.monotonic()
                self.poll()
                time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass

    def poll(self):
        try:
            beat()
            close_old_connections()
        except Exception as e:  # Redis or the database restarting must not end the runner
            self.stderr.write(f"run_event_sources: {e!r}; trying again")
            return
        now = timezone.now()
        for poll in sources.pollers:
            try:
                for invocation in poll(now) or ():
                    self.stdout.write(f"fired {invocation.trigger_id}: invocation {invocation.pk}")
            except Exception as e:  # one source's trouble must not stop the others
                self.stderr.write(f"run_event_sources: {poll.__module__}.{poll.__name__}: {e!r}; trying again")

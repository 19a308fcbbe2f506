import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from invocations.schedules import beat, fire_due

# Schedules tick on whole minutes at the finest; a second's poll fires them within about a second.
POLL_SECONDS = 1.0


class Command(BaseCommand):
    help = "Fire schedules as their ticks come. Several may run at once: each tick fires exactly once."

    def handle(self, *args, **options):
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
        self.stdout.write("run_schedules: firing schedules (SIGTERM or Ctrl-C stops)")
        try:
            while not stopping:
                started = time.monotonic()
                try:
                    beat()
                    close_old_connections()
                    for invocation in fire_due():
                        self.stdout.write(f"fired {invocation.trigger_id}: invocation {invocation.pk}")
                except Exception as e:  # a database restart must not end the scheduler
                    self.stderr.write(f"run_schedules: {e!r}; trying again")
                time.sleep(max(0.0, POLL_SECONDS - (time.monotonic() - started)))
        except KeyboardInterrupt:
            pass

import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections
from django.utils import timezone

from invocations import retention, sources
from invocations.metrics import compaction
from invocations.schedules import beat

# Schedules tick on whole minutes at the finest; a second's poll fires them within about a second, and
# keeps a queue's or a stream's waiting records within about a second of their function.
POLL_SECONDS = 1.0
# The share of a pass a purge of old invocation records may take, so that it never holds up schedules and
# queues for longer (the first purge of a large table takes many passes).
PURGE_SLICE_SECONDS = 0.25
# Likewise for merging old minute rollups into hours (the first compaction of a long history takes many passes).
COMPACT_SLICE_SECONDS = 0.25


class Command(BaseCommand):
    help = ("Fire schedules as their ticks come and deliver what queues and table streams hold. Several may "
            "run at once: each tick fires once and each record is taken by one of them. Once an hour one of "
            "them purges the invocation records older than INVOCATION_RETENTION_DAYS, and once an hour one of them "
            "merges the metrics rollups older than 48 hours into hours.")

    # The cutoff of the purge this runner has under way, between its slices.
    purging = None
    # The function-hours of the compaction this runner has under way, between its slices.
    compacting = None

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
        try:
            self.purge_step(now)
        except Exception as e:  # the next turn, within the hour, starts again
            self.purging = None
            self.stderr.write(f"run_event_sources: retention: {e!r}; trying again within the hour")
        try:
            self.compact_step(now)
        except Exception as e:  # the next turn, within the hour, starts again
            self.compacting = None
            self.stderr.write(f"run_event_sources: compaction: {e!r}; trying again within the hour")

    def purge_step(self, now):
        """Delete a slice of the invocation records past their retention: a purge starts at most once an hour
        across every runner (whichever takes the turn), and goes on a slice per pass until it is done."""
        if self.purging is None:
            if not retention.take_turn():
                return
            self.purging = retention.cutoff(now)
            if self.purging is None:  # INVOCATION_RETENTION_DAYS = 0: kept for ever
                return
        deleted, done = retention.purge_some(self.purging, until=time.monotonic() + PURGE_SLICE_SECONDS)
        if deleted:
            self.stdout.write(f"purged {deleted} invocations that ended before {self.purging:%Y-%m-%d %H:%M:%S} UTC")
        if done:
            self.purging = None

    def compact_step(self, now):
        """Merge a slice of the old minute rollups into hours: a compaction starts at most once an hour across
        every runner (whichever takes the turn), and goes on a slice per pass until it is done."""
        if self.compacting is None:
            if not compaction.take_turn():
                return
            self.compacting = compaction.pending(compaction.cutoff(now))
        merged = compaction.compact_hours(self.compacting, until=time.monotonic() + COMPACT_SLICE_SECONDS)
        if merged:
            self.stdout.write(f"compacted {merged} function-hours of metrics rollups into hour rows")
        if not self.compacting:
            self.compacting = None

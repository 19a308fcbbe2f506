from datetime import timedelta

from django.core.management.base import BaseCommand

from invocations.metrics.compaction import KEEP_MINUTES_FOR, compact


class Command(BaseCommand):
    help = ("Merge the per-minute metrics rollups of every function-hour that ended more than --keep-hours ago "
            "into one row at the hour's start (the event-source runners do this once an hour).")

    def add_arguments(self, parser):
        parser.add_argument("--keep-hours", type=int, default=KEEP_MINUTES_FOR // timedelta(hours=1),
                            help="hours kept at minute resolution (default: %(default)s)")

    def handle(self, *args, keep_hours, **options):
        if keep_hours < 24:
            # The 24 h metrics window draws 30-minute steps from the minutes.
            self.stderr.write("--keep-hours must be 24 or more")
            raise SystemExit(2)
        merged, _ = compact(keep_minutes_for=timedelta(hours=keep_hours))
        self.stdout.write(f"compacted {merged} function-hours")

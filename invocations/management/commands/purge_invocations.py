from django.conf import settings
from django.core.management.base import BaseCommand

from invocations import retention


class Command(BaseCommand):
    help = ("Delete the records of invocations that ended more than INVOCATION_RETENTION_DAYS ago (the event "
            "source runners do this once an hour). Metrics and cost rollups are kept. Invocations still in a "
            "dead-letter inbox or in flight stay.")

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count what would go, delete nothing")

    def handle(self, *args, dry_run=False, **options):
        cutoff = retention.cutoff()
        if cutoff is None:
            self.stdout.write("INVOCATION_RETENTION_DAYS is 0: every invocation is kept")
            return
        ended = f"ended before {cutoff:%Y-%m-%d %H:%M:%S} UTC ({settings.INVOCATION_RETENTION_DAYS} days)"
        if dry_run:
            self.stdout.write(f"would purge {retention.purgeable(cutoff).count()} invocations that {ended}")
            return
        deleted, _ = retention.purge_some(cutoff)
        self.stdout.write(f"purged {deleted} invocations that {ended}")

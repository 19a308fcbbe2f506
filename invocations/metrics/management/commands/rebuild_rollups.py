from django.core.management.base import BaseCommand

from invocations.metrics.rollups import rebuild


class Command(BaseCommand):
    help = ("Recompute the per-minute metrics rollups from the invocation rows (a backfill), for the minutes "
            "from INVOCATION_RETENTION_DAYS ago on; earlier minutes keep their rollups, since their rows may "
            "have been purged (every minute is recomputed when it is 0).")

    def add_arguments(self, parser):
        parser.add_argument("--function-id", type=int, action="append", dest="function_ids",
                            help="only this function (repeatable); default: all")

    def handle(self, *args, function_ids=None, **options):
        written = rebuild(function_ids)
        self.stdout.write(f"rebuilt {written} minute rollups")

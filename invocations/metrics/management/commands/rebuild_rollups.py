from django.core.management.base import BaseCommand

from invocations.metrics.rollups import rebuild


class Command(BaseCommand):
    help = "Recompute the per-minute metrics rollups from the invocation rows (a backfill)."

    def add_arguments(self, parser):
        parser.add_argument("--function-id", type=int, action="append", dest="function_ids",
                            help="only this function (repeatable); default: all")

    def handle(self, *args, function_ids=None, **options):
        written = rebuild(function_ids)
        self.stdout.write(f"rebuilt {written} minute rollups")

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "invocations.metrics"
    label = "metrics"

    def ready(self):
        from invocations import sources
        from invocations.metrics import rollups

        sources.every_outcome.append(rollups.record)

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "invocations.metrics"
    label = "metrics"

    def ready(self):
        from functions import views
        from invocations import sources
        from invocations.metrics import rollups, summaries

        sources.every_outcome.append(rollups.record)
        views.annotate_function_list = summaries.annotate_function_list

from django.apps import AppConfig


class MetricsConfig(AppConfig):
    name = "invocations.metrics"
    label = "metrics"

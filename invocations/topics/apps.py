from django.apps import AppConfig


class TopicsConfig(AppConfig):
    name = "invocations.topics"
    label = "topics"

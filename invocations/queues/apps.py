from django.apps import AppConfig


class QueuesConfig(AppConfig):
    name = "invocations.queues"
    label = "queues"

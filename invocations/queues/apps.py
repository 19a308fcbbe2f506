from django.apps import AppConfig


class QueuesConfig(AppConfig):
    name = "invocations.queues"
    label = "queues"

    def ready(self):
        from functions.models import Trigger
        from invocations import sources
        from invocations.queues import delivery
        from invocations.queues.forms import QueueTriggerForm

        sources.trigger_kinds[Trigger.Kind.QUEUE] = sources.TriggerKind(QueueTriggerForm, delivery.fire)
        sources.pollers.append(delivery.poll)
        sources.finished[delivery.SOURCE] = delivery.settle

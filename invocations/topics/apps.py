from django.apps import AppConfig


class TopicsConfig(AppConfig):
    name = "invocations.topics"
    label = "topics"

    def ready(self):
        from functions.models import Trigger
        from invocations import sources
        from invocations.topics import views
        from invocations.topics.forms import TopicTriggerForm

        sources.trigger_kinds[Trigger.Kind.TOPIC] = sources.TriggerKind(TopicTriggerForm, views.fire)

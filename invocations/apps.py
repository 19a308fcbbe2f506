from django.apps import AppConfig


class InvocationsConfig(AppConfig):
    name = "invocations"

    def ready(self):
        from functions.models import Trigger
        from invocations import schedules, sources, triggers
        from invocations.forms import HttpEndpointForm, ScheduleForm

        sources.trigger_kinds[Trigger.Kind.HTTP] = sources.TriggerKind(HttpEndpointForm, triggers.fire_endpoint)
        sources.trigger_kinds[Trigger.Kind.SCHEDULE] = sources.TriggerKind(ScheduleForm, triggers.fire_schedule)
        sources.pollers.append(schedules.fire_due)

from django.apps import AppConfig


class TablesConfig(AppConfig):
    name = "invocations.tables"
    label = "tables"

    def ready(self):
        from functions.models import Trigger
        from invocations import sources
        from invocations.tables import streams
        from invocations.tables.forms import TableStreamForm

        sources.trigger_kinds[Trigger.Kind.TABLE] = sources.TriggerKind(TableStreamForm, streams.fire)
        sources.pollers.append(streams.poll)
        sources.finished[streams.SOURCE] = streams.finished

from django.apps import AppConfig


class TablesConfig(AppConfig):
    name = "invocations.tables"
    label = "tables"

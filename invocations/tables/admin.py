from django.contrib import admin

from invocations.tables.models import StreamCursor, Table


@admin.register(Table)
class TableAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "partition_key_name", "sort_key_name", "stream_view_type", "last_sequence_number",
                    "created_at"]
    search_fields = ["name", "owner__username"]
    readonly_fields = ["last_sequence_number", "stream_label"]


@admin.register(StreamCursor)
class StreamCursorAdmin(admin.ModelAdmin):
    """Where each table stream trigger has read to; an operator may clear a stuck batch here."""

    list_display = ["trigger", "table", "position", "batch_last", "attempts", "failures", "invocation", "taken_at",
                    "retry_at"]
    raw_id_fields = ["trigger", "table", "invocation"]

from django.contrib import admin

from invocations.models import DeadLetter, Invocation


@admin.register(Invocation)
class InvocationAdmin(admin.ModelAdmin):
    list_display = ["id", "function", "status", "cold_start", "duration_ms", "billed_duration_ms", "cost", "created_at"]
    list_filter = ["status", "kind", "cold_start"]
    search_fields = ["id", "function__name"]
    raw_id_fields = ["function"]
    readonly_fields = [f.name for f in Invocation._meta.fields]


@admin.register(DeadLetter)
class DeadLetterAdmin(admin.ModelAdmin):
    list_display = ["invocation", "function", "condition", "created_at", "redriven_at"]
    list_filter = ["condition"]
    raw_id_fields = ["function", "invocation", "redrive"]

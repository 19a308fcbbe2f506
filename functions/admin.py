from django.contrib import admin

from functions.models import CodeArtifact, EventInvokeConfig, Function, TestEvent, Trigger


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "runtime", "memory_size", "timeout", "last_modified"]
    list_filter = ["runtime"]
    search_fields = ["name", "owner__username"]
    raw_id_fields = ["code"]
    # The environment variables stay out of the admin, even encrypted: they are edited on the console.
    exclude = ["environment_token"]


@admin.register(CodeArtifact)
class CodeArtifactAdmin(admin.ModelAdmin):
    list_display = ["sha256", "size", "unzipped_size", "created_at"]
    readonly_fields = ["sha256", "size", "unzipped_size", "files", "created_at"]


@admin.register(TestEvent)
class TestEventAdmin(admin.ModelAdmin):
    list_display = ["name", "function", "updated_at"]


@admin.register(Trigger)
class TriggerAdmin(admin.ModelAdmin):
    list_display = ["kind", "function", "qualifier", "enabled", "next_fire_at", "created_at"]
    list_filter = ["kind", "enabled"]
    search_fields = ["function__name", "url_id"]
    raw_id_fields = ["function"]
    # Keys are made on the console and shown once; the admin neither shows nor sets their hash.
    exclude = ["key_sha256"]


@admin.register(EventInvokeConfig)
class EventInvokeConfigAdmin(admin.ModelAdmin):
    list_display = ["function", "qualifier", "maximum_retry_attempts", "maximum_event_age_seconds", "updated_at"]
    raw_id_fields = ["function"]

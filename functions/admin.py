from django.contrib import admin

from functions.models import CodeArtifact, Function, TestEvent


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

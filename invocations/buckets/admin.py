from django.contrib import admin

from invocations.buckets.models import Bucket, Object


class ReadOnly(admin.ModelAdmin):
    # A bucket's and an object's rows change together with files on disk and notifications: only through the
    # console's pages, never by editing a row.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Bucket)
class BucketAdmin(ReadOnly):
    list_display = ["name", "owner", "created_at"]
    search_fields = ["name", "owner__username"]


@admin.register(Object)
class ObjectAdmin(ReadOnly):
    list_display = ["key", "bucket", "size", "content_type", "last_modified"]
    search_fields = ["key", "bucket__name"]

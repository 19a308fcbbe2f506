from django.urls import path, register_converter

from invocations.buckets import views


class KeyConverter:
    """Any key, even one with a line break (`path` stops there), so that the view can say what is wrong with it."""

    regex = r"[\s\S]+"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(KeyConverter, "objectkey")

app_name = "buckets"

urlpatterns = [
    path("", views.bucket_list, name="list"),
    path("<str:name>/", views.bucket_detail, name="detail"),
    path("<str:name>/delete/", views.bucket_delete, name="delete"),
    path("<str:name>/delete-object/", views.object_delete, name="delete_object"),
    # GET downloads, PUT uploads the raw body, DELETE deletes; the key is the rest of the path.
    path("<str:name>/objects/<objectkey:key>", views.object_view, name="object"),
]

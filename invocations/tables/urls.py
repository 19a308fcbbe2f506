from django.urls import path

from invocations.tables import api, views

app_name = "tables"

# Table names are A-Z a-z 0-9 _ - . (at least 3, so never "." or ".."): safe path segments.
urlpatterns = [
    path("", views.table_list, name="list"),
    path("<str:name>/", views.table_detail, name="detail"),
    path("<str:name>/delete/", views.table_delete, name="delete"),
    path("<str:name>/put/", views.item_put, name="put_item"),
    path("<str:name>/items/", api.items, name="api_items"),
    path("<str:name>/items/<int:pk>/delete/", views.item_delete, name="delete_item"),
]

from django.urls import path

from functions import views
from invocations import views as invocation_views

app_name = "functions"

# Function names follow Lambda's rule (letters, digits, - and _), so they are safe path segments.
urlpatterns = [
    path("", views.function_list, name="list"),
    path("new/", views.function_create, name="create"),
    path("<str:name>/", views.function_detail, name="detail"),
    path("<str:name>/configuration/", views.function_configure, name="configure"),
    path("<str:name>/environment/", views.function_environment, name="environment"),
    path("<str:name>/code/", views.function_upload_code, name="upload_code"),
    path("<str:name>/code/edit/", views.function_edit_code, name="edit_code"),
    path("<str:name>/layers/", views.function_layers, name="layers"),
    path("<str:name>/versions/", views.function_publish, name="publish"),
    path("<str:name>/versions/diff/", views.version_diff, name="version_diff"),
    path("<str:name>/aliases/", views.alias_save, name="save_alias"),
    path("<str:name>/aliases/<str:alias_name>/rollback/", views.alias_roll_back, name="roll_back_alias"),
    path("<str:name>/aliases/<str:alias_name>/delete/", views.alias_delete, name="delete_alias"),
    path("<str:name>/invoke/", invocation_views.invoke, name="invoke"),
    path("<str:name>/events/", views.test_event_save, name="save_event"),
    path("<str:name>/events/<int:pk>/delete/", views.test_event_delete, name="delete_event"),
]

# Mounted at /layers/ (console/urls.py): under /functions/ they would clash with a function named "layers".
layer_urlpatterns = [
    path("", views.layer_list, name="layer_list"),
    path("<str:name>/", views.layer_detail, name="layer"),
]

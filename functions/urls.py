from django.urls import path

from functions import views
from invocations import inbox, triggers
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
    path("<str:name>/invoke/", invocation_views.invoke_function, name="invoke"),
    path("<str:name>/async/", triggers.async_config, name="async_config"),
    path("<str:name>/triggers/new/<str:kind>/", triggers.trigger_new, name="new_trigger"),
    path("<str:name>/triggers/<int:pk>/", triggers.trigger_edit, name="trigger"),
    path("<str:name>/triggers/<int:pk>/delete/", triggers.trigger_delete, name="delete_trigger"),
    path("<str:name>/triggers/<int:pk>/fire/", triggers.trigger_fire, name="fire_trigger"),
    path("<str:name>/triggers/<int:pk>/toggle/", triggers.trigger_toggle, name="toggle_trigger"),
    path("<str:name>/triggers/<int:pk>/key/", triggers.trigger_new_key, name="trigger_key"),
    path("<str:name>/dead-letters/", inbox.dead_letters, name="dead_letters"),
    path("<str:name>/dead-letters/<int:pk>/", inbox.dead_letter_save, name="save_dead_letter"),
    path("<str:name>/dead-letters/<int:pk>/redrive/", inbox.dead_letter_redrive, name="redrive_dead_letter"),
    path("<str:name>/dead-letters/redrive/", inbox.dead_letters_redrive_all, name="redrive_dead_letters"),
    path("<str:name>/dead-letters/purge/", inbox.dead_letters_purge, name="purge_dead_letters"),
    path("<str:name>/events/", views.test_event_save, name="save_event"),
    path("<str:name>/events/<int:pk>/delete/", views.test_event_delete, name="delete_event"),
]

# Mounted at /layers/ (console/urls.py): under /functions/ they would clash with a function named "layers".
layer_urlpatterns = [
    path("", views.layer_list, name="layer_list"),
    path("<str:name>/", views.layer_detail, name="layer"),
]

from django.urls import path

from invocations.queues import views

app_name = "queues"

urlpatterns = [
    path("", views.queue_list, name="list"),
    path("<str:name>/", views.queue_detail, name="detail"),
    path("<str:name>/send/", views.queue_send, name="send"),
    path("<str:name>/settings/", views.queue_settings, name="settings"),
    path("<str:name>/purge/", views.queue_purge, name="purge"),
    path("<str:name>/delete/", views.queue_delete, name="delete"),
    # The JSON API (HTTP Basic or the session): POST sends a message.
    path("<str:name>/messages/", views.api_messages, name="api_messages"),
    path("<str:name>/receive/", views.api_receive, name="api_receive"),
    path("<str:name>/delete-message/", views.api_delete_message, name="api_delete_message"),
    path("<str:name>/change-visibility/", views.api_change_visibility, name="api_change_visibility"),
]

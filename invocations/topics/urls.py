from django.urls import path

from invocations.topics import views

app_name = "topics"

urlpatterns = [
    path("", views.topic_list, name="list"),
    path("<str:name>/", views.topic_detail, name="detail"),
    path("<str:name>/publish/", views.api_publish, name="publish"),  # the JSON API; the page posts to send/
    path("<str:name>/send/", views.topic_publish, name="send"),
    path("<str:name>/subscriptions/", views.topic_subscribe, name="subscribe"),
    path("<str:name>/subscriptions/<uuid:pk>/delete/", views.topic_unsubscribe, name="unsubscribe"),
    path("<str:name>/delete/", views.topic_delete, name="delete"),
]

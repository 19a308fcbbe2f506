from django.urls import path

from invocations import views

app_name = "invocations"

urlpatterns = [
    path("", views.invocation_list, name="list"),
    path("function/<str:name>/", views.function_invocations, name="function"),
    path("tail/<str:name>/", views.tail, name="tail"),
    path("tail/<str:name>/lines/", views.tail_lines, name="tail_lines"),
    path("<uuid:pk>/", views.invocation_detail, name="detail"),
    path("<uuid:pk>/replay/", views.replay, name="replay"),
    path("<uuid:pk>/save-event/", views.save_test_event, name="save_event"),
]

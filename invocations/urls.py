from django.urls import path

from invocations import views

app_name = "invocations"

urlpatterns = [
    path("<uuid:pk>/", views.invocation_detail, name="detail"),
]

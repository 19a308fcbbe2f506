from django.urls import path

from invocations.metrics import views

app_name = "metrics"

urlpatterns = [
    path("", views.metrics, name="overall"),
    path("costs/", views.cost_report, name="costs"),
    # Under functions/: a function may be named "costs".
    path("functions/<str:name>/", views.metrics, name="function"),
]

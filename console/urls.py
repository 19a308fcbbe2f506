from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import dashboard, views
from functions.urls import layer_urlpatterns
from invocations.endpoints import endpoint

urlpatterns = [
    path("", dashboard.home, name="home"),
    path("status/", views.status, name="status"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("functions/", include("functions.urls")),
    path("layers/", include((layer_urlpatterns, "layers"))),
    path("invocations/", include("invocations.urls")),
    path("queues/", include("invocations.queues.urls")),
    path("topics/", include("invocations.topics.urls")),
    path("buckets/", include("invocations.buckets.urls")),
    path("tables/", include("invocations.tables.urls")),
    path("metrics/", include("invocations.metrics.urls")),
    # HTTP endpoints (function URLs): public, each authenticated by its own settings.
    path("url/<str:url_id>/", endpoint, name="endpoint"),
    # Without the slash too: APPEND_SLASH's redirect would turn a client's POST into a GET.
    path("url/<str:url_id>", endpoint),
    path("url/<str:url_id>/<path:path>", endpoint, name="endpoint"),
    # Operator screens: Django's admin and the django-rq dashboard (staff only).
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]

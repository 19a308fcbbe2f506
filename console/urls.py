from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from console import dashboard, keys, views
from functions.urls import layer_urlpatterns
from invocations.endpoints import endpoint

urlpatterns = [
    path("", dashboard.home, name="home"),
    path("status/", views.status, name="status"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("account/keys/", keys.key_list, name="access_keys"),
    path("account/keys/create/", keys.create_key, name="create_access_key"),
    path("account/keys/<str:key_id>/deactivate/", keys.deactivate_key, name="deactivate_access_key"),
    path("account/keys/<str:key_id>/activate/", keys.activate_key, name="activate_access_key"),
    path("account/keys/<str:key_id>/delete/", keys.delete_key, name="delete_access_key"),
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
    # The Lambda API (AWS CLI, boto3): its paths begin with the API's dates, e.g. /2015-03-31/functions.
    path("", include("console.lambda_api.urls")),
    # Operator screens: Django's admin and the django-rq dashboard (staff only).
    path("admin/django-rq/", include("django_rq.urls")),
    path("admin/", admin.site.urls),
]

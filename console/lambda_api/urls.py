"""The Lambda API's routes, as botocore's service model has them: no trailing slashes (clients never add
one, and APPEND_SLASH's redirect would lose a POST's body), one path per resource, the HTTP method picking
the operation."""

from django.contrib.auth.decorators import login_not_required
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from console.lambda_api import account, code, function_settings, functions, invoke, layers, versions
from console.lambda_api import event_source_mappings, tags
from console.lambda_api.errors import ApiError, error_response


def by_method(**views):
    """One route, an operation per HTTP method."""

    @csrf_exempt
    @login_not_required
    def dispatch(request, *args, **kwargs):
        view = views.get(request.method)
        if view is None:
            return error_response(ApiError(405, "MethodNotAllowedException",
                                           f"{request.method} is not an operation on {request.path}."))
        return view(request, *args, **kwargs)

    dispatch.lambda_api = True  # for the access tests: signed requests only, never the sign-in page
    return dispatch


def by_find(default, **views):
    """Operations on one path and method told apart by the `find` query parameter: botocore sends
    GetLayerVersionByArn to /2018-10-31/layers?find=LayerVersion, ListLayers to the bare path."""

    def dispatch(request, *args, **kwargs):
        return views.get(request.GET.get("find"), default)(request, *args, **kwargs)

    return dispatch


FUNCTION = "2015-03-31/functions/<str:function_name>"

urlpatterns = [
    path("2015-03-31/functions", by_method(GET=functions.list_functions, POST=functions.create_function)),
    path(FUNCTION, by_method(GET=functions.get_function, DELETE=functions.delete_function)),
    path(f"{FUNCTION}/configuration", by_method(GET=functions.get_function_configuration,
                                                PUT=functions.update_function_configuration)),
    path(f"{FUNCTION}/code", by_method(PUT=functions.update_function_code)),
    path(f"{FUNCTION}/invocations", by_method(POST=invoke.invoke)),
    path(f"{FUNCTION}/versions", by_method(GET=versions.list_versions_by_function, POST=versions.publish_version)),
    path(f"{FUNCTION}/aliases", by_method(GET=versions.list_aliases, POST=versions.create_alias)),
    path(f"{FUNCTION}/aliases/<str:alias_name>", by_method(GET=versions.get_alias, PUT=versions.update_alias,
                                                           DELETE=versions.delete_alias)),
    path("2018-10-31/layers", by_method(GET=by_find(layers.list_layers,
                                                    LayerVersion=layers.get_layer_version_by_arn))),
    path("2018-10-31/layers/<str:layer_name>/versions", by_method(GET=layers.list_layer_versions,
                                                                  POST=layers.publish_layer_version)),
    path("2018-10-31/layers/<str:layer_name>/versions/<int:version_number>",
         by_method(GET=layers.get_layer_version, DELETE=layers.delete_layer_version)),
    path("2017-10-31/functions/<str:function_name>/concurrency",
         by_method(PUT=function_settings.put_function_concurrency,
                   DELETE=function_settings.delete_function_concurrency)),
    path("2019-09-30/functions/<str:function_name>/concurrency",
         by_method(GET=function_settings.get_function_concurrency)),
    path("2019-09-25/functions/<str:function_name>/event-invoke-config",
         by_method(GET=function_settings.get_function_event_invoke_config,
                   PUT=function_settings.put_function_event_invoke_config,
                   POST=function_settings.update_function_event_invoke_config,
                   DELETE=function_settings.delete_function_event_invoke_config)),
    path("2019-09-25/functions/<str:function_name>/event-invoke-config/list",
         by_method(GET=function_settings.list_function_event_invoke_configs)),
    path("2021-10-31/functions/<str:function_name>/url",
         by_method(GET=function_settings.get_function_url_config,
                   POST=function_settings.create_function_url_config,
                   PUT=function_settings.update_function_url_config,
                   DELETE=function_settings.delete_function_url_config)),
    path("2021-10-31/functions/<str:function_name>/urls",
         by_method(GET=function_settings.list_function_url_configs)),
    path("2024-08-31/functions/<str:function_name>/recursion-config",
         by_method(GET=function_settings.get_function_recursion_config,
                   PUT=function_settings.put_function_recursion_config)),
    # The deprecated InvokeAsync. Older botocore models (and AWS's API reference) end its path with a slash.
    path("2014-11-13/functions/<str:function_name>/invoke-async", by_method(POST=invoke.invoke_async)),
    path("2014-11-13/functions/<str:function_name>/invoke-async/", by_method(POST=invoke.invoke_async)),
    path("2015-03-31/event-source-mappings",
         by_method(GET=event_source_mappings.list_event_source_mappings,
                   POST=event_source_mappings.create_event_source_mapping)),
    path("2015-03-31/event-source-mappings/<str:mapping_id>",
         by_method(GET=event_source_mappings.get_event_source_mapping,
                   PUT=event_source_mappings.update_event_source_mapping,
                   DELETE=event_source_mappings.delete_event_source_mapping)),
    path("2017-03-31/tags/<str:resource>", by_method(GET=tags.list_tags, POST=tags.tag_resource,
                                                     DELETE=tags.untag_resource)),
    path("2016-08-19/account-settings", by_method(GET=account.get_account_settings)),
    # Content.Location / Code.Location: a signed link, valid for 10 minutes, like Lambda's presigned S3 URL.
    path("2018-10-31/code/<str:token>", code.download_code, name="lambda_api_code"),
]

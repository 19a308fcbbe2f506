from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from functions.forms import InvokeForm
from functions.models import Alias, Version
from functions.views import _get_function_for_user, render_detail
from invocations.invoke import invoke, invoke_and_wait
from invocations.models import Invocation


def _get_invocation_for_user(request, pk):
    return get_object_or_404(Invocation.objects.select_related("function"), pk=pk, function__owner=request.user)


@require_POST
def invoke_function(request, name):
    function = _get_function_for_user(request, name)
    form = InvokeForm(request.POST, function=function)
    if not form.is_valid():
        return render_detail(request, function, invoke_form=form, status=400)
    qualifier = form.cleaned_data["qualifier"] or None
    try:
        if form.cleaned_data["invocation_type"] == Invocation.Kind.ASYNC:
            invocation = invoke(function, form.cleaned_data["event"], kind=Invocation.Kind.ASYNC,
                                qualifier=qualifier)
            # Lambda answers an asynchronous invocation at once: 202 and the request id.
            return render(request, "invocations/detail.html", {"invocation": invocation, "function": function},
                          status=202)
        invocation = invoke_and_wait(function, form.cleaned_data["event"], qualifier=qualifier)
    except (Version.DoesNotExist, Alias.DoesNotExist):
        raise Http404("That version or alias no longer exists.") from None
    if invocation.status == Invocation.Status.THROTTLED:
        # Lambda's answer to a throttled synchronous call: 429 TooManyRequestsException.
        return render(request, "invocations/detail.html", {"invocation": invocation, "function": function},
                      status=429)
    return redirect(invocation)


def invocation_detail(request, pk):
    invocation = _get_invocation_for_user(request, pk)
    return render(request, "invocations/detail.html", {"invocation": invocation, "function": invocation.function})

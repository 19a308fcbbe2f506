"""GetAccountSettings: the limits a caller works within and what they use of them."""

from django.conf import settings
from django.db.models import Sum

from console.lambda_api.api import operation, respond
from functions.codezip import MAX_UNZIPPED_BYTES
from functions.models import RESERVED_CONCURRENCY_MAX, Function, LayerVersion, Version

# Lambda's default quota for all of an account's code (functions, versions and layers).
TOTAL_CODE_SIZE = 75 * 1024 ** 3
# Lambda's account concurrency quota, of which every function's reserved concurrency is taken.
ACCOUNT_CONCURRENCY = RESERVED_CONCURRENCY_MAX


@operation("GetAccountSettings")
def get_account_settings(request):
    functions = Function.objects.filter(owner=request.user)
    code_size = sum(
        query.aggregate(total=Sum("code__size"))["total"] or 0
        for query in (functions, Version.objects.filter(function__owner=request.user),
                      LayerVersion.objects.filter(layer__owner=request.user))
    )
    reserved = functions.aggregate(total=Sum("reserved_concurrency"))["total"] or 0
    return respond({
        "AccountLimit": {
            "TotalCodeSize": TOTAL_CODE_SIZE,
            "CodeSizeUnzipped": MAX_UNZIPPED_BYTES,
            "CodeSizeZipped": settings.MAX_UPLOAD_BYTES,
            "ConcurrentExecutions": ACCOUNT_CONCURRENCY,
            # Reservations here cap their function and take nothing from the others, so they may add up to
            # more than the account's quota; Lambda would have refused that (it keeps 100 unreserved).
            "UnreservedConcurrentExecutions": max(ACCOUNT_CONCURRENCY - reserved, 0),
        },
        "AccountUsage": {"TotalCodeSize": code_size, "FunctionCount": functions.count()},
    })

"""What one invocation produced in its execution environment, and Lambda's shapes for it."""

import json
from dataclasses import dataclass
from typing import Optional


def error_payload(error_type, message, request_id, stack_trace=()):
    """Return Lambda's error object as JSON text."""
    return json.dumps(
        {"errorMessage": message, "errorType": error_type, "requestId": request_id, "stackTrace": list(stack_trace)}
    )


@dataclass
class Outcome:
    status: str  # an Invocation.Status value
    payload: str  # the response JSON, or Lambda's error object as JSON
    error_type: str = ""
    log: str = ""  # everything before END: INIT_START, init output, START, the handler's output
    cold_start: bool = False
    init_duration_ms: Optional[float] = None
    duration_ms: Optional[float] = None
    max_memory_used_mb: Optional[int] = None
    report_status: str = ""  # REPORT's "Status:" field: "timeout" or "error", empty on success


def report_line(request_id, duration_ms, billed_ms, memory_mb, max_used_mb, init_ms=None, status="", error_type=""):
    """Return Lambda's REPORT line (fields are tab-separated, with a trailing tab, as CloudWatch shows)."""
    fields = [
        f"REPORT RequestId: {request_id}",
        f"Duration: {duration_ms:.2f} ms",
        f"Billed Duration: {billed_ms} ms",
        f"Memory Size: {memory_mb} MB",
        f"Max Memory Used: {max_used_mb if max_used_mb is not None else 0} MB",
    ]
    if init_ms is not None:
        fields.append(f"Init Duration: {init_ms:.2f} ms")
    if status:
        fields.append(f"Status: {status}")
        if error_type and status == "error":
            fields.append(f"Error Type: {error_type}")
    return "\t".join(fields) + "\t"

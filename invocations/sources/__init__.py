"""Event sources: what turns something that happened into a Lambda event and invokes a function with it.

The HTTP endpoints and schedules live in `invocations` itself; queues, topics, buckets and tables are apps
of their own (`invocations.queues`, …). Each source registers here, in its AppConfig.ready():

- `trigger_kinds[kind] = TriggerKind(form_class, fire)`: how a function's trigger of that kind
  (`functions.models.Trigger.Kind`) is added and edited on the console (`form_class(data, function=,
  trigger=)`, whose `save()` returns the trigger), and how "fire now" sends it a sample event through
  the path its real events take (`fire(request, trigger)` returns an HTTP response, usually a redirect to
  the invocation).
- `pollers.append(poll)`: `manage.py run_event_sources` calls `poll(now)` about once a second. Several
  runners may poll at once, so a poller takes its work with conditional UPDATEs, never by assuming it is
  alone.
- `finished[source] = callable(invocation)`: called in the transaction that records how an invocation
  with that `source` ended (succeeded, failed, timed out, throttled, or failed by the sweep after its
  worker died), for sources that act on the outcome: a queue deletes the messages a batch processed.
"""

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class TriggerKind:
    form_class: type
    fire: Callable


trigger_kinds = {}
pollers = []
finished = {}
# Not a source's: callables(invocation) for every invocation, whatever its source (metrics rollups).
every_outcome = []


def invocation_finished(invocation):
    """Let whatever follows every outcome (`every_outcome`), then the invocation's source (`finished`), act on
    how an invocation, or one attempt of an asynchronous event, ended. Call inside the transaction that
    recorded the outcome."""
    for listener in every_outcome:
        listener(invocation)
    hook = finished.get(invocation.source)
    if hook is not None:
        hook(invocation)

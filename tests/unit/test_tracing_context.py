"""The stored trace context read back by the worker: the fast parse of a version-00 ``traceparent``
gives what the W3C propagator gives, for valid and malformed values alike."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry import propagate
from opentelemetry.trace import get_current_span

from streamq.shared import tracing

VALUES = [
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00",  # not sampled
    "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",  # upper case: invalid
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # zero span id
    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",  # a later version
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # the forbidden version
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
    "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "garbage",
]


@pytest.mark.parametrize("value", VALUES)
def test_a_stored_traceparent_reads_as_the_propagator_reads_it(value: str) -> None:
    ours = get_current_span(tracing.parent((value, ""))).get_span_context()
    again = get_current_span(tracing.parent((value, None))).get_span_context()  # the remembered one
    theirs = get_current_span(propagate.extract({"traceparent": value})).get_span_context()
    for context in (ours, again):
        assert (context.trace_id, context.span_id, context.trace_flags, context.is_valid, context.is_remote) == (
            theirs.trace_id, theirs.span_id, theirs.trace_flags, theirs.is_valid, theirs.is_remote
        )  # fmt: skip


def test_tracestate_goes_through_the_propagator() -> None:
    value = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    context = get_current_span(tracing.parent((value, "vendor=x"))).get_span_context()
    assert context.is_valid and context.trace_state.get("vendor") == "x"


@pytest.mark.parametrize("state", ["", "vendor=x,other=y"])
@pytest.mark.parametrize("flags", [0, 1])
def test_the_stored_fields_are_what_the_propagator_injects(state: str, flags: int) -> None:
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState, set_span_in_context

    context = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0x00AD6B7169203331, is_remote=False, trace_flags=TraceFlags(flags),
        trace_state=TraceState.from_header([state]) if state else None,
    )  # fmt: skip
    span = NonRecordingSpan(context)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=set_span_in_context(span))
    fields = tracing._fields_of(span)
    assert dict(zip(fields[::2], fields[1::2], strict=True)) == {
        k: v for k, v in carrier.items() if k in tracing.FIELDS
    }
    assert tracing._fields_of(NonRecordingSpan(SpanContext(0, 0, is_remote=False))) == []


def test_a_carrier_with_no_context_is_the_current_one() -> None:
    assert tracing.parent({}) is None


PROCESSING = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, DEFAULT_ON
from streamq.shared import tracing

provider = TracerProvider(sampler=ALWAYS_ON if sys.argv[1] == "always_on" else DEFAULT_ON)
exporter = InMemorySpanExporter()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
built = []
real = tracing._processing
tracing._processing = lambda *args: built.append(args) or real(*args)
for flags in ("00", "01"):
    with tracing.processing(f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333{flags[1]}-{flags}", "",
                            task_type="noop", queue="q", task_id="t1", attempt=2, rerun=True) as span:
        print(flags, span.is_recording(), len(built))
for span in exporter.get_finished_spans():
    print(span.context.span_id != 0, span.attributes["streamq.task.attempt"], len(span.links))
"""


@pytest.mark.parametrize(
    ("sampler", "printed"),
    [
        ("parentbased_always_on", ["00 False 0", "01 True 1", "True 2 1"]),  # unsampled: nothing built
        ("always_on", ["00 True 1", "01 True 2", "True 2 1", "True 2 1"]),  # recorded anyway: set after start
    ],
)
def test_an_unsampled_run_builds_its_attributes_only_when_recorded(sampler: str, printed: list[str]) -> None:
    import subprocess
    import sys

    # a process of its own: the global tracer provider is set once per process
    run = subprocess.run([sys.executable, "-c", PROCESSING, sampler], capture_output=True, text=True, check=True)
    assert run.stdout.split("\n")[:-1] == printed, run.stderr

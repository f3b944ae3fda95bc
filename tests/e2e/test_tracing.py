"""OpenTelemetry tracing across real processes: the api, a worker, the scheduler and the notifier export
spans over OTLP/HTTP to a receiver started here, which decodes them with ``opentelemetry-proto``.

One task is submitted with a ``traceparent`` through the api's fast path, fails its first attempt, is
retried through the scheduler and sends its webhook; another (an ``http`` task) goes through the
FastAPI route (an ``Idempotency-Key`` header). Every span of each task is in the trace of the
request's ``traceparent``, the retry links to the submit, and the webhook and the ``http`` task's
request carry a ``traceparent`` of that trace."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from streamq.testing import RedisServer, Service, free_port, wait_http
from tests.integration.receivers import Receiver, serving, wait_until

SECRET = "whsec_" + base64.b64encode(b"e2e-tracing-test-secret-0123456").decode()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.standalone_only(reason="the trace context travels in task hash fields: no cluster-specific path"),
]


def spans(receiver: Receiver) -> list[dict[str, Any]]:
    """Every span the services exported so far, decoded (ids in hex, attributes as a dict)."""
    out = []
    for request in receiver.at("/v1/traces"):
        export = ExportTraceServiceRequest.FromString(request.body)
        for resource_spans in export.resource_spans:
            service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    out.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "links": [(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                            "error": span.status.code == 2,
                        }
                    )
    return out


def _value(value: Any) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


def named(found: list[dict[str, Any]], name: str, trace: str) -> list[dict[str, Any]]:
    return [s for s in found if s["name"] == name and s["trace"] == trace]


@pytest.mark.timeout(180)
async def test_one_trace_from_the_request_to_the_webhook(redis_server: RedisServer, prefix: str, log_dir: Path) -> None:
    receiver = Receiver()  # the OTLP receiver (/v1/traces), the webhook receiver (/hook) and the http task's (/call)
    port = free_port()
    env = {
        "STREAMQ_REDIS_URL": redis_server.url,
        "STREAMQ_KEY_PREFIX": prefix,
        "STREAMQ_API_PORT": str(port),
        "STREAMQ_METRICS_PORT": "0",
        "STREAMQ_HANDLERS": "tests.e2e.tracing_handlers",
        "STREAMQ_WEBHOOK_SECRET": SECRET,
        "STREAMQ_ALLOW_PRIVATE_NETWORKS": "true",
        "STREAMQ_WEBHOOK_SCHEDULE": "0,0.5",
        "STREAMQ_WEBHOOK_POLL_S": "0.05",
        "STREAMQ_SHUTDOWN_GRACE_S": "2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url(""),
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export within 0.1 s instead of 5 s
    }
    async with serving(receiver):
        services = [
            Service(f"streamq.services.{name}", env, log_dir) for name in ("api", "worker", "scheduler", "notifier")
        ]
        try:
            url = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_http, f"{url}/api/health")  # the receiver runs in this loop
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                flaky = await client.post(
                    "/api/tasks",
                    json={"type": "trace_flaky", "webhook": receiver.url("/hook")},
                    headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01", "tracestate": "vendor=1"},
                )  # the fast path
                assert flaky.status_code == 201, flaky.text
                call = await client.post(
                    "/api/tasks",
                    json={"type": "http", "payload": {"method": "GET", "url": receiver.url("/call")}},
                    headers={"traceparent": f"00-{OTHER_TRACE}-{CLIENT_SPAN}-01", "idempotency-key": "trace-http"},
                )  # the FastAPI route (it checks the Idempotency-Key header)
                assert call.status_code == 201, call.text
            task_id, call_id = flaky.json()["id"], call.json()["id"]

            def complete() -> bool:
                found = spans(receiver)
                return (
                    len(named(found, "process trace_flaky", TRACE)) == 2
                    and len(named(found, "webhook completed", TRACE)) == 1
                    and len(named(found, "GET", OTHER_TRACE)) == 1
                )

            await wait_until(complete, 60, "the spans of both tasks")
            worker_log = services[1].log()
        finally:
            for service in services:
                service.stop()

    found = spans(receiver)
    [send] = named(found, "send default", TRACE)
    assert (send["service"], send["parent"]) == ("streamq-api", CLIENT_SPAN)  # a child of the client's span
    assert send["attributes"]["messaging.system"] == "streamq"
    assert send["attributes"]["messaging.destination.name"] == "default"
    assert send["attributes"]["messaging.message.id"] == task_id

    first, second = sorted(
        named(found, "process trace_flaky", TRACE), key=lambda s: s["attributes"]["streamq.task.attempt"]
    )
    for run, attempt in ((first, 1), (second, 2)):
        assert run["service"] == "streamq-worker"
        assert run["parent"] == send["id"]  # every attempt is in the submit's trace
        assert run["attributes"]["messaging.message.id"] == task_id
        assert run["attributes"]["messaging.operation.type"] == "process"
        assert run["attributes"]["streamq.task.attempt"] == attempt
    assert first["error"] and not first["links"]
    assert not second["error"] and second["links"] == [(TRACE, send["id"])]  # the retry links to the submit

    [promote] = named(found, "promote default", TRACE)  # the retry's delay ended in the scheduler
    assert (promote["service"], promote["parent"]) == ("streamq-scheduler", send["id"])
    assert promote["attributes"]["messaging.message.id"] == task_id

    [delivery] = named(found, "webhook completed", TRACE)
    assert (delivery["service"], delivery["parent"]) == ("streamq-notifier", send["id"])
    assert delivery["attributes"]["http.response.status_code"] == 200
    [hook] = receiver.at("/hook")
    assert orjson.loads(hook.body)["data"]["id"] == task_id
    assert hook.headers["traceparent"] == f"00-{TRACE}-{delivery['id']}-01"

    [call_send] = named(found, "send default", OTHER_TRACE)
    assert call_send["attributes"]["messaging.message.id"] == call_id
    [call_run] = named(found, "process http", OTHER_TRACE)
    [outbound] = named(found, "GET", OTHER_TRACE)
    assert (call_run["parent"], outbound["parent"]) == (call_send["id"], call_run["id"])
    [request] = receiver.at("/call")
    assert request.headers["traceparent"] == f"00-{OTHER_TRACE}-{outbound['id']}-01"

    # the handler's JSON log line names its span
    lines = [orjson.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    running = [line for line in lines if line.get("msg") == "trace_flaky running"]
    assert [line["trace_id"] for line in running] == [TRACE, TRACE]
    assert {line["span_id"] for line in running} == {first["id"], second["id"]}

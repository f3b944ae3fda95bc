"""OpenTelemetry tracing across real processes: the api, a worker, the scheduler and the notifier export
spans over OTLP/HTTP to a receiver started here, which decodes them with ``opentelemetry-proto``.

One task is submitted with a ``traceparent`` through the api's fast path, fails its first attempt, is
retried through the scheduler and sends its webhook; another (an ``http`` task) goes through the
FastAPI route (an ``Idempotency-Key`` header); a third (an ``email`` task) sends a message to an SMTP
server started here. Every span of each task is in the trace of the request's ``traceparent``, the
retry links to the submit, and the webhook and the ``http`` task's request carry a ``traceparent`` of
that trace. A stopping service exports the spans it still buffers, and stops within its bound when
the collector is gone. Both topologies: the trace context travels in task hash fields, kept in the
task's own slot on a cluster."""

from __future__ import annotations

import asyncio
import base64
import signal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from streamq.testing import RedisServer, Service, free_port, wait_http
from tests.integration.receivers import Receiver, serving, wait_until
from tests.integration.smtp import SmtpHandler, smtp_server

SECRET = "whsec_" + base64.b64encode(b"e2e-tracing-test-secret-0123456").decode()
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"
OTHER_TRACE = "0af7651916cd43dd8448eb211c80319c"
MAIL_TRACE = "5c3e8a0d4b9f41e2a7d6c1b0f9e8d7c6"

pytestmark = pytest.mark.e2e


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
    mail = SmtpHandler()  # the SMTP server of the email task
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
        "STREAMQ_SMTP_HOST": "127.0.0.1",
        "STREAMQ_SMTP_TLS": "none",
    }
    with smtp_server(mail) as smtp_port:
        env["STREAMQ_SMTP_PORT"] = str(smtp_port)
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
                    email = await client.post(
                        "/api/tasks",
                        json={"type": "email", "payload": {"to": ["ada@example.org"], "subject": "hi", "text": "x"}},
                        headers={"traceparent": f"00-{MAIL_TRACE}-{CLIENT_SPAN}-01"},
                    )
                    assert email.status_code == 201, email.text
                task_id, call_id, mail_id = flaky.json()["id"], call.json()["id"], email.json()["id"]

                def complete() -> bool:
                    found = spans(receiver)
                    return (
                        len(named(found, "process trace_flaky", TRACE)) == 2
                        and len(named(found, "webhook completed", TRACE)) == 1
                        and len(named(found, "GET", OTHER_TRACE)) == 1
                        and len(named(found, "SMTP send", MAIL_TRACE)) == 1
                    )

                await wait_until(complete, 60, "the spans of the three tasks")
                worker_log = services[1].log()
            finally:
                for service in services:  # in a thread: the receiver runs in this loop and gets the last spans
                    await asyncio.to_thread(service.stop)

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

    [mail_send] = named(found, "send default", MAIL_TRACE)
    [mail_run] = named(found, "process email", MAIL_TRACE)
    [smtp] = named(found, "SMTP send", MAIL_TRACE)
    assert (mail_run["parent"], smtp["parent"]) == (mail_send["id"], mail_run["id"])
    assert mail_run["attributes"]["messaging.message.id"] == mail_id
    assert smtp["service"] == "streamq-worker" and not smtp["error"]
    assert smtp["attributes"]["server.address"] == "127.0.0.1"
    assert smtp["attributes"]["server.port"] == int(env["STREAMQ_SMTP_PORT"])
    assert smtp["attributes"]["network.protocol.name"] == "smtp"
    assert smtp["attributes"]["streamq.email.recipient_count"] == 1
    [message] = mail.received
    assert message.recipients == ["ada@example.org"]
    assert "traceparent" not in message.message  # the trace context does not travel to the recipients

    # the handler's JSON log line names its span
    lines = [orjson.loads(line) for line in worker_log.splitlines() if line.startswith("{")]
    running = [line for line in lines if line.get("msg") == "trace_flaky running"]
    assert [line["trace_id"] for line in running] == [TRACE, TRACE]
    assert {line["span_id"] for line in running} == {first["id"], second["id"]}


@pytest.mark.timeout(90)
async def test_a_stopping_service_exports_its_last_spans(redis_server: RedisServer, prefix: str, log_dir: Path) -> None:
    receiver = Receiver()
    env = {
        "STREAMQ_REDIS_URL": redis_server.url,
        "STREAMQ_KEY_PREFIX": prefix,
        "STREAMQ_SHUTDOWN_GRACE_S": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "600000",  # nothing leaves the batch processor before the stop
    }

    async def submit_then_stop(otlp_url: str) -> Service:
        port = free_port()
        api = Service(
            "streamq.services.api",
            {**env, "STREAMQ_API_PORT": str(port), "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_url},
            log_dir,
        )
        before = len(spans(receiver))
        try:
            url = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_http, f"{url}/api/health")
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                answer = await client.post(
                    "/api/tasks", json={"type": "noop"}, headers={"traceparent": f"00-{TRACE}-{CLIENT_SPAN}-01"}
                )
                assert answer.status_code == 201, answer.text
            await asyncio.sleep(0.3)  # the receiver would have had the span by now were it exported on a timer
            assert len(spans(receiver)) == before
            api.signal(signal.SIGTERM)
            assert await asyncio.to_thread(api.wait, 20) == 0  # the grace (2 s) and the flush's bound (5 s)
            return api
        finally:
            await asyncio.to_thread(api.stop)

    async with serving(receiver):
        await submit_then_stop(receiver.url(""))
    [send] = named(spans(receiver), "send default", TRACE)
    assert send["service"] == "streamq-api"

    # the collector is gone: the stop waits for the flush's bound at most, then drops what is left
    gone = await submit_then_stop(f"http://127.0.0.1:{free_port()}")
    assert "spans not exported within the shutdown bound" in gone.log()


@pytest.mark.timeout(90)
async def test_an_unsampled_request_runs_its_task_without_spans(
    redis_server: RedisServer, prefix: str, log_dir: Path
) -> None:
    """A submit whose ``traceparent`` is not sampled: with the default parent-based sampler neither the
    api nor the worker records a span in its trace (the run's span is built without attributes and
    dropped); its outbound ``http`` call still carries that trace, unsampled. A sampled request next to
    it is traced as usual."""
    receiver = Receiver()
    port = free_port()
    env = {
        "STREAMQ_REDIS_URL": redis_server.url,
        "STREAMQ_KEY_PREFIX": prefix,
        "STREAMQ_API_PORT": str(port),
        "STREAMQ_METRICS_PORT": "0",
        "STREAMQ_ALLOW_PRIVATE_NETWORKS": "true",
        "STREAMQ_SHUTDOWN_GRACE_S": "2",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url(""),
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    async with serving(receiver):
        services = [Service(f"streamq.services.{name}", env, log_dir) for name in ("api", "worker")]
        try:
            url = f"http://127.0.0.1:{port}"
            await asyncio.to_thread(wait_http, f"{url}/api/health")
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                ids = {}
                for trace, flags in ((OTHER_TRACE, "00"), (TRACE, "01")):
                    answer = await client.post(
                        "/api/tasks",
                        json={"type": "http", "payload": {"method": "GET", "url": receiver.url(f"/call/{flags}")}},
                        headers={"traceparent": f"00-{trace}-{CLIENT_SPAN}-{flags}"},
                    )
                    assert answer.status_code == 201, answer.text
                    ids[flags] = answer.json()["id"]

                async def completed() -> bool:
                    for task_id in ids.values():
                        task = await client.get(f"/api/tasks/{task_id}")
                        if task.json()["status"] != "completed":
                            return False
                    return True

                for _ in range(300):
                    if await completed():
                        break
                    await asyncio.sleep(0.05)
                assert await completed()
            await wait_until(lambda: len(named(spans(receiver), "GET", TRACE)) == 1, 15, "the sampled run's spans")
        finally:
            for service in services:
                await asyncio.to_thread(service.stop)
    found = spans(receiver)
    assert [s for s in found if s["trace"] == OTHER_TRACE] == []  # nothing of the unsampled request
    [process] = named(found, "process http", TRACE)
    assert process["attributes"]["messaging.message.id"] == ids["01"]
    [unsampled] = [r.headers["traceparent"] for r in receiver.at("/call/00")]
    assert unsampled.startswith(f"00-{OTHER_TRACE}-") and unsampled.endswith("-00")
    [sampled] = [r.headers["traceparent"] for r in receiver.at("/call/01")]
    assert sampled == f"00-{TRACE}-{named(found, 'GET', TRACE)[0]['id']}-01"

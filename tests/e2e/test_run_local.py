"""`make run` (deploy/run_local.py) as a user runs it: settings from an env file, every service's text
log with its fields, and Ctrl-C (SIGINT to the whole process group, as a terminal sends it) stopping
the stack without a traceback."""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from streamq.testing import RedisServer, free_port, wait_http
from tests.support import ROOT

WEBHOOK_SECRET = "whsec_" + "cnVuLWxvY2FsLXRlc3Qtd2ViaG9vay1zZWNyZXQ="


def wait_for(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def terminal_sigint() -> None:
    """In the child: SIGINT as a terminal leaves it (the test runner may have inherited it ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.standalone_only("make run starts one local stack on one plain redis-server")
def test_make_run_reads_the_env_file_logs_fields_and_stops_quietly(redis_server: RedisServer, tmp_path: Path) -> None:
    api_port, dashboard_port = free_port(), free_port()
    prefix = f"t{uuid.uuid4().hex[:10]}"
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"STREAMQ_REDIS_URL={redis_server.url}\nSTREAMQ_KEY_PREFIX={prefix}\nSTREAMQ_API_PORT={api_port}\n"
        f"STREAMQ_DASHBOARD_PORT={dashboard_port}\nSTREAMQ_WEBHOOK_SECRET={WEBHOOK_SECRET}\n"
        "STREAMQ_HEARTBEAT_S=1\nSTREAMQ_SHUTDOWN_GRACE_S=5\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMQ_")}  # the file alone configures it
    output = tmp_path / "make-run.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "deploy/run_local.py", "--env-file", str(env_file)], cwd=ROOT, env=env,
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=terminal_sigint,
        )  # fmt: skip
    try:
        api = f"http://127.0.0.1:{api_port}"
        wait_http(f"{api}/api/health", 60)  # the port from the env file
        wait_http(f"http://127.0.0.1:{dashboard_port}/dash/config", 60)
        created = httpx.post(
            f"{api}/api/tasks", json={"type": "fail", "payload": "failed on purpose", "max_retries": 0}
        )
        assert created.status_code == 201, created.text
        task_id = created.json()["id"]
        # the worker's text line carries the task id and the error
        failed = f'task failed task={task_id} type=fail attempt=1 error="RuntimeError: failed on purpose"'
        wait_for(lambda: failed in output.read_text(), 30, f"the worker's line {failed!r}")
        # the metrics URL is printed, and it is the one the worker serves
        served = re.search(r"worker +\| .* metrics and health served url=(http://\S+/metrics) ", output.read_text())
        assert served is not None, output.read_text()
        assert httpx.get(served[1]).status_code == 200
        text = output.read_text()
        assert "private Redis" not in text  # the env file's Redis answered: no private one
        assert (
            f"api on http://127.0.0.1:{api_port}" in text and f"dashboard on http://127.0.0.1:{dashboard_port}" in text
        )
        wait_for(lambda: "smtp sink listening" in output.read_text(), 30, "the SMTP sink")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = output.read_text()
    assert "Traceback" not in text, text
    assert "exited with code" not in text, text  # every service stopped on the signal, none died first


def test_the_smtp_sink_prints_mail_and_stops_quietly_on_ctrl_c(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "STREAMQ_SMTP_HOST": "127.0.0.1", "STREAMQ_SMTP_PORT": str(port)}
    output = tmp_path / "sink.log"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "deploy.smtp_sink"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            preexec_fn=terminal_sigint,
        )  # fmt: skip
    try:
        wait_for(lambda: "smtp sink listening" in output.read_text(), 30, "the sink listening")
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
            smtp.sendmail("a@example.com", ["b@example.com"], b"Subject: hello sink\r\n\r\nthe body\r\n")
        wait_for(lambda: "Subject: hello sink" in output.read_text(), 10, "the mail printed")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:  # a session left mid-message
            client.recv(1024)
            client.sendall(
                b"EHLO test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\nSubject: x\r\n"
            )
            wait_for(lambda: client.recv(1024).startswith(b"250"), 10, "the sink reading")
            proc.send_signal(signal.SIGINT)  # Ctrl-C, then make run's SIGTERM right behind it
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in output.read_text(), output.read_text()

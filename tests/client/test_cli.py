"""The ``streamq`` console script run as a process against a real api (and worker): --json parsed, exit
codes, and a 10,000-line --from import interrupted and resumed without duplicates."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import free_port

pytestmark = pytest.mark.e2e
STREAMQ = str(Path(sys.executable).parent / "streamq")


def cli(url: str, *args: str, code: int = 0) -> Any:
    done = subprocess.run([STREAMQ, "--url", url, "--json", *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout) if done.stdout.strip() else done.stderr


def test_commands_and_exit_codes(stack: str) -> None:
    task = cli(stack, "submit", "echo", '{"n": 1}', "--priority", "5", "--wait", "--timeout", "30")
    assert task["status"] == "completed" and task["result"] == {"n": 1} and task["priority"] == 5
    assert cli(stack, "tasks", "get", task["id"])["id"] == task["id"]
    assert cli(stack, "tasks", "wait", task["id"])["status"] == "completed"
    failed = cli(stack, "submit", "fail", '"no"', "--max-retries", "0", "--wait", code=1)
    assert failed["status"] == "failed"
    assert cli(stack, "tasks", "retry", failed["id"])["id"] == failed["id"]
    assert cli(stack, "tasks", "wait", failed["id"], code=1)["status"] == "failed"
    assert cli(stack, "tasks", "retry-failed")["revived"] >= 1
    later = cli(stack, "submit", "noop", "--delay", "10m", "--idempotency-key", "k1")
    assert (
        later["status"] == "scheduled" and cli(stack, "submit", "noop", "--idempotency-key", "k1")["id"] == later["id"]
    )
    at = cli(stack, "submit", "noop", "--at", "2099-01-01T00:00:00Z", "--queue", "q2")
    assert at["scheduled_for"].startswith("2099-01-01") and at["queue"] == "q2"
    assert cli(stack, "tasks", "cancel", later["id"])["status"] == "cancelled"
    assert cli(stack, "tasks", "rm", later["id"]) == {"deleted": [later["id"]]}
    assert len(cli(stack, "tasks", "ls", "--limit", "2")) == 2
    assert {t["queue"] for t in cli(stack, "tasks", "ls", "--queue", "q2")} == {"q2"}
    assert cli(stack, "stats")["total"] >= 3
    assert len(cli(stack, "workers")) == 1
    assert "q2" in {q["name"] for q in cli(stack, "queues", "ls")}
    assert cli(stack, "queues", "pause", "q2")["paused"] is True
    assert cli(stack, "queues", "resume", "q2")["paused"] is False
    cli(stack, "schedules", "add", "nightly", "0 2 * * *", "echo", '{"r": 1}', "--timezone", "Europe/Paris")
    assert [s["name"] for s in cli(stack, "schedules", "ls")] == ["nightly"]
    assert cli(stack, "schedules", "pause", "nightly")[0]["paused"] is True
    assert cli(stack, "schedules", "resume", "nightly")[0]["paused"] is False
    cli(stack, "schedules", "rm", "nightly")
    key = cli(stack, "keys", "new", "ci-bot", "--scopes", "submit,read")
    assert key["api_keys_entry"].startswith("ci-bot:submit,read:") and key["secret"]

    invalid = cli(stack, "submit", "echo", "--priority", "9", code=2)
    assert "body.priority" in invalid  # the api's field error on stderr
    assert "not a duration" in cli(stack, "submit", "echo", "--delay", "soon", code=2)
    assert "404" in cli(stack, "tasks", "get", "01NOSUCHTASK0000000000000", code=3)
    assert "cannot reach" in cli(f"http://127.0.0.1:{free_port()}", "stats", code=5)


def test_unauthorized_exits_4(start_service: Any) -> None:
    from streamq.shared.auth import config_line, new_secret
    from tests.support import wait_http

    port = free_port()
    start_service(
        "streamq.services.api", STREAMQ_API_PORT=str(port), STREAMQ_API_KEYS=config_line("r", ["read"], new_secret())
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/api/health")
    assert "401" in cli(url, "stats", code=4)


def test_every_command_has_help_with_an_example() -> None:
    from streamq.cli import main

    def walk(group: Any, path: list[str]) -> list[list[str]]:
        found = [path]
        for name, command in getattr(group, "commands", {}).items():
            found += walk(command, [*path, name])
        return found

    for path in walk(main, []):
        text = subprocess.run([STREAMQ, *path, "--help"], capture_output=True, text=True, check=True).stdout
        assert "Example" in text, path


def test_from_file_resumes_after_an_interrupt(api_url: str, tmp_path: Path) -> None:
    source = tmp_path / "tasks.jsonl"
    source.write_text("".join(json.dumps({"type": "noop", "payload": i}) + "\n" for i in range(10_000)))
    first = subprocess.Popen(
        [STREAMQ, "--url", api_url, "--json", "submit", "--from", str(source), "--batch-size", "100"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while (total := httpx.get(f"{api_url}/api/stats").json()["total"]) < 1000:
        assert first.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGINT)  # Ctrl-C part way
    assert first.wait(30) != 0
    stopped_at = httpx.get(f"{api_url}/api/stats").json()["total"]
    assert 1000 <= total <= stopped_at < 10_000
    rerun = cli(api_url, "submit", "--from", str(source))
    assert rerun == {"lines": 10_000, "created": 10_000 - stopped_at, "duplicates": stopped_at}
    assert httpx.get(f"{api_url}/api/stats").json()["total"] == 10_000

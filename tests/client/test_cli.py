"""The ``streamq`` console script run as a process against a real api (and worker): --json parsed, exit
codes, and a 10,000-line --from import interrupted and resumed without duplicates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from streamq.testing import free_port

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


def run(url: str, *args: str, code: int, table: bool = False) -> subprocess.CompletedProcess[str]:
    """The console script's process (``--json`` unless ``table``: the table people read, 200 columns wide)."""
    flags = [] if table else ["--json"]
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([STREAMQ, "--url", url, *flags, *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == code, (args, done.returncode, done.stdout, done.stderr)
    return done


def cells(table: str) -> list[list[str]]:
    """The rows of a table the console script printed (rich's box drawing), each a list of its cells."""
    lines = [line.replace("┃", "│") for line in table.splitlines()]  # the header's border is heavier
    return [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.startswith("│")]


def until_task(url: str, task_id: str, check: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
    """``tasks get --json`` until ``check`` holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not check(task := cli(url, "tasks", "get", task_id)):
        assert time.monotonic() < deadline, task
        time.sleep(0.1)
    return dict(task)


def test_tasks_ls_filters_by_priority(stack: str) -> None:
    urgent = [cli(stack, "submit", "noop", "--priority", "5", "--delay", "10m")["id"] for _ in range(2)]
    low = cli(stack, "submit", "noop", "--priority", "1", "--delay", "10m")["id"]
    listed = cli(stack, "tasks", "ls", "--priority", "5")
    assert sorted(t["id"] for t in listed) == sorted(urgent) and {t["priority"] for t in listed} == {5}
    assert [t["id"] for t in cli(stack, "tasks", "ls", "-p", "1", "--status", "scheduled")] == [low]
    assert "1<=x<=5" in run(stack, "tasks", "ls", "--priority", "9", code=2).stderr


def test_submit_sets_the_task_s_own_timeout_and_keep(stack: str) -> None:
    task = cli(stack, "submit", "noop", "--delay", "10m", "--task-timeout", "7.5", "--keep", "60")
    assert (task["timeout_s"], task["keep_s"]) == (7.5, 60)
    assert cli(stack, "tasks", "get", task["id"])["timeout_s"] == 7.5
    assert "not in the range x>0" in run(stack, "submit", "noop", "--task-timeout", "0", code=2).stderr


def test_submit_group_unique_and_debounce(stack: str) -> None:
    task = cli(stack, "submit", "noop", "--delay", "10m", "--group", "acct-42", "--unique", "sync-42")
    assert task["group"] == "acct-42" and task["unique"]["key"] == "sync-42"
    assert "sync-42" in run(stack, "submit", "noop", "--unique", "sync-42", code=1).stderr
    first = cli(stack, "submit", "noop", "--debounce", "doc-7", "--window", "60")
    again = cli(stack, "submit", "noop", "--debounce", "doc-7", "--window", "60")
    assert again["id"] == first["id"] and again["debounced"] is True
    assert "go together" in run(stack, "submit", "noop", "--debounce", "doc-7", code=2).stderr


def test_submit_timeout_is_how_long_wait_waits(stack: str) -> None:
    # the wait runs out before the task ends: the task as it stands then on stdout, a note, exit 1
    ran_out = run(stack, "submit", "sleep", "5", "--wait", "--timeout", "0.5", code=1)
    task = json.loads(ran_out.stdout)
    assert task["status"] in ("pending", "processing") and "after 0.5 s" in ran_out.stderr
    # only the wait stopped: the task runs on and completes
    assert cli(stack, "tasks", "wait", task["id"], "--timeout", "30")["status"] == "completed"
    assert "pass --wait too" in run(stack, "submit", "noop", "--timeout", "5", code=2).stderr
    assert "not in the range x>0" in run(stack, "submit", "noop", "--wait", "--timeout", "0", code=2).stderr
    assert cli(stack, "stats")["total"] == 1  # the refused commands submitted nothing
    assert "--wait waits for the task to end" in " ".join(run(stack, "submit", "--help", code=0).stdout.split())


def test_tasks_get_shows_progress_and_cancel_requested(control_stack: str) -> None:
    url = control_stack
    # reports 0.5 "half way", then sleeps 120 s (however slow each command here is), ending 10 s after a cancel
    running = cli(url, "submit", "progress_sync", "120")["id"]
    task = until_task(url, running, lambda t: t["progress"] == 0.5)
    assert task["progress_message"] == "half way" and task["cancel_requested"] is False
    one = dict(row[:2] for row in cells(run(url, "tasks", "get", running, code=0, table=True).stdout))
    assert one["progress"] == "50%" and one["progress_message"] == "half way" and one["cancel_requested"] == "false"

    asked = cli(url, "tasks", "cancel", running)  # a running task: 202, asked to stop
    assert asked["status"] == "processing" and asked["cancel_requested"] is True
    other = cli(url, "submit", "noop", "--delay", "10m")["id"]
    header, *rows = cells(run(url, "tasks", "get", running, other, code=0, table=True).stdout)
    shown = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    assert shown[running]["progress"] == "50%" and shown[running]["progress_message"] == "half way"
    assert shown[running]["cancel_requested"] == "true" and shown[other]["cancel_requested"] == "false"
    # the sync handler ignores the request: recorded cancelled after the grace; tasks wait exits 1
    done = cli(url, "tasks", "wait", running, "--timeout", "30", code=1)
    assert done["status"] == "cancelled" and done["progress"] == 0.5


def test_unauthorized_exits_4(start_service: Any) -> None:
    from streamq.shared.auth import config_line, new_secret
    from streamq.testing import wait_http

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

    paths = walk(main, [])
    # the installed command once (the entry point works); every other help in this process, as click renders it
    assert "Example" in subprocess.run([STREAMQ, "--help"], capture_output=True, text=True, check=True).stdout
    runner = CliRunner()
    for path in paths:
        done = runner.invoke(main, [*path, "--help"], prog_name="streamq")
        assert done.exit_code == 0 and "Example" in done.output, (path, done.output)


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

"""The ``streamq`` command: the services (``streamq api|worker|scheduler|notifier|dashboard|run``) and
a client of the api (submit, tasks, queues, schedules, stats, workers, keys).

Output is a table for people, or with ``--json`` one JSON document on stdout. Exit codes: 0 ok; 1 a
waited task ended failed or cancelled (or another error: a conflict, a rate limit, a wait that ran
out); 2 usage or invalid input (the api's field errors on stderr); 3 not found; 4 unauthorized or
forbidden; 5 the api is unreachable."""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import BaseModel
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import streamq
from streamq import _core as core

OK, TASK_FAILED, USAGE, NOT_FOUND, DENIED, UNREACHABLE = 0, 1, 2, 3, 4, 5
ERROR_CODES: tuple[tuple[type[streamq.StreamqError], int], ...] = (
    (streamq.InvalidTask, USAGE),
    (streamq.NotFound, NOT_FOUND),
    (streamq.Unauthorized, DENIED),
    (streamq.Forbidden, DENIED),
    (streamq.Unavailable, UNREACHABLE),
)
err = Console(stderr=True)
TASK_COLUMNS = ("id", "type", "queue", "status", "priority", "attempts", "created_at", "error")
# tasks get of several ids: also how far each running one got and whether it was asked to stop
SHOWN_COLUMNS = (*TASK_COLUMNS[:-1], "progress", "progress_message", "cancel_requested", "error")
WAIT_S = 60.0  # --timeout's default: how long --wait and tasks wait wait


@dataclass
class State:
    url: str | None
    api_key: str | None
    json: bool

    def client(self, **options: Any) -> streamq.Client:
        return streamq.Client(self.url, self.api_key, **options)


pass_state = click.make_pass_decorator(State)


class Group(click.Group):
    """Maps the client's errors to the documented exit codes, with the message (and field errors) on stderr."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except streamq.StreamqError as error:
            fail(error)


def fail(error: streamq.StreamqError) -> NoReturn:
    err.print(f"[red]error:[/red] {error}", markup=True, highlight=False)
    if isinstance(error, streamq.InvalidTask):
        for item in error.errors:
            err.print(f"  {'.'.join(str(p) for p in item.get('loc', []))}: {item.get('msg', '')}", highlight=False)
    code = next((c for kind, c in ERROR_CODES if isinstance(error, kind)), TASK_FAILED)
    raise SystemExit(code)


# --- output --------------------------------------------------------------------------------------
def plain(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def show(state: State, value: Any, columns: Sequence[str] | None = None) -> None:
    """``value`` as JSON (``--json``) or as a table of ``columns`` (a list) or of field and value (one)."""
    data = plain(value)
    if state.json:
        click.echo(json.dumps(data, default=str))
        return
    console = Console()
    if isinstance(data, list):
        names = list(columns or (data[0].keys() if data else []))
        table = Table(*names)
        for row in data:
            table.add_row(*(_cell(row.get(n), n) for n in names))
        console.print(table)
    elif isinstance(data, dict):
        table = Table("field", "value", show_header=False)
        for key, item in data.items():
            table.add_row(key, _cell(item, key))
        console.print(table)
    else:
        console.print(data)


def _cell(value: Any, name: str = "") -> str:
    if value is None:
        return ""
    if name == "progress" and isinstance(value, int | float):
        return f"{value:.0%}"  # a task's progress (a fraction) as people read it; --json keeps the fraction
    return value if isinstance(value, str) else json.dumps(value, default=str)


# --- argument parsing ------------------------------------------------------------------------------
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def duration(text: str) -> float:
    """``10s``, ``5m``, ``1.5h``, ``250ms`` or plain seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise click.BadParameter(f"{text!r} is not a duration like 10s, 5m, 2h or 1d")
    return float(match[1]) * _UNITS[match[2]]


def json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as error:
        raise click.BadParameter(f"{what} is not JSON: {error}") from None


def when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time like 2030-01-01T09:00:00Z") from None
    if value.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no time zone: add Z or +02:00")
    return value


# --- the command --------------------------------------------------------------------------------
@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--url", envvar="STREAMQ_URL", help="The api's base url [env STREAMQ_URL; default http://127.0.0.1:8080]."
)
@click.option("--api-key", envvar="STREAMQ_API_KEY", help="An api key [env STREAMQ_API_KEY].")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on stdout instead of a table.")
@click.version_option(streamq.__version__, prog_name="streamq")
@click.pass_context
def main(ctx: click.Context, url: str | None, api_key: str | None, as_json: bool) -> None:
    """streamq: a task queue on Redis Streams.

    \b
    Example:
      streamq submit echo '"hello"' --wait
      streamq --json tasks ls --status failed
    """
    ctx.obj = State(url, api_key, as_json)


# --- submit -------------------------------------------------------------------------------------
@main.command()
@click.argument("type", required=False)
@click.argument("payload", required=False)
@click.option("--queue", "-q", help="The queue (default: the api's STREAMQ_QUEUE).")
@click.option("--priority", "-p", type=int, help="1 (lowest) to 5 (highest); default 3.")
@click.option("--delay", help="Run after this long: 10s, 5m, 2h.")
@click.option("--at", "at", help="Run at this ISO 8601 time (with a zone).")
@click.option("--max-retries", type=int)
@click.option(
    "--task-timeout",
    type=click.FloatRange(0, min_open=True),
    help="Seconds the task may run before it is stopped and counted a failed attempt (default: the api's).",
)
@click.option("--webhook", help="A URL the notifier posts this task's lifecycle events to.")
@click.option("--keep", "keep_s", type=click.IntRange(0), help="Seconds the task's record is kept once it ended.")
@click.option("--idempotency-key", help="A key seen in the last 24 h returns the first task instead.")
@click.option("--group", help="Its group (a tenant, an account, a host): fair turns and the group's limits.")
@click.option("--unique", "unique_key", help="Refuse a second task with this key while this one waits or runs.")
@click.option("--debounce", "debounce_key", help="Run once, --window seconds after the last submit with this key.")
@click.option("--window", type=click.FloatRange(0, min_open=True), help="The --debounce window in seconds.")
@click.option("--wait", "wait", is_flag=True, help="Wait for the task to end; exit 1 if it failed or was cancelled.")
@click.option(
    "--timeout",
    type=click.FloatRange(0, min_open=True),
    help=f"Seconds --wait waits for the task to end (default {WAIT_S:g}); not the task's own run time limit.",
)
@click.option(
    "--from", "source", type=click.Path(dir_okay=False, allow_dash=True), help="Submit tasks.jsonl: one task a line."
)
@click.option("--batch-size", type=click.IntRange(1, core.BATCH_LIMIT), default=core.BATCH_LIMIT, show_default=True)
@pass_state
def submit(
    state: State,
    type: str | None,
    payload: str | None,
    queue: str | None,
    priority: int | None,
    delay: str | None,
    at: str | None,
    max_retries: int | None,
    task_timeout: float | None,
    webhook: str | None,
    keep_s: int | None,
    idempotency_key: str | None,
    group: str | None,
    unique_key: str | None,
    debounce_key: str | None,
    window: float | None,
    wait: bool,
    timeout: float | None,
    source: str | None,
    batch_size: int,
) -> None:
    """Submit a task, or every line of a JSON Lines file.

    \b
    Examples:
      streamq submit echo '{"to": "a@example.com"}' --priority 5 --delay 10s
      streamq submit report --at 2030-01-01T09:00:00Z --idempotency-key report-2030
      streamq submit sleep 2 --wait --timeout 30
      streamq submit fetch '{"url": "https://example.com"}' --task-timeout 20 --webhook https://example.com/hooks
      streamq submit sync '{"account": 42}' --group acct-42 --unique sync-42
      streamq submit reindex '{"doc": 7}' --debounce doc-7 --window 5
      streamq submit --from tasks.jsonl      # {"type": "echo", "payload": 1} per line

    A --from run is resumable: each line without its own idempotency_key gets one made from the
    line (its number and text), so a rerun after an interrupt makes no task twice.

    --wait prints the task once it ended (exit 1 if it failed or was cancelled); if --timeout runs
    out first, the task as it stands then, and exit 1. Only the wait stops: the task runs on.
    """
    if source is not None:
        if type is not None:
            raise click.UsageError("pass TYPE or --from, not both")
        submit_file(state, source, batch_size)
        return
    if type is None:
        raise click.UsageError("missing TYPE (or --from FILE)")
    if delay is not None and at is not None:
        raise click.UsageError("pass --delay or --at, not both")
    if timeout is not None and not wait:
        raise click.UsageError("--timeout is how long --wait waits: pass --wait too")
    if (debounce_key is None) != (window is None):
        raise click.UsageError("--debounce KEY and --window SECONDS go together")
    with state.client() as client:
        task = client.submit(
            type,
            json_arg(payload, "PAYLOAD"),
            queue=queue,
            priority=priority,
            delay=duration(delay) if delay is not None else None,
            scheduled_for=when(at),
            max_retries=max_retries,
            timeout_s=task_timeout,
            webhook=webhook,
            idempotency_key=idempotency_key,
            keep_s=keep_s,
            group=group,
            unique=None if unique_key is None else {"key": unique_key},
            debounce=None if debounce_key is None else {"key": debounce_key, "window_s": window},
        )
        if wait:
            [task] = waited(client, [task.id], WAIT_S if timeout is None else timeout)
    show(state, task)
    if wait and task.status != streamq.TaskStatus.COMPLETED:
        raise SystemExit(TASK_FAILED)


def file_lines(source: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, task) of every non-blank line; a bad line is a usage error naming it."""
    stream = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115 - closed below
    try:
        for number, line in enumerate(stream, 1):
            if not line.strip():
                continue
            try:
                spec = json.loads(line)
            except ValueError as error:
                raise click.UsageError(f"{source}:{number}: not JSON ({error})") from None
            if not isinstance(spec, dict) or "type" not in spec:
                raise click.UsageError(f"{source}:{number}: each line is an object with a 'type'")
            spec.setdefault(
                "idempotency_key", "line-" + hashlib.sha256(f"{number}:{line.strip()}".encode()).hexdigest()[:40]
            )
            yield number, spec
    finally:
        if stream is not sys.stdin:
            stream.close()


def submit_file(state: State, source: str, batch_size: int) -> None:
    lines = list(file_lines(source))
    created = duplicates = 0
    with state.client() as client, Progress(console=err, disable=state.json or not err.is_terminal) as bar:
        progress = bar.add_task("submitting", total=len(lines))
        for start in range(0, len(lines), batch_size):
            chunk = lines[start : start + batch_size]
            try:
                bodies = [core.task_body(**spec) for _, spec in chunk]
            except TypeError as error:
                raise click.UsageError(f"{source}:{chunk[0][0]}..{chunk[-1][0]}: {error}") from None
            batch = client.send(core.submit_batch(bodies))
            created, duplicates = created + batch.created, duplicates + batch.duplicates
            bar.advance(progress, len(chunk))
    show(state, {"lines": len(lines), "created": created, "duplicates": duplicates})


# --- tasks --------------------------------------------------------------------------------------
@main.group(cls=Group)
def tasks() -> None:
    """List, inspect, wait for, cancel, retry and delete tasks.

    \b
    Example:
      streamq tasks ls --status failed --limit 20
    """


@tasks.command("ls")
@click.option("--status", type=click.Choice([s.value for s in streamq.TaskStatus]))
@click.option("--type", "type_")
@click.option("--queue", "-q")
@click.option("--priority", "-p", type=click.IntRange(1, 5), help="Only tasks of this priority (1-5).")
@click.option("--limit", type=click.IntRange(min=0), default=50, show_default=True)
@pass_state
def tasks_ls(
    state: State, status: str | None, type_: str | None, queue: str | None, priority: int | None, limit: int
) -> None:
    """Tasks, newest first.

    \b
    Example:
      streamq tasks ls --queue critical --status pending --priority 5 --limit 100
    """
    with state.client() as client:
        found = list(client.list(status=status, type=type_, queue=queue, priority=priority, limit=limit))
    show(state, found, TASK_COLUMNS)


def waited(client: streamq.Client, ids: Sequence[str], timeout: float) -> list[streamq.Task]:
    """Each task once it ended, all within ``timeout`` seconds in all; a task still running when that
    ran out is returned as it stands then (not terminal), with a note on stderr."""
    deadline = time.monotonic() + timeout
    out: list[streamq.Task] = []
    for task_id in ids:
        try:
            out.append(client.wait(task_id, timeout=max(deadline - time.monotonic(), 0.0)))
        except streamq.Timeout as error:
            if error.task is None:  # no answer from the api at all
                raise
            err.print(f"[yellow]{error.task.id} is still {error.task.status.value} after {timeout:g} s[/yellow]")
            out.append(error.task)
    return out


def _each(state: State, ids: Sequence[str], call: Callable[[streamq.Client, str], Any]) -> list[Any]:
    with state.client() as client:
        return [call(client, task_id) for task_id in ids]


def _one_or_many(state: State, values: list[Any], columns: Sequence[str] = TASK_COLUMNS) -> None:
    show(state, values[0] if len(values) == 1 else values, None if len(values) == 1 else columns)


@tasks.command("get")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def tasks_get(state: State, ids: tuple[str, ...]) -> None:
    """Show tasks: every field of one, or a row each (with progress and cancel_requested) of several.

    \b
    Example:
      streamq tasks get 01M8GCFBBVY7Z48VGJPE8C72EQ
    """
    _one_or_many(state, _each(state, ids, lambda c, i: c.get(i)), SHOWN_COLUMNS)


@tasks.command("wait")
@click.argument("ids", nargs=-1, required=True)
@click.option(
    "--timeout", type=click.FloatRange(0, min_open=True), default=WAIT_S, show_default=True, help="Seconds, in all."
)
@pass_state
def tasks_wait(state: State, ids: tuple[str, ...], timeout: float) -> None:
    """Wait for tasks to end; exit 1 if any failed or was cancelled, or is still running when the
    timeout ran out (shown as it stands then).

    \b
    Example:
      streamq tasks wait 01M8GCFBBVY7Z48VGJPE8C72EQ --timeout 300
    """
    with state.client() as client:
        done = waited(client, ids, timeout)
    _one_or_many(state, done, SHOWN_COLUMNS)
    if any(t.status != streamq.TaskStatus.COMPLETED for t in done):
        raise SystemExit(TASK_FAILED)


@tasks.command("cancel")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def tasks_cancel(state: State, ids: tuple[str, ...]) -> None:
    """Cancel tasks: a pending or scheduled one ends cancelled; a running one is asked to stop
    (cancel_requested: true) and ends cancelled once its worker stopped it.

    \b
    Example:
      streamq tasks cancel 01M8GCFBBVY7Z48VGJPE8C72EQ
    """
    _one_or_many(state, _each(state, ids, lambda c, i: c.cancel(i)))


@tasks.command("retry")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def tasks_retry(state: State, ids: tuple[str, ...]) -> None:
    """Send failed or cancelled tasks back to pending.

    \b
    Example:
      streamq tasks retry 01M8GCFBBVY7Z48VGJPE8C72EQ
    """
    _one_or_many(state, _each(state, ids, lambda c, i: c.retry(i)))


@tasks.command("rm")
@click.argument("ids", nargs=-1, required=True)
@pass_state
def tasks_rm(state: State, ids: tuple[str, ...]) -> None:
    """Delete finished tasks.

    \b
    Example:
      streamq tasks rm 01M8GCFBBVY7Z48VGJPE8C72EQ
    """
    _each(state, ids, lambda c, i: c.delete(i))
    show(state, {"deleted": list(ids)})


@tasks.command("retry-failed")
@click.option("--queue", "-q")
@pass_state
def tasks_retry_failed(state: State, queue: str | None) -> None:
    """Every failed task (of --queue, else of every queue) back to pending.

    \b
    Example:
      streamq tasks retry-failed --queue critical
    """
    with state.client() as client:
        show(state, {"revived": client.retry_failed(queue=queue)})


# --- queues, schedules, stats, workers, keys ----------------------------------------------------
@main.group(cls=Group)
def queues() -> None:
    """Named queues.

    \b
    Example:
      streamq queues ls
    """


@queues.command("ls")
@pass_state
def queues_ls(state: State) -> None:
    """Every queue with its partitions, pause flag and counts.

    \b
    Example:
      streamq --json queues ls
    """
    with state.client() as client:
        show(state, client.queues.list(), ("name", "partitions", "paused", "dead_letter", "workers"))


def _queue_command(name: str, action: str, example: str) -> None:
    @queues.command(name, help=f"{action}\n\n\b\nExample:\n  {example}")
    @click.argument("queue")
    @pass_state
    def command(state: State, queue: str) -> None:
        with state.client() as client:
            book = client.queues
            show(state, (book.pause if name == "pause" else book.resume)(queue))


_queue_command("pause", "Stop workers taking the queue's tasks (submits still go in).", "streamq queues pause bulk")
_queue_command("resume", "Let workers take the queue's tasks again.", "streamq queues resume bulk")


@main.group(cls=Group)
def schedules() -> None:
    """Periodic (cron) schedules.

    \b
    Example:
      streamq schedules add nightly "0 2 * * *" report '{"user": 7}' --timezone Europe/Paris
    """


SCHEDULE_COLUMNS = ("name", "queue", "cron", "timezone", "paused", "next_run_at", "fired_total")


@schedules.command("ls")
@pass_state
def schedules_ls(state: State) -> None:
    """Every schedule.

    \b
    Example:
      streamq schedules ls
    """
    with state.client() as client:
        show(state, client.schedules.list(), SCHEDULE_COLUMNS)


@schedules.command("add")
@click.argument("name")
@click.argument("cron")
@click.argument("type")
@click.argument("payload", required=False)
@click.option("--timezone", default="UTC", show_default=True)
@click.option("--queue", "-q")
@click.option("--priority", "-p", type=int)
@pass_state
def schedules_add(
    state: State, name: str, cron: str, type: str, payload: str | None, timezone: str, queue: str | None,
    priority: int | None,
) -> None:  # fmt: skip
    """Create a schedule firing TYPE with PAYLOAD at each CRON time.

    \b
    Example:
      streamq schedules add hourly-sync "0 * * * *" sync --queue bulk
    """
    with state.client() as client:
        created = client.schedules.create(
            name, cron, type, json_arg(payload, "PAYLOAD"), timezone=timezone, queue=queue, priority=priority
        )
    show(state, created)


def _schedule_command(name: str, action: str, example: str) -> None:
    @schedules.command(name, help=f"{action}\n\n\b\nExample:\n  {example}")
    @click.argument("names", nargs=-1, required=True)
    @pass_state
    def command(state: State, names: tuple[str, ...]) -> None:
        with state.client() as client:
            book = client.schedules
            call = {"rm": book.delete, "pause": book.pause, "resume": book.resume}[name]
            done = [call(n) for n in names]
        show(state, {"deleted": list(names)} if name == "rm" else done, SCHEDULE_COLUMNS)


_schedule_command("rm", "Delete schedules.", "streamq schedules rm nightly")
_schedule_command("pause", "Pause schedules (nothing fires until resumed).", "streamq schedules pause nightly")
_schedule_command("resume", "Resume schedules from their next tick.", "streamq schedules resume nightly")


@main.command()
@click.option("--queue", "-q")
@pass_state
def stats(state: State, queue: str | None) -> None:
    """Counts per status and lifetime counters (of --queue, else of every queue).

    \b
    Example:
      streamq stats --queue critical
    """
    with state.client() as client:
        show(state, client.stats(queue))


@main.command()
@pass_state
def workers(state: State) -> None:
    """Live worker processes.

    \b
    Example:
      streamq workers
    """
    with state.client() as client:
        show(state, client.workers(), ("id", "queues", "concurrency", "in_flight", "processed", "handlers"))


@main.group(cls=Group)
def keys() -> None:
    """Api keys.

    \b
    Example:
      streamq keys new ci-bot --scopes submit,read
    """


@keys.command("new")
@click.argument("name")
@click.option("--scopes", default="submit,read", show_default=True, help="Comma-separated: submit, read, admin.")
@pass_state
def keys_new(state: State, name: str, scopes: str) -> None:
    """Make a key: its secret (for the client) and the STREAMQ_API_KEYS entry (for the api).

    \b
    Example:
      streamq keys new ci-bot --scopes submit,read
    """
    from streamq.shared.auth import config_line, new_secret, parse_keys

    secret = new_secret()
    line = config_line(name, [s.strip() for s in scopes.split(",") if s.strip()], secret)
    try:
        parse_keys(line)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    show(state, {"name": name, "secret": secret, "api_keys_entry": line})


@main.command()
@click.option("--dry-run", is_flag=True, help="List the migrations Redis needs without running them.")
@pass_state
def migrate(state: State, dry_run: bool) -> None:
    """Bring the Redis layout up to this streamq's schema version (STREAMQ_* settings name the Redis).

    Safe to run twice and to run again after a crash; the api also runs it at start unless
    STREAMQ_AUTO_MIGRATE=false. Exit 2 if Redis holds a newer schema than this streamq knows.

    \b
    Example:
      STREAMQ_REDIS_URL=redis://redis:6379/0 streamq migrate
    """
    import asyncio

    from streamq.shared import schema
    from streamq.shared.settings import load_settings

    try:
        report = asyncio.run(schema.command(load_settings(), dry_run=dry_run))
    except schema.SchemaTooNew as error:
        err.print(f"streamq: {error}", markup=False, highlight=False)
        sys.exit(USAGE)
    if state.json:
        show(state, report)
        return
    runs = report["migrations"]
    assert isinstance(runs, list)
    for m in runs:
        rolling = "rolling upgrade possible" if m["rolling"] else "no rolling upgrade: stop the previous build first"
        verb = "would run" if dry_run else "ran"
        click.echo(f"{verb} migration {m['version']}: {m['summary']} ({rolling})")
    done = f"schema {report['found']} -> {report['version']}" if runs else f"schema {report['version']}: up to date"
    click.echo(done)


# --- the services -------------------------------------------------------------------------------
SERVICES = {
    "api": ("streamq.services.api.main", "The REST api (STREAMQ_API_HOST, STREAMQ_API_PORT).", "streamq api"),
    "scheduler": ("streamq.services.scheduler.main", "Promotes due tasks and fires schedules.", "streamq scheduler"),
    "notifier": ("streamq.services.notifier.main", "Delivers webhooks and emails.", "streamq notifier"),
    "dashboard": ("streamq.dashboard.main", "The web dashboard (STREAMQ_DASHBOARD_PORT).", "streamq dashboard"),
}


def _serve(module: str) -> None:
    # handler modules are found from the directory the command runs in, as `python -m` would find them
    # (a console script's sys.path starts with its own bin/ folder instead): `streamq worker -H myapp.tasks`
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    importlib.import_module(module).main()


def _service_command(name: str, module: str, summary: str, example: str) -> None:
    @main.command(name, help=f"{summary} Settings come from STREAMQ_* variables.\n\n\b\nExample:\n  {example}")
    def command() -> None:
        _serve(module)


for _name, (_module, _summary, _example) in SERVICES.items():
    _service_command(_name, _module, _summary, _example)


@main.command()
@click.option("--handlers", "-H", multiple=True, help="Handler modules (STREAMQ_HANDLERS); repeat or comma-separate.")
@click.option("--concurrency", "-c", type=click.IntRange(1, 10_000), help="Tasks at once (STREAMQ_WORKER_CONCURRENCY).")
@click.option("--queues", "-q", "queue_weights", help="Queues and weights, e.g. critical:6,default:3 (STREAMQ_QUEUES).")
def worker(handlers: tuple[str, ...], concurrency: int | None, queue_weights: str | None) -> None:
    """Run a worker; the options are shortcuts for the STREAMQ_* settings.

    \b
    Example:
      streamq worker -H myapp.tasks -c 20 -q critical:6,default:3
    """
    if handlers:
        os.environ["STREAMQ_HANDLERS"] = ",".join(handlers)
    if concurrency is not None:
        os.environ["STREAMQ_WORKER_CONCURRENCY"] = str(concurrency)
    if queue_weights is not None:
        os.environ["STREAMQ_QUEUES"] = queue_weights
    _serve("streamq.services.worker.main")


@main.command()
def run() -> None:
    """The whole local stack in the foreground, as `make run` (a private redis-server if none answers).

    \b
    Example:
      streamq run
    """
    script = Path.cwd() / "deploy" / "run_local.py"
    if not script.is_file():
        raise click.UsageError("streamq run works from a streamq checkout (it runs deploy/run_local.py)")
    os.execv(sys.executable, [sys.executable, str(script)])


from streamq.cli_workflows import workflows  # noqa: E402  (it uses this module's helpers)

main.add_command(workflows)

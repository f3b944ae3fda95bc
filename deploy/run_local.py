#!/usr/bin/env python3
"""`make run`: the whole stack as local processes, in the foreground, one log prefix per service.

Settings come from the environment and from .env at the checkout's root (``--env-file`` names another
file), read as the services read them (pydantic-settings, the environment first); the file's values are
passed on to every service. Starts a private redis-server (port and data under .run/, git-ignored) when
nothing answers at STREAMQ_REDIS_URL, then every service; Ctrl-C (or SIGTERM) stops them all cleanly.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

from streamq.shared.redis import redact
from streamq.shared.settings import Settings, load_settings
from streamq.testing import RedisServer, free_port, redis_answers

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / ".run"
# (name, module, extra environment); a service whose package has no __main__ yet is skipped.
SERVICES = [
    ("api", "streamq.services.api", {}),
    ("worker", "streamq.services.worker", {}),
    ("scheduler", "streamq.services.scheduler", {}),
    ("notifier", "streamq.services.notifier", {}),
    ("dashboard", "streamq.dashboard", {}),
    ("smtp-sink", "deploy.smtp_sink", {}),  # only when no SMTP server is configured (see dev_defaults)
]
COLOURS = ["36", "32", "35", "33", "34", "31"]


def start_private_redis() -> tuple[RedisServer, str]:
    data = RUN_DIR / "redis"
    data.mkdir(parents=True, exist_ok=True)
    port_file = RUN_DIR / "redis.port"
    port = int(port_file.read_text()) if port_file.exists() else free_port()
    port_file.write_text(str(port))
    try:
        server = RedisServer(
            "--appendonly", "yes", "--appendfsync", "everysec", "--logfile", str(RUN_DIR / "redis.log"),
            port=port, data_dir=data, persistent=True,
            new_session=True,  # Ctrl-C reaches the services, not Redis: it stops last, after they unregister
            timeout=5,
        )  # fmt: skip
    except TimeoutError:
        sys.exit("streamq: the private redis-server did not start; see .run/redis.log")
    return server, server.url


def read_settings(env_file: Path) -> tuple[Settings, dict[str, str]]:
    """The settings as the services will read them, and the environment they are started with: the
    env file's ``STREAMQ_*`` values under this process's environment (which wins, as in Settings)."""
    from_file = {k: v for k, v in dotenv_values(env_file).items() if k.upper().startswith("STREAMQ_") and v is not None}
    return load_settings(_env_file=env_file), {**from_file, **os.environ}


def dev_defaults(env: dict[str, str], settings: Settings) -> bool:
    """Development defaults for the notifier and the email task type; True when the SMTP sink runs.
    Without STREAMQ_SMTP_HOST, mail goes to a local sink that prints it; without
    STREAMQ_WEBHOOK_SECRET, a secret is generated once into .run/webhook_secret."""
    if "webhook_secret" not in settings.model_fields_set:
        secret_file = RUN_DIR / "webhook_secret"
        if not secret_file.exists():
            import base64

            RUN_DIR.mkdir(parents=True, exist_ok=True)
            secret_file.write_text("whsec_" + base64.b64encode(os.urandom(32)).decode())
        env["STREAMQ_WEBHOOK_SECRET"] = secret_file.read_text().strip()
        print(f"streamq: webhooks are signed with the development secret in {secret_file}")
    if "smtp_host" in settings.model_fields_set:
        return False
    env.update(STREAMQ_SMTP_HOST="127.0.0.1", STREAMQ_SMTP_PORT=str(free_port()), STREAMQ_SMTP_TLS="none")
    print(f"streamq: email tasks go to the development SMTP sink on 127.0.0.1:{env['STREAMQ_SMTP_PORT']}")
    return True


def pump(name: str, colour: str, stream: object) -> None:
    width = max(len(s[0]) for s in SERVICES)
    tag = f"\033[{colour}m{name:<{width}} |\033[0m " if sys.stdout.isatty() else f"{name:<{width}} | "
    for line in iter(stream.readline, b""):  # type: ignore[attr-defined]
        sys.stdout.write(tag + line.decode(errors="replace"))
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env-file", type=Path, default=ROOT / ".env", help="settings file (default: .env)")
    settings, env = read_settings(parser.parse_args(argv).env_file)
    if "log_format" not in settings.model_fields_set:
        env["STREAMQ_LOG_FORMAT"] = "text"
    url = settings.redis_url
    parts = urlsplit(url)
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    redis_proc = None
    # one plain redis-server (not a cluster's or sentinels' list of hosts) that does not answer: a private one
    plain = parts.scheme in ("redis", "rediss") and "," not in parts.netloc
    if plain and not redis_answers(parts.port or 6379, parts.hostname or "127.0.0.1"):
        redis_proc, url = start_private_redis()
        print(f"streamq: nothing answered at {redact(settings.redis_url)}; started a private Redis at {url}")
    env["STREAMQ_REDIS_URL"] = url
    sink = dev_defaults(env, settings)
    for i, (name, module, extra) in enumerate(SERVICES):
        if not (ROOT / module.replace(".", "/") / "__main__.py").exists():
            continue
        if module == "deploy.smtp_sink" and not sink:
            continue
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env={**env, **extra},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            # the sink has nothing to finish: the terminal's Ctrl-C is kept from it (it could land while
            # Python itself starts, before any handler), and the SIGTERM below stops it
            start_new_session=module == "deploy.smtp_sink",
        )  # fmt: skip
        children.append((name, proc))
        threading.Thread(target=pump, args=(name, COLOURS[i % len(COLOURS)], proc.stdout), daemon=True).start()
    api = f"http://{settings.api_host}:{settings.api_port}"
    print(f"streamq: api on {api} (OpenAPI at {api}/docs); Ctrl-C stops everything")
    if any(name == "dashboard" for name, _ in children):
        print(f"streamq: dashboard on http://{settings.dashboard_host}:{settings.dashboard_port}")

    stopping = threading.Event()

    def stop(*_: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    while not stopping.is_set() and all(p.poll() is None for _, p in children):
        stopping.wait(0.5)
    for name, proc in children:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        else:
            print(f"streamq: {name} exited with code {proc.returncode}; stopping the stack")
    grace = settings.shutdown_grace_s + 5
    for _name, proc in children:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
    if redis_proc is not None:
        redis_proc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

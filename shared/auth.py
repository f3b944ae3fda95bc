"""API keys and scopes.

``STREAMQ_API_KEYS`` holds entries ``name:scope[,scope]:sha256-hex-of-secret`` separated by spaces or
``;``. Secrets are never stored or logged in clear: only their SHA-256 is configured, and a presented
token is hashed and compared in constant time against every key.

``python -m streamq.shared.keys new NAME --scopes submit,read`` prints a new secret and the line to configure.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum

SECRET_PREFIX = "sq_"
_ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]{1,64}):(?P<scopes>[a-z,]+):(?P<digest>[0-9a-f]{64})$")


class Scope(StrEnum):
    SUBMIT = "submit"  # create tasks
    READ = "read"  # list, inspect, stats, workers, metrics, docs
    ADMIN = "admin"  # retry, cancel, delete, reschedule, schedules, redeliver


@dataclass(frozen=True, slots=True)
class ApiKey:
    name: str
    scopes: frozenset[Scope]
    digest: bytes  # sha256 of the secret


def parse_keys(value: str) -> list[ApiKey]:
    """Parse ``STREAMQ_API_KEYS``; raises ValueError naming the bad entry (never echoing a secret)."""
    keys = []
    for number, entry in enumerate(re.split(r"[\s;]+", value.strip()), start=1):
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(
                f"entry {number} is not name:scope[,scope]:sha256-hex (64 lowercase hex digits of the secret's SHA-256)"
            )
        try:
            scopes = frozenset(Scope(s) for s in match["scopes"].split(","))
        except ValueError:
            raise ValueError(f"entry {number} ({match['name']}): scopes must be among submit, read, admin") from None
        keys.append(ApiKey(match["name"], scopes, bytes.fromhex(match["digest"])))
    names = [k.name for k in keys]
    if len(set(names)) != len(names):
        raise ValueError("key names must be unique")
    return keys


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def verify(keys: list[ApiKey], token: str) -> ApiKey | None:
    """The key whose secret is ``token``; every key is compared (constant time per key)."""
    presented = digest(token)
    found = None
    for key in keys:
        if hmac.compare_digest(presented, key.digest):
            found = key
    return found


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def config_line(name: str, scopes: list[str], secret: str) -> str:
    return f"{name}:{','.join(scopes)}:{digest(secret).hex()}"


def cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m streamq.shared.keys", description="Create streamq API keys.")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="print a new random secret and its STREAMQ_API_KEYS entry")
    new.add_argument("name")
    new.add_argument("--scopes", default="submit,read", help="comma-separated: submit, read, admin")
    args = parser.parse_args(argv)
    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    secret = new_secret()
    line = config_line(args.name, scopes, secret)
    parse_keys(line)  # validates name and scopes
    print(f"secret (give it to the client; it is not stored anywhere): {secret}")
    print(f"add to STREAMQ_API_KEYS: {line}")
    return 0

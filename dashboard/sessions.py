"""Dashboard login sessions, kept in Redis with a TTL.

The browser holds only a random session id (cookie). Redis holds, under the SHA-256 of that id, the
key's name and scopes, the session's CSRF token, and the key's secret sealed with a keystream derived
from the session id: a copy of Redis alone gives neither a usable cookie nor the API key in clear.
The secret is needed to call the api on the user's behalf (``Authorization: Bearer``).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from redis.asyncio import Redis

from streamq.shared.auth import ApiKey, Scope
from streamq.shared.keys import KeySchema


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    scopes: frozenset[Scope]
    csrf: str
    secret: str  # the API key, to forward to the api


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _keystream(session_id: str, size: int) -> bytes:
    return hashlib.shake_256(b"streamq-dashboard-seal:" + session_id.encode()).digest(size)


def seal(session_id: str, secret: str) -> str:
    data = secret.encode()
    return bytes(a ^ b for a, b in zip(data, _keystream(session_id, len(data)), strict=True)).hex()


def unseal(session_id: str, sealed: str) -> str:
    data = bytes.fromhex(sealed)
    return bytes(a ^ b for a, b in zip(data, _keystream(session_id, len(data)), strict=True)).decode()


class SessionStore:
    def __init__(self, redis: Redis, keys: KeySchema, ttl_s: int) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s

    async def create(self, key: ApiKey, secret: str) -> tuple[str, Session]:
        """A new session for ``key`` (one pipeline: the hash and its TTL together)."""
        session_id = secrets.token_urlsafe(32)
        session = Session(key.name, key.scopes, secrets.token_urlsafe(32), secret)
        name = self.keys.dashboard_session(_hash(session_id))
        fields = {
            "name": key.name,
            "scopes": ",".join(sorted(s.value for s in key.scopes)),
            "csrf": session.csrf,
            "sealed": seal(session_id, secret),
        }
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(name, mapping=fields)
        pipe.expire(name, self.ttl_s)
        await pipe.execute()
        return session_id, session

    async def get(self, session_id: str) -> Session | None:
        if not session_id or len(session_id) > 128:
            return None
        fields = await self.redis.hgetall(self.keys.dashboard_session(_hash(session_id)))
        if not fields or "sealed" not in fields:
            return None
        scopes = frozenset(Scope(s) for s in fields["scopes"].split(",") if s)
        return Session(fields["name"], scopes, fields["csrf"], unseal(session_id, fields["sealed"]))

    async def delete(self, session_id: str) -> None:
        await self.redis.delete(self.keys.dashboard_session(_hash(session_id)))

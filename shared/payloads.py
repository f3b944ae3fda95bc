"""Payloads of the built-in ``email`` and ``http`` task types, validated at submission (422 naming
the field and the rule, nothing written) and parsed again by their handlers in the worker.

Also the submission-time SSRF check of ``webhook`` URLs and ``http`` task URLs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from streamq.shared.models import TaskCreate
from streamq.shared.redaction import MASK, SECRET_HEADERS, redact_payload
from streamq.shared.ssrf import BlockedUrl, SsrfGuard

SEED_SUBJECT = "Hello from streamq"
SEED_TEXT = "This message was sent by a streamq email task."
MAX_RECIPIENTS = 100
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS = re.compile(rf"^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,64}}@{_LABEL}(?:\.{_LABEL})+$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,76}$")
_HTTP_VALUE = re.compile(r"[\x20-\x7e\t]*")
RESERVED_HEADERS = frozenset({"from", "to", "cc", "bcc", "subject", "reply-to", "content-type", "mime-version"})


# exactly the characters str.splitlines breaks at, which the email package folds headers on (a
# subject with U+2028 or U+0085 passes a "\r\n" check, then fails in the worker)
_LINE_BREAKS = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_CONTROL = re.compile("[\x00-\x08\x0e-\x1f\x7f]")  # the other C0 controls and DEL (tab is allowed)
# one mailbox: a bare address, or a display name then the address in angle brackets; the name is plain
# words or one quoted string, never with "@" (a name that looks like an address misleads the reader)
_PHRASE = r"[^\"\\<>@,;:()\[\]\s](?:[^\"\\<>@,;:()\[\]]*[^\"\\<>@,;:()\[\]\s])?"
_QUOTED = r'"[^"\\<>@]*"'
_MAILBOX = re.compile(rf"^(?:(?:(?:{_PHRASE}|{_QUOTED}) *)?<(?P<angled>[^<>]*)>|(?P<bare>[^<>\s]*))$")


def _no_line_breaks(value: str) -> str:
    if _LINE_BREAKS.search(value):
        raise ValueError("must not contain line breaks (CR, LF, VT, FF, U+001C-U+001E, U+0085, U+2028, U+2029)")
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def address_of(value: str) -> str:
    """The address of one mailbox (``ann@example.com`` or ``Ann <ann@example.com>``); raises ValueError
    for anything else: several addresses, a comma or semicolon list, a comment, an ``@`` in the name."""
    if _LINE_BREAKS.search(value) or _CONTROL.search(value):
        raise ValueError(f"{value!r} is not a valid email address (line breaks and control characters are not allowed)")
    mailbox = _MAILBOX.match(value)
    address = (mailbox.group("angled") or mailbox.group("bare") or "") if mailbox else ""
    local = address.rsplit("@", 1)[0]
    if not _ADDRESS.match(address) or ".." in local or local.startswith(".") or local.endswith("."):
        raise ValueError(
            f"{value!r} is not a valid email address (exactly one per list item: "
            "'ann@example.com' or 'Ann <ann@example.com>')"
        )
    return address


def check_address(value: str) -> str:
    """One address, optionally with a display name (``Ann <ann@example.com>``)."""
    address_of(value)
    return value


Address = Annotated[str, Field(max_length=320), AfterValidator(check_address)]
Addresses = Annotated[list[Address], Field(max_length=MAX_RECIPIENTS)]


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


OneOrMoreAddresses = Annotated[Addresses, BeforeValidator(_one_or_many)]


HeaderValue = Annotated[str, Field(max_length=998), AfterValidator(_no_line_breaks)]


class EmailPayload(BaseModel):
    """The ``email`` task's payload in full (the seed's plain address string is also accepted)."""

    model_config = ConfigDict(extra="forbid")

    to: OneOrMoreAddresses  # one address or a list
    cc: Addresses = Field(default_factory=list)
    bcc: Addresses = Field(default_factory=list)
    subject: HeaderValue = ""
    text: str | None = None
    html: str | None = None
    reply_to: Address | None = None
    headers: dict[str, HeaderValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> EmailPayload:
        if not self.recipients():
            raise ValueError("needs at least one recipient in to")
        for name in self.headers:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"header name {name!r} must be letters, digits and '-'")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header {name!r} is set from its own field; use that field")
        return self

    def to_list(self) -> list[str]:
        return list(self.to)

    def recipients(self) -> list[str]:
        return [address_of(a) for a in [*self.to_list(), *self.cc, *self.bcc]]


def parse_email(payload: Any) -> EmailPayload:
    """The seed's shape (a plain address) becomes a short message to it."""
    if isinstance(payload, str):
        return EmailPayload(to=[payload], subject=SEED_SUBJECT, text=SEED_TEXT)
    return EmailPayload.model_validate(payload)


def _http_header_value(value: str) -> str:
    if not _HTTP_VALUE.fullmatch(value):
        raise ValueError("must be printable ASCII, spaces and tabs (no line breaks or other characters HTTP refuses)")
    return value


# an RFC 9110 token; values as httpx sends them (ASCII only: it cannot encode anything else)
HttpHeaderName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
HttpHeaderValue = Annotated[str, Field(max_length=8192), AfterValidator(_http_header_value)]
HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
StatusCode = Annotated[int, Field(ge=100, le=599)]
MAX_SECRET_HEADERS = 32
MAX_SECRET_VALUE = 8192
# a secret header's value: as the HTTP client sends it (visible ASCII, inner spaces and tabs), so the
# request can fail on nothing whose error would quote the value
SecretHeaderValue = Annotated[
    str, Field(min_length=1, max_length=MAX_SECRET_VALUE, pattern=r"^[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?$")
]


class HttpPayload(BaseModel):
    """The ``http`` task's payload."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: HttpMethod = "GET"
    url: str = Field(max_length=2048)
    headers: dict[HttpHeaderName, HttpHeaderValue] = Field(default_factory=dict)
    # sent like headers, never shown: reads, responses and webhooks mask the values (shared/redaction.py)
    secret_headers: dict[HttpHeaderName, SecretHeaderValue] = Field(default_factory=dict, max_length=MAX_SECRET_HEADERS)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    timeout_s: float = Field(default=30.0, gt=0, le=300)
    expect_status: StatusCode | list[StatusCode] | None = None

    @model_validator(mode="after")
    def _check(self) -> HttpPayload:
        if self.body is not None and self.json_body is not None:
            raise ValueError("give json or body, not both")
        both = {n.lower() for n in self.headers} & {n.lower() for n in self.secret_headers}
        if both:
            raise ValueError(f"header {min(both)!r} is in both headers and secret_headers; give it once")
        return self

    def request_headers(self) -> dict[str, str]:
        return {**self.headers, **self.secret_headers}

    def expected(self, status: int) -> bool:
        if self.expect_status is None:
            return 200 <= status < 300
        allowed = [self.expect_status] if isinstance(self.expect_status, int) else self.expect_status
        return status in allowed


def _payload_errors(base: list[Any], error: ValidationError) -> list[dict[str, Any]]:
    return [
        {"loc": [*base, "payload", *item["loc"]], "msg": item["msg"], "type": item["type"], "input": _shown_input(item)}
        for item in error.errors(include_url=False)
    ]


def _shown_input(item: Any) -> Any:
    """The refused input as a 422 echoes it, with secret header values masked (also inside a whole payload,
    the input of an error about the payload as a whole)."""
    return MASK if SECRET_HEADERS in item["loc"] else redact_payload("http", item.get("input"))


async def _url_error(
    guard: SsrfGuard, url: str, loc: list[Any], seen: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The guard's verdict on a URL as a 422 error; ``seen`` remembers verdicts within one request,
    so a batch of 1,000 tasks with one webhook URL resolves it once."""
    if seen is None or url not in seen:
        try:
            await guard.check_url(url)
            reason = ""
        except BlockedUrl as error:
            reason = str(error)
        if seen is not None:
            seen[url] = reason
    else:
        reason = seen[url]
    if reason:
        return [{"loc": loc, "msg": f"URL refused: {reason}", "type": "blocked_url", "input": url}]
    return []


async def check_task(
    task: TaskCreate, guard: SsrfGuard, base: Sequence[Any] = ("body",), seen: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Errors in the shape FastAPI uses for 422 (``loc``, ``msg``, ``type``); empty when fine. ``base``
    is where the task is in the request: ``("body",)``, ``("body", "tasks", 3)``, ``("body", "task")``."""
    loc = list(base)
    errors: list[dict[str, Any]] = []
    if task.webhook is not None:
        errors += await _url_error(guard, task.webhook, [*loc, "webhook"], seen)
    try:
        if task.type == "email" and isinstance(task.payload, str):
            check_address(task.payload)
        elif task.type == "email":
            EmailPayload.model_validate(task.payload)
        elif task.type == "http":
            if not isinstance(task.payload, dict):
                raise ValueError("the http task's payload must be an object with at least a url")
            http = HttpPayload.model_validate(task.payload)
            errors += await _url_error(guard, http.url, [*loc, "payload", "url"], seen)
    except ValidationError as error:
        errors += _payload_errors(loc, error)
    except ValueError as error:
        errors.append({"loc": [*loc, "payload"], "msg": str(error), "type": "value_error"})
    return errors


def needs_check(task: TaskCreate) -> bool:
    """Whether :func:`check_task` has anything to check: a webhook URL, or an email or http payload."""
    return task.webhook is not None or task.type in ("email", "http")


async def check_tasks(tasks: Sequence[TaskCreate], guard: SsrfGuard, *, batch: bool) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    seen: dict[str, str] = {}
    for i, task in enumerate(tasks):
        if needs_check(task):
            errors += await check_task(task, guard, ("body", "tasks", i) if batch else ("body",), seen)
    return errors

"""Requests per API key, counted in moving windows by the `limits` library.

One count shared by every API process when the broker is Redis (the same server keeps the
windows), and a count per process on the embedded default (one process there anyway). Over a
limit a request is 429 with ``Retry-After``; every authenticated answer says where the key stands
in the IETF draft's fields (draft-ietf-httpapi-ratelimit-headers, structured-field syntax):

    RateLimit-Policy: "per_second";q=20;w=1, "per_minute";q=600;w=60
    RateLimit: "per_second";r=19;t=1, "per_minute";r=598;t=57

(``q`` quota, ``w`` window in seconds, ``r`` requests left, ``t`` seconds until one more is
free.) When Redis cannot be reached, requests go through uncounted, with a warning in the log:
an outage of the limiter must not become an outage of the API.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisStorage, Storage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from taas.app.core.config import Settings

logger = logging.getLogger(__name__)

OFF = frozenset({"", "off", "none", "false", "0"})
# A Redis that does not answer costs each request at most this long, then none for a while.
REDIS_TIMEOUT_SECONDS = 0.5
RETRY_REDIS_AFTER_SECONDS = 5.0
STATE_KEY = "rate_limit_headers"  # where a request's headers wait for the response (scope state)


def parse_rate_limit(value: str) -> list[RateLimitItem]:
    """``20/second;600/minute`` as limits, or none for ``off``. ValueError names the setting."""
    if value.strip().lower() in OFF:
        return []
    try:
        return parse_many(value)
    except ValueError:
        raise ValueError(
            f"TAAS_RATE_LIMIT {value!r} is not a rate limit: write it as "
            "'20/second;600/minute' (COUNT/[N ]second|minute|hour|day, separated by ';'), "
            "or 'off'"
        ) from None


@dataclass(frozen=True)
class WindowState:
    """Where one key stands in one policy."""

    name: str
    quota: int
    window_seconds: int
    remaining: int
    reset_seconds: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    windows: list[WindowState]

    @property
    def retry_after(self) -> int:
        """Seconds until the exhausted policy frees a request (at least 1)."""
        return max([1] + [w.reset_seconds for w in self.windows if w.remaining <= 0])

    def exhausted(self) -> str:
        """The policies this key has used up, in words: ``20 requests per 1 s``."""
        used_up = [w for w in self.windows if w.remaining <= 0]
        return ", ".join(f"{w.quota} requests per {w.window_seconds} s" for w in used_up)

    def headers(self) -> dict[str, str]:
        policy = ", ".join(f'"{w.name}";q={w.quota};w={w.window_seconds}' for w in self.windows)
        state = ", ".join(f'"{w.name}";r={w.remaining};t={w.reset_seconds}' for w in self.windows)
        return {"RateLimit-Policy": policy, "RateLimit": state}


def policy_name(item: RateLimitItem) -> str:
    unit = item.GRANULARITY.name
    return f"per_{unit}" if item.multiples == 1 else f"per_{item.multiples}_{unit}s"


class KeyRateLimiter:
    """Counts each API key's requests against every policy; fails open when storage is down."""

    def __init__(self, policies: list[RateLimitItem], storage: Storage, where: str) -> None:
        self.policies = policies
        self.limiter = MovingWindowRateLimiter(storage)
        self.where = where  # for the log: "Redis at host:port" (never a password)
        self.skip_until = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyRateLimiter | None:
        policies = parse_rate_limit(settings.rate_limit)
        if not policies:
            return None
        url = settings.resolved_broker_url
        if not url.startswith(("redis://", "rediss://")):
            return cls(policies, MemoryStorage(), "this process")
        storage = RedisStorage(
            url,
            key_prefix="taas-rate-limit",
            wrap_exceptions=True,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
        )
        parts = urlsplit(url)
        return cls(policies, storage, f"Redis at {parts.hostname}:{parts.port or 6379}")

    def check(self, key_id: str) -> Decision | None:
        """Count one request of the key; None when the count could not be kept (let it in)."""
        if time.monotonic() < self.skip_until:
            return None
        try:
            return self._count(key_id)
        except StorageError as error:
            self.skip_until = time.monotonic() + RETRY_REDIS_AFTER_SECONDS
            logger.warning(
                "rate limits are not enforced: %s failed (%s: %s); requests are let through "
                "uncounted, trying again in %.0f s",
                self.where,
                type(error.storage_error).__name__,
                error.storage_error,
                RETRY_REDIS_AFTER_SECONDS,
            )
            return None

    def _count(self, key_id: str) -> Decision:
        # The first exhausted policy refuses; the policies after it do not count the request.
        allowed = all(self.limiter.hit(item, "api-key", key_id) for item in self.policies)
        now = time.time()
        windows = [self._state(item, key_id, now) for item in self.policies]
        return Decision(allowed, windows)

    def _state(self, item: RateLimitItem, key_id: str, now: float) -> WindowState:
        reset_at, remaining = self.limiter.get_window_stats(item, "api-key", key_id)
        return WindowState(
            name=policy_name(item),
            quota=item.amount,
            window_seconds=item.get_expiry(),
            remaining=max(remaining, 0),
            reset_seconds=max(math.ceil(reset_at - now), 0) if remaining < item.amount else 0,
        )


class RateLimitHeaders:
    """Adds the RateLimit headers that authentication left in the request's state to the
    response, whatever made it (a model, a file, an event stream, an error). Pure ASGI, so a
    streamed body passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # One dict for the request's state, shared by every copy of the scope made inside.
        state = scope.setdefault("state", {})

        async def send_with_headers(message: Message) -> None:
            extra = state.get(STATE_KEY)
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": _merged(message.get("headers", []), extra)}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _merged(headers: list[tuple[bytes, bytes]], extra: dict[str, str]) -> list[tuple[bytes, bytes]]:
    present = {name.lower() for name, _ in headers}
    added = [
        (name.lower().encode(), value.encode())
        for name, value in extra.items()
        if name.lower().encode() not in present
    ]
    return [*headers, *added]

"""What every request passes before the application sees it: the API key, the rate
limit and the body size limit.

This is plain ASGI middleware rather than FastAPI dependencies because FastAPI reads
and parses a multipart body *before* it runs dependencies: an unauthenticated client
could then make the server receive and spool up to the upload limit on every request.
Here the key and the rate are checked from the headers alone, a declared
``Content-Length`` above the limit is refused before the body is read, and a body
without one (chunked) is counted while it arrives and cut off at the limit.
"""

from __future__ import annotations

import hmac
import math
import time
from typing import Callable, Iterable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# After refusing an oversized body we still read (and discard) up to this much of it:
# a client that is still sending when the server closes the connection may get a
# connection reset instead of our 413. Beyond this the connection is simply closed.
DRAIN_BYTES = 64 * 1024 * 1024
# In anonymous mode buckets are per client address, so their number must stay bounded.
MAX_BUCKETS = 10_000
# Refused keys a client address may present per minute before it is made to wait: a
# guesser gets 10 tries a minute, not 500 in 2 s.
AUTH_FAILURES_PER_MINUTE = 10

KEY_HELP = "send it in the X-API-Key header (or Authorization: Bearer <key>)"


class TokenBuckets:
    """Per-client token buckets: ``per_minute`` tokens, refilled continuously, so a
    client may burst up to a minute's worth and then goes at the steady rate."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)

    def _tokens(self, client: str, now: float) -> float:
        """The client's tokens at ``now``, refilled since it last took one."""
        tokens, then = self._buckets.get(client, (self.capacity, now))
        return min(self.capacity, tokens + (now - then) * self.rate)

    def take(self, client: str) -> float:
        """Take a token: 0.0 when granted, else the seconds until one is available."""
        now = self.clock()
        tokens = self._tokens(client, now)
        granted = tokens >= 1.0
        self._buckets[client] = (tokens - 1.0 if granted else tokens, now)
        if len(self._buckets) > MAX_BUCKETS:
            self._forget_full(now)
        return 0.0 if granted else (1.0 - tokens) / self.rate

    def waiting(self, client: str) -> float:
        """Seconds until ``client`` has a token again (0.0: it has one), taking none."""
        tokens = self._tokens(client, self.clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        for client, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.capacity:
                del self._buckets[client]


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive``: FastAPI lets an HTTPException raised while it
    parses the body through (any other error there would become a generic 400)."""

    def __init__(self, detail: str):
        super().__init__(status_code=413, detail=detail)


def presented_key(headers: Headers) -> tuple[str | None, str]:
    """The key a request carries and the header it came in."""
    key = headers.get("x-api-key")
    if key:
        return key, "X-API-Key header"
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip(), "Authorization header"
    return None, ""


def key_accepted(key: str, accepted: Iterable[str]) -> bool:
    """Compare with every accepted key in constant time, so timing reveals nothing."""
    given = key.encode("latin-1", "replace")  # header values arrive as latin-1
    found = False
    for candidate in accepted:
        found |= hmac.compare_digest(given, candidate.encode("ascii"))
    return found


def describe_bytes(n: int) -> str:
    return f"{n:,} bytes ({n / (1024 * 1024):.1f} MiB)"


class RequestGate:
    """ASGI middleware: authenticate and rate-limit protected paths, limit every body."""

    def __init__(self, app: ASGIApp, *, api_keys: tuple[str, ...], allow_anonymous: bool, rate_limit: int,
                 max_body_bytes: int, is_protected: Callable[[str], bool]):
        self.app = app
        self.api_keys = api_keys
        self.allow_anonymous = allow_anonymous
        self.rate_limit = rate_limit
        self.buckets = TokenBuckets(rate_limit) if rate_limit else None
        self.failures = TokenBuckets(AUTH_FAILURES_PER_MINUTE)  # refused keys, per client address
        self.max_body_bytes = max_body_bytes
        self.is_protected = is_protected

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refusal = self._admit(scope, headers) if self.is_protected(scope["path"]) else None
        if refusal is None:
            refusal = await self._check_declared_size(headers, receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, self._limited(receive), send)

    # --- who may ask, and how often ---------------------------------------------------

    def _admit(self, scope: Scope, headers: Headers) -> JSONResponse | None:
        key, where = presented_key(headers)
        if key is None and not self.allow_anonymous:
            return _unauthorized(f"missing API key: {KEY_HELP}")
        if key is not None and self.api_keys:
            # Each refused key spends a token of the address's failure bucket; while it is
            # empty the address waits (429) whatever key it sends, the right one too, so
            # keys cannot be guessed faster than the bucket refills.
            address = _client_address(scope)
            wait = self.failures.waiting(address)
            if wait:
                seconds = max(1, math.ceil(wait))
                return JSONResponse(
                    {"detail": f"too many refused API keys from this client address (at most "
                               f"{AUTH_FAILURES_PER_MINUTE} a minute); retry in {seconds} s"},
                    status_code=429, headers={"Retry-After": str(seconds)})
            if not key_accepted(key, self.api_keys):
                self.failures.take(address)
                return _unauthorized(f"API key in the {where} is not accepted")
        if self.buckets is None:
            return None
        client = f"key:{key}" if key is not None and self.api_keys else f"address:{_client_address(scope)}"
        wait = self.buckets.take(client)
        if not wait:
            return None
        seconds = max(1, math.ceil(wait))
        who = "this API key" if client.startswith("key:") else "this client address"
        return JSONResponse(
            {"detail": f"rate limit of {self.rate_limit} requests per minute for {who} exceeded; "
                       f"retry in {seconds} s"},
            status_code=429, headers={"Retry-After": str(seconds)},
        )

    # --- how much it may send ---------------------------------------------------------

    async def _check_declared_size(self, headers: Headers, receive: Receive) -> JSONResponse | None:
        declared = headers.get("content-length")
        if declared is None:
            return None
        try:
            size = int(declared)
        except ValueError:
            return JSONResponse({"detail": f"invalid Content-Length header {declared!r}"}, status_code=400)
        if size <= self.max_body_bytes:
            return None
        # A client that waits for "100 Continue" has not sent the body: reading would invite it.
        if "100-continue" not in headers.get("expect", "").lower():
            await _drain(receive, DRAIN_BYTES)
        return JSONResponse(
            {"detail": f"request body of {describe_bytes(size)} (Content-Length) exceeds the upload limit of "
                       f"{describe_bytes(self.max_body_bytes)}"},
            status_code=413,
        )

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that counts body bytes and refuses the body once past the limit
        (a chunked body declares no length up front)."""
        received = 0

        async def receive_within_limit() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    if message.get("more_body"):
                        await _drain(receive, DRAIN_BYTES)
                    limit = describe_bytes(self.max_body_bytes)
                    raise BodyTooLarge(f"request body exceeds the upload limit of {limit} (counted while receiving)")
            return message

        return receive_within_limit


async def _drain(receive: Receive, budget: int) -> None:
    """Read and discard the rest of a request body, at most ``budget`` bytes."""
    seen = 0
    while seen <= budget:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body"):
            return


def _unauthorized(detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


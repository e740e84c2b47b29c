"""The server's HTTP/1.1 connections with a deadline for each request's head.

uvicorn closes a kept-alive connection idle after a response, but not one that never
sends a complete request head: 3,000 connections that sent nothing, or half a header,
were all still open after 25 s, each holding a socket and a slot of the connection
limit. Here a connection whose request head is not complete within ``HEAD_SECONDS`` of
its opening (or of the previous response) is closed.
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_SECONDS = 10.0


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late."""

    head_seconds = HEAD_SECONDS
    _head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_late)

    def _head_late(self) -> None:
        # IDLE: no complete request head since the connection opened or the last response.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


def with_head_deadline(seconds: float) -> type[HeadDeadlineProtocol]:
    """The protocol class with a deadline of ``seconds`` (uvicorn takes a class)."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,), {"head_seconds": float(seconds)})

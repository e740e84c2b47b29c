"""The server's HTTP/1.1 connections with deadlines for each request's head and body.

uvicorn closes a kept-alive connection idle after a response, but not one that never
sends a complete request head: 3,000 connections that sent nothing, or half a header,
were all still open after 25 s, each holding a socket and a slot of the connection
limit. Here a connection whose request head is not complete within ``HEAD_SECONDS`` of
its opening (or of the previous response) is closed. Nor does uvicorn time a request
body: a client that announced a body and then stopped sending held its connection
forever. Here a body that goes ``BODY_SECONDS`` without a new byte closes it (as
nginx's ``client_body_timeout``: between two reads, not for the whole body, so a large
upload over a slow link still gets through).
"""

from __future__ import annotations

import asyncio

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEAD_SECONDS = 10.0
BODY_SECONDS = 30.0


class HeadDeadlineProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection whose request head is late or whose
    request body stalls."""

    head_seconds = HEAD_SECONDS
    body_seconds = BODY_SECONDS
    _head_deadline: asyncio.TimerHandle | None = None
    _body_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._arm_body_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        for deadline in (self._head_deadline, self._body_deadline):
            if deadline is not None:
                deadline.cancel()
        super().connection_lost(exc)

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
        self._head_deadline = self.loop.call_later(self.head_seconds, self._head_late)

    def _head_late(self) -> None:
        # IDLE: no complete request head since the connection opened or the last response.
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()

    def _arm_body_deadline(self) -> None:
        if self._body_deadline is not None:
            self._body_deadline.cancel()
            self._body_deadline = None
        if self.conn.their_state is h11.SEND_BODY:  # a head is in, its body is not
            self._body_deadline = self.loop.call_later(self.body_seconds, self._body_late)

    def _body_late(self) -> None:
        # Reading paused by the server itself (the app not taking the body yet) is not
        # the client's stall.
        if self.flow.read_paused:
            self._body_deadline = self.loop.call_later(self.body_seconds, self._body_late)
        elif self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
            self.transport.close()


def with_deadlines(head_seconds: float, body_seconds: float = BODY_SECONDS) -> type[HeadDeadlineProtocol]:
    """The protocol class with these deadlines (uvicorn takes a class)."""
    return type("HeadDeadlineProtocol", (HeadDeadlineProtocol,),
                {"head_seconds": float(head_seconds), "body_seconds": float(body_seconds)})

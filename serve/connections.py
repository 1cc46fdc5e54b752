"""Connection limits uvicorn lacks: a deadline for request headers and a cap on open
connections, as a subclass of uvicorn's httptools protocol (`uvicorn.run(http=...)`).

uvicorn closes a kept-alive connection that stays idle (`timeout_keep_alive`), but a
client that opens a socket and then sends nothing, or trickles its headers a byte at a
time (slowloris), holds the socket forever; thousands of them exhaust file descriptors
and new clients are refused. Here every request's headers must arrive within
`header_timeout` of the connection opening (or of the request starting, on a kept-alive
connection), and connections past `max_connections` are closed at once, so the clients
already connected keep being served. Bodies have their own deadline (serve/limits.py).

The deadline costs a request that arrives whole in one read nothing: a timer is armed
only while a connection waits for more of a request's headers (checked after each read),
not once per request. And the protocol marks a request whose body arrived with its
headers (`BODY_ARRIVED` in its ASGI scope), so the app reads it without arming the
body's deadline either. `IN_FLIGHT` lets the app see that a request is the only one the
server holds (serve/batching.py runs a lone request at once, with no batch to form).
"""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("serve")
BODY_ARRIVED = "tandem.body_arrived"  # scope key: the whole body is already here
IN_FLIGHT = "tandem.in_flight"  # scope key: the server's request tasks (this one included)


class GuardedProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    max_connections: int = 512

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.header_timer: asyncio.TimerHandle | None = None
        self.in_headers = False
        if len(self.connections) > self.max_connections:
            log.warning("%d connections open: refusing one more", len(self.connections) - 1)
            transport.close()
            return
        self._arm()

    def _arm(self) -> None:
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _expire(self) -> None:
        self.header_timer = None
        if not self.transport.is_closing():
            log.info(
                "closing a connection whose request headers took over %g s", self.header_timeout
            )
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # parses: the callbacks below run within it
        if self.in_headers:  # a request's headers are still coming: they get a deadline
            self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_headers = True  # from here a kept-alive connection's next request is timed

    def on_headers_complete(self) -> None:
        self.in_headers = False
        self._disarm()
        self.scope[IN_FLIGHT] = self.tasks  # uvicorn's set, across connections
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.scope[BODY_ARRIVED] = True

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)


def guarded(header_timeout: float, max_connections: int) -> type[GuardedProtocol]:
    """The protocol class with these limits (uvicorn builds one instance per connection)."""
    return type(
        "Guarded",
        (GuardedProtocol,),
        {"header_timeout": header_timeout, "max_connections": max_connections},
    )

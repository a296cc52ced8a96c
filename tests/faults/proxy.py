"""A TCP proxy on loopback that can leave connections half-open.

    async with HalfOpenProxy("127.0.0.1", pg_port) as proxy:
        dsn = proxy.dsn(db_dsn)                    # same database, through the proxy
        frozen = proxy.freeze(b"gpu-reactor-listener")

``freeze(marker)`` stops forwarding, in both directions, on every open connection whose
start-up bytes (PostgreSQL's StartupMessage carries ``application_name`` in clear) contain
``marker``, and keeps both sockets open: what a NAT that dropped its mapping, or a peer
that vanished without a FIN, leaves behind. Neither end gets an error or EOF; bytes simply
stop arriving. New connections are forwarded as usual, so the client can reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit, urlunsplit

STARTUP_BYTES = 4096  # enough for an SSLRequest followed by the StartupMessage
CHUNK = 65536


@dataclass
class Link:
    """One client connection and its upstream connection."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    startup: bytearray = field(default_factory=bytearray)
    frozen: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    forwarded: int = 0  # bytes, both directions

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for writer in (self.client, self.upstream):
            with contextlib.suppress(Exception):
                writer.transport.abort()


class HalfOpenProxy:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.links: list[Link] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    def dsn(self, dsn: str) -> str:
        """``dsn`` with its host and port replaced by this proxy's."""
        parts = urlsplit(dsn)
        credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{credentials}127.0.0.1:{self.port}"))

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in self.links:
            link.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def freeze(self, marker: bytes, *, server_gives_up_after: float | None = None) -> list[Link]:
        """Stop forwarding on the open connections whose start-up contains ``marker``.

        With ``server_gives_up_after``, the server's side of each frozen connection is
        closed that many seconds later, as the server's TCP keepalive would once its probes
        go unanswered (the proxy's own kernel would answer them forever); the client's side
        stays half-open."""
        hit = [
            link for link in self.links if marker in link.startup and not link.client.is_closing()
        ]
        for link in hit:
            link.frozen.set()
            if server_gives_up_after is not None:
                asyncio.get_running_loop().call_later(
                    server_gives_up_after, link.upstream.transport.abort
                )
        return hit

    def matching(self, marker: bytes) -> list[Link]:
        return [link for link in self.links if marker in link.startup]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.transport.abort()
            return
        link = Link(client=writer, upstream=up_writer)
        self.links.append(link)
        link.tasks = [
            asyncio.create_task(self._pump(link, reader, up_writer, True)),
            asyncio.create_task(self._pump(link, up_reader, writer, False)),
        ]

    async def _pump(
        self,
        link: Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        from_client: bool,
    ) -> None:
        try:
            while True:
                data = await reader.read(CHUNK)
                if link.frozen.is_set():
                    await asyncio.Event().wait()  # hold everything, close nothing, for good
                if not data:
                    break
                if from_client and len(link.startup) < STARTUP_BYTES:
                    link.startup += data[: STARTUP_BYTES - len(link.startup)]
                writer.write(data)
                link.forwarded += len(data)
                await writer.drain()
        except (OSError, ConnectionError):
            pass
        finally:
            if not link.frozen.is_set():
                with contextlib.suppress(Exception):
                    writer.close()

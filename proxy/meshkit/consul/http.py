# SPDX-License-Identifier: MPL-2.0
"""HTTP/1.1 to the local Consul agent: a keep-alive connection pool and the wire format.

Only what a client of one agent needs: a request line and a few headers out; a status line,
headers and a body framed by Content-Length, chunked encoding or the end of the connection in.
Everything read is bounded (MAX_HEAD_BYTES for the status line and headers, MAX_BODY_BYTES for
the body), so a confused or hostile peer costs an error, never unbounded memory.

Written here rather than taken from a library: aiohttp (which this replaces) cost each
Consul-mode proxy about 8 MiB of private memory for 120-odd modules it never used (cookie jar,
multipart, websockets); h11, the sans-IO parser, costs 0.5 MiB and 13 modules and would still
need this file's pool, framing limits and asyncio plumbing around it. The part it would own, a
response parser for one well-behaved server, is the ~100 lines of `_parse_head` and the
`_read_*` methods below.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
_READ_CHUNK = 64 * 1024
_MAX_INTERIM = 8  # 1xx answers skipped before the real one


class HTTPFailure(Exception):
    """The agent could not be reached, went away, or answered something that is not HTTP/1.1."""


class TooLarge(Exception):
    """The answer is larger than a bound; the message names the part and the limit."""


class _NothingReceived(HTTPFailure):
    """The connection failed before a byte of the answer came back (safe to send again)."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the agent listens: `address` (host[:port], IPv6 literals in brackets) or a unix
    socket, and the TLS context with the name its certificate must carry."""

    address: str
    default_port: int
    unix_path: str | None = None
    ssl: ssl.SSLContext | None = None
    server_name: str | None = None  # SNI and the name checked; the host when None


@dataclass(frozen=True, slots=True)
class Answer:
    """One response: the status, its headers (names lower-cased) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def split_host_port(address: str, default_port: int) -> tuple[str, int]:
    """`host`, `host:port`, `[v6]`, `[v6]:port` (a bare IPv6 literal is taken as a host)."""
    if address.startswith("["):
        end = address.find("]")
        if end < 0 or (address[end + 1 :] and not address[end + 1 :].startswith(":")):
            raise HTTPFailure(f"bad address {address!r}: an IPv6 literal is written [addr]:port")
        host, port_text = address[1:end], address[end + 2 :]
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    else:
        host, port_text = address, ""
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise HTTPFailure(f"bad address {address!r}: port {port_text!r} is not 1-65535")
    return host, int(port_text)


class _Connection:
    """One stream to the agent; `exchange` sends a request and reads its whole answer."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def usable(self) -> bool:
        """Still open and quiet while idle (the server has not closed or written to it)."""
        return not (
            self.writer.is_closing() or self.reader.at_eof() or self.reader.exception() is not None
        )

    def abort(self) -> None:
        self.writer.transport.abort()

    async def wait_closed(self) -> None:
        with contextlib.suppress(OSError):  # ssl.SSLError is one too
            await self.writer.wait_closed()

    async def exchange(self, wire: bytes) -> tuple[Answer, bool]:
        """The answer, and whether this connection may carry another request."""
        try:
            self.writer.write(wire)
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise HTTPFailure(
                    "the connection closed inside the status line or headers"
                ) from None
            raise _NothingReceived("the connection closed before an answer") from None
        except asyncio.LimitOverrunError:
            raise TooLarge(
                f"status line and headers over the limit of {MAX_HEAD_BYTES // 1024} KiB"
            ) from None
        except ConnectionError as exc:
            # A reset or broken pipe while sending or before the head was complete. (A reset
            # after part of the head arrived is counted here too; resending is still safe, see
            # Pool.)
            raise _NothingReceived(f"{type(exc).__name__}: {exc}") from None
        for _ in range(_MAX_INTERIM):
            version, status, headers = _parse_head(head)
            if not 100 <= status < 200:
                break
            head = await self._next_head()
        else:
            raise HTTPFailure(f"more than {_MAX_INTERIM} interim (1xx) answers")
        body, delimited = await self._read_body(status, headers)
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = delimited and version == "HTTP/1.1" and "close" not in tokens
        return Answer(status, headers, body), keep

    async def _next_head(self) -> bytes:
        try:
            return await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise HTTPFailure("the connection closed inside the status line or headers") from None
        except asyncio.LimitOverrunError:
            raise TooLarge(
                f"status line and headers over the limit of {MAX_HEAD_BYTES // 1024} KiB"
            ) from None

    async def _read_body(self, status: int, headers: Mapping[str, str]) -> tuple[bytes, bool]:
        """The body, and whether its end was framed (so the connection can carry another)."""
        if status in (204, 304):
            return b"", True
        coding = headers.get("transfer-encoding")
        if coding is not None:
            if coding.split(",")[-1].strip().lower() == "chunked":
                return await self._read_chunked(), True
            return await self._read_to_eof(), False
        length_text = headers.get("content-length")
        if length_text is None:
            return await self._read_to_eof(), False
        values = {v.strip() for v in length_text.split(",")}
        if len(values) != 1 or not (value := values.pop()).isdigit():
            raise HTTPFailure(f"bad Content-Length {length_text[:40]!r}")
        length = int(value)
        if length > MAX_BODY_BYTES:
            raise TooLarge(_body_limit(f"{length} bytes announced"))
        try:
            return await self.reader.readexactly(length), True
        except asyncio.IncompleteReadError as exc:
            raise HTTPFailure(
                f"the connection closed after {len(exc.partial)} of {length} body bytes"
            ) from None

    async def _read_chunked(self) -> bytes:
        body = bytearray()
        try:
            while True:
                line = await self.reader.readuntil(b"\r\n")
                size_text = line[:-2].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise HTTPFailure(f"bad chunk size {size_text[:20]!r}") from None
                if size < 0 or len(body) + size > MAX_BODY_BYTES:
                    raise TooLarge(_body_limit("chunked"))
                if size == 0:
                    break
                chunk = await self.reader.readexactly(size + 2)
                if chunk[-2:] != b"\r\n":
                    raise HTTPFailure("a chunk does not end with CRLF")
                body += chunk[:-2]
            trailers = 0
            while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
                trailers += len(line)
                if trailers > MAX_HEAD_BYTES:
                    raise TooLarge(f"trailers over the limit of {MAX_HEAD_BYTES // 1024} KiB")
        except asyncio.IncompleteReadError:
            raise HTTPFailure(
                f"the connection closed inside a chunked body (after {len(body)} bytes)"
            ) from None
        except asyncio.LimitOverrunError:
            raise HTTPFailure("a chunk size or trailer line without an end") from None
        return bytes(body)

    async def _read_to_eof(self) -> bytes:
        body = bytearray()
        while chunk := await self.reader.read(_READ_CHUNK):
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise TooLarge(_body_limit("read until the connection closed"))
        return bytes(body)


def _body_limit(what: str) -> str:
    return f"body over the limit of {MAX_BODY_BYTES // (1024 * 1024)} MiB ({what})"


def _parse_head(head: bytes) -> tuple[str, int, dict[str, str]]:
    """Status line and headers; repeated headers are joined with ", " as RFC 9110 allows."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    status_text = rest[:3]
    if not version.startswith("HTTP/1.") or not status_text.isdigit() or rest[3:4] not in ("", " "):
        raise HTTPFailure(f"not an HTTP/1.x status line: {lines[0][:60]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or line[0] in " \t":
            raise HTTPFailure(f"malformed header line {line[:60]!r}")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return version, int(status_text), headers


def encode_request(
    method: str, target: str, headers: list[tuple[str, str]], body: bytes | None
) -> bytes:
    """Request line, headers and body; header values were checked for line breaks before."""
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers)]
    if body is not None or method not in ("GET", "HEAD"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Pool:
    """Keep-alive connections to one endpoint, with no limit on how many are open at once.

    Several blocking queries (roots, leaf, intentions, each upstream's health) each hold a
    connection for minutes, so a request never waits for a free one: it takes an idle connection
    or opens a new one. A connection goes back to the idle list only after a complete answer
    that did not say `Connection: close`; any error, timeout or cancellation closes it.

    A reused idle connection may have been closed by the agent meanwhile (keep-alive timeouts);
    when such a connection fails before a byte of the answer arrived, the request is sent once
    more on a fresh connection, as Go's HTTP client does. That is safe because every call the
    proxy makes is idempotent: GETs, PUTs of a registration or a check status (the same state
    again), deregistration, and POST /v1/agent/connect/authorize, which only reads.
    """

    def __init__(self, endpoint: Endpoint, connect_timeout: float) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._generation = 0  # bumped by close(): requests then in flight never retry

    async def request(self, wire: bytes, timeout: float) -> Answer:
        """Send `wire` (see `encode_request`) and read the answer, all within `timeout`."""
        generation = self._generation
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                conn = self._take_idle()
                if conn is not None:
                    try:
                        return await self._exchange(conn, wire)
                    except _NothingReceived:
                        if generation != self._generation:
                            raise
                return await self._exchange(await self._connect(), wire)
        except TimeoutError:
            if not deadline.expired():
                raise  # the connect timeout, with its own message
            raise TimeoutError(f"no complete answer within {timeout:g} s") from None

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable():
                return conn
            conn.abort()
        return None

    async def _connect(self) -> _Connection:
        ep = self.endpoint
        async with asyncio.timeout(self.connect_timeout):
            try:
                if ep.unix_path is not None:
                    reader, writer = await asyncio.open_unix_connection(
                        ep.unix_path,
                        ssl=ep.ssl,
                        server_hostname=(ep.server_name or "consul") if ep.ssl else None,
                        limit=MAX_HEAD_BYTES,
                    )
                else:
                    host, port = split_host_port(ep.address, ep.default_port)
                    reader, writer = await asyncio.open_connection(
                        host,
                        port,
                        ssl=ep.ssl,
                        server_hostname=(ep.server_name or host) if ep.ssl else None,
                        limit=MAX_HEAD_BYTES,
                    )
            except TimeoutError:
                raise TimeoutError(f"no connection within {self.connect_timeout:g} s") from None
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, wire: bytes) -> Answer:
        generation = self._generation
        self._busy.add(conn)
        try:
            answer, keep = await conn.exchange(wire)
        except BaseException:
            conn.abort()
            raise
        finally:
            self._busy.discard(conn)
        if keep and generation == self._generation:
            self._idle.append(conn)
        else:
            conn.abort()
        return answer

    async def close(self) -> None:
        """Close every connection, idle or carrying a request (which then fails)."""
        self._generation += 1
        conns = [*self._idle, *self._busy]
        self._idle.clear()
        for conn in conns:
            conn.abort()
        if conns:
            waits = [asyncio.ensure_future(c.wait_closed()) for c in conns]
            _, pending = await asyncio.wait(waits, timeout=1)
            for task in pending:
                task.cancel()

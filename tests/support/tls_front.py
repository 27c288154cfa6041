# SPDX-License-Identifier: MPL-2.0
"""A real TLS front for the dev agent (which speaks plain HTTP): terminates TLS, optionally
requires a client certificate, and forwards bytes to the agent. Lets the modules' TLS options
be tested end to end: verification on by default, CA bundle, client certificate."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshkit_tools import pki


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _leaf(issuer: pki.Issued, name: str, server: bool) -> tuple[str, str]:
    key = pki.generate_key()
    now = pki.utcnow() - dt.timedelta(minutes=1)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.cert.subject)
        .public_key(key.public_key())
        .serial_number(pki.new_serial())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if server:  # hostname verification needs the address the client dials
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer.key, hashes.SHA256())
    return pki.cert_pem(cert), pki.key_pem(key)


def make_tls_files(directory: Path) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)
    root = pki.make_root("meshkit-test.consul")
    files = TLSFiles(*(directory / n for n in (
        "ca.pem", "server.pem", "server-key.pem", "client.pem", "client-key.pem")))  # fmt: skip
    pki.write_public(files.ca, root.cert_pem)
    for server, cert_path, key_path in (
        (True, files.server_cert, files.server_key),
        (False, files.client_cert, files.client_key),
    ):
        cert, key = _leaf(root, "server.dc1.consul" if server else "ansible", server)
        pki.write_public(cert_path, cert)
        pki.write_private(key_path, key)
    return files


class TLSFront:
    """``with TLSFront(files, backend_port, require_client_cert=True) as front: front.port``"""

    def __init__(self, files: TLSFiles, backend_port: int, *, require_client_cert: bool) -> None:
        self.files, self.backend_port = files, backend_port
        self.require_client_cert = require_client_cert
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.files.server_cert, self.files.server_key)
        if self.require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(self.files.ca)
        return ctx

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.backend_port)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self._context())
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._loop.run_forever()

    def __enter__(self) -> TLSFront:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TLS front did not start within 10 s")
        return self

    def __exit__(self, *exc: object) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(10)

# SPDX-License-Identifier: MPL-2.0
"""The TLS engines' per-record calls against the record boundaries a socket read can cut.

The legs hand an engine what one read returned: several records at once, part of one, or the
last data together with the close_notify. `seal_read`/`open_read` work on the loop-wide read
buffer in place, `write`/`feed`/`read` on bytes (`MESHKIT_READ_MODE=copy`, the handshake), and
a connection mixes both; every way must give back exactly the plaintext, in order, and report
the end of stream once. Real engines after a real mutual handshake, each pair of engines
(mixed ones too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from meshkit.openssl_engine import openssl_sides
from meshkit.tls import READ_BUFFER, Engine, stdlib_sides
from tests.support.pki_files import ThrowawayCA

SIDES: dict[str, Callable[..., Any]] = {"openssl": openssl_sides, "stdlib": stdlib_sides}
PAIRS = [("openssl", "openssl"), ("stdlib", "stdlib"), ("openssl", "stdlib"), ("stdlib", "openssl")]


def _engines(ca: ThrowawayCA, sender: str, receiver: str) -> tuple[Engine, Engine]:
    """A client engine (`sender`) and a server engine (`receiver`) after their handshake."""
    roots = (ca.root.cert_pem,)
    web, db = ca.leaf("web").issued, ca.leaf("db").issued
    _, client_side = SIDES[sender](web.chain_pem, web.key_pem, roots)
    server_side, _ = SIDES[receiver](db.chain_pem, db.key_pem, roots)
    client, server = client_side.engine(), server_side.engine()
    done = (False, False)
    for _ in range(10):
        done = (client.handshake(), done[1])
        if out := client.take_output():
            server.feed(out)
        done = (done[0], server.handshake())
        if out := server.take_output():
            client.feed(out)
        if all(done):
            break
    assert all(done), "handshake did not complete"
    assert client.read() == (b"", False)  # takes in the server's tickets, if any
    assert server.read() == (b"", False)
    return client, server


def _in_buffer(data: bytes) -> int:
    """Put `data` where a socket read would have put it; its length, as a read reports it."""
    READ_BUFFER[: len(data)] = data
    return len(data)


def _cuts(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


MESSAGES = [bytes([n % 251]) * n for n in (1, 64, 700, 5000)]


@pytest.fixture
def ca(tmp_path: Any) -> ThrowawayCA:
    return ThrowawayCA.create(tmp_path / "pki")


@pytest.mark.parametrize(("sender", "receiver"), PAIRS)
def test_records_coalesced_in_one_read_come_out_whole_and_in_order(
    ca: ThrowawayCA, sender: str, receiver: str
) -> None:
    client, server = _engines(ca, sender, receiver)
    wire = b"".join(client.seal_read(_in_buffer(m)) for m in MESSAGES)
    assert server.open_read(_in_buffer(wire)) == (b"".join(MESSAGES), False)
    for m in MESSAGES:
        client.write(m)
    server.feed(client.take_output())
    assert server.read() == (b"".join(MESSAGES), False)


@pytest.mark.parametrize(("sender", "receiver"), PAIRS)
@pytest.mark.parametrize("cut", [1, 7, 1000])
def test_records_cut_anywhere_come_out_whole_and_in_order(
    ca: ThrowawayCA, sender: str, receiver: str, cut: int
) -> None:
    client, server = _engines(ca, sender, receiver)
    wire = b"".join(client.seal_read(_in_buffer(m)) for m in MESSAGES)
    got = []
    for i, piece in enumerate(_cuts(wire, cut)):
        if i % 2:
            data, eof = server.open_read(_in_buffer(piece))
        else:
            server.feed(piece)
            data, eof = server.read()
        assert not eof
        got.append(data)
    assert b"".join(got) == b"".join(MESSAGES)


@pytest.mark.parametrize(("sender", "receiver"), PAIRS)
def test_last_data_and_close_notify_in_one_read(
    ca: ThrowawayCA, sender: str, receiver: str
) -> None:
    client, server = _engines(ca, sender, receiver)
    wire = client.seal_read(_in_buffer(b"last words"))
    client.shutdown()
    wire += client.take_output()
    assert server.open_read(_in_buffer(wire)) == (b"last words", True)


@pytest.mark.parametrize(("sender", "receiver"), PAIRS)
def test_bulk_reads_both_ways(ca: ThrowawayCA, sender: str, receiver: str) -> None:
    client, server = _engines(ca, sender, receiver)
    payload = bytes(range(256)) * 800  # 200 KiB: the engines' large-record paths
    wire = client.seal_read(_in_buffer(payload))
    got = [server.open_read(_in_buffer(piece))[0] for piece in _cuts(wire, 64 * 1024)]
    assert b"".join(got) == payload
    server.write(payload)
    back = server.take_output()
    got = []
    for piece in _cuts(back, 100_000):
        client.feed(piece)
        got.append(client.read()[0])
    assert b"".join(got) == payload

# SPDX-License-Identifier: MPL-2.0
"""TLS through pyOpenSSL and the OpenSSL the `cryptography` wheel carries.

Measured cheaper than Python's `ssl` (Debian's OpenSSL 3.0) for the mutual handshake
(docs/benchmark.md: ~1.9 ms against ~3.0 ms per pair of ends), and it lets us prefer
AES-128-GCM in TLS 1.3. Contexts are built with pyOpenSSL; each connection is a raw `SSL`
object, and handshakes and records go through the raw `SSL_*`/`BIO_*` calls: small records
into one shared scratch buffer (the event loop
is single threaded and every read is copied out before returning), bulk ones straight into a
buffer handed to the transport. Either way an idle connection holds no buffer.
"""

from __future__ import annotations

from cryptography import x509
from OpenSSL import SSL, crypto
from OpenSSL._util import ffi, lib

from meshkit.certfmt import load_key
from meshkit.tls import (
    READ_BUFFER,
    READ_CHUNK,
    TLS12_CIPHERS,
    TLS13_SUITES,
    Engine,
    HandshakeError,
    TLSRecordError,
    alert_reason,
    verify_code_reason,
)

_SCRATCH = bytearray(READ_CHUNK)
_SCRATCH_VIEW = memoryview(_SCRATCH)
_SCRATCH_PTR = ffi.from_buffer(_SCRATCH)
_WIRE = bytearray(READ_CHUNK + 64 * 1024)
_WIRE_VIEW = memoryview(_WIRE)
_WIRE_PTR = ffi.from_buffer(_WIRE)
_WIRE_SIZE = len(_WIRE)
# The loop-wide read buffer every socket reads into: `seal_read`/`open_read` hand OpenSSL this
# pointer, made once, instead of a slice and an `ffi.from_buffer` per record.
_READ_PTR = ffi.from_buffer(READ_BUFFER)

KEY_SHARE_GROUPS = b"X25519:P-256"
# Below this many bytes the shared scratch buffers and a `bytes` copy are cheaper than an
# allocation of its own.
_LARGE = 16 * 1024
_raw_alloc = ffi.new_allocator(should_clear_after_alloc=False)
_PTR_OUT = ffi.new("char **")
_PTR_IN = ffi.new("char **")
_PTR_DER = ffi.new("char **")
_ZERO_RETURN = lib.SSL_ERROR_ZERO_RETURN
_MODE_NO_AUTO_CHAIN = 0x8  # SSL_MODE_NO_AUTO_CHAIN (ssl.h); the bindings do not name it
_WANT_READ = lib.SSL_ERROR_WANT_READ


def _context(
    chain: list[x509.Certificate], key_pem: str, roots: list[x509.Certificate], server: bool
) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(TLS12_CIPHERS.encode())
    ctx.set_tls13_ciphersuites(TLS13_SUITES.encode())
    ctx.use_certificate(chain[0])
    for extra in chain[1:]:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(load_key(key_pem))
    ctx.check_privatekey()
    store = ctx.get_cert_store()
    assert store is not None
    for root in roots:
        store.add_cert(crypto.X509.from_cryptography(root))
    flags = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if server else 0)
    ctx.set_verify(flags, None)
    # No automatic chain: without it OpenSSL rebuilds and re-verifies our own chain from the
    # trust store on every handshake (one ECDSA verify, ~10% of the proxy's CPU per new
    # connection) and sends the root, which the peer already holds. The leaf file's own
    # intermediates still go out (`add_extra_chain_cert` above), as Consul's proxy sends them.
    ctx.set_mode(SSL.MODE_RELEASE_BUFFERS | _MODE_NO_AUTO_CHAIN | lib.SSL_MODE_AUTO_RETRY)
    # Plain X25519 (P-256 as fallback): OpenSSL 4.0 otherwise offers and negotiates the hybrid
    # X25519MLKEM768 key share, measured ~15% dearer per mutual handshake (docs/benchmark.md).
    if lib.SSL_CTX_set1_curves_list(ctx._context, KEY_SHARE_GROUPS) != 1:
        raise RuntimeError("OpenSSL rejected the key share group list")
    ctx.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
    if server:
        ctx.set_options(SSL.OP_NO_TICKET)
        ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    return ctx


class OpenSSLEngine:
    """One `SSL` object over two memory BIOs, driven through the raw calls.

    pyOpenSSL's `Connection` is skipped: its constructor registers every connection in a
    weak-value map (for Python callbacks we do not use) and its accessors wrap each result
    in objects; per new connection that was ~4% of a proxy's CPU.
    """

    __slots__ = ("rbio", "ssl", "wbio")

    def __init__(self, ctx: SSL.Context, server_side: bool) -> None:
        raw = lib.SSL_new(ctx._context)
        if raw == ffi.NULL:
            raise MemoryError("SSL_new failed")
        ssl_ = ffi.gc(raw, lib.SSL_free)  # frees the BIOs too
        rbio = lib.BIO_new(lib.BIO_s_mem())
        wbio = lib.BIO_new(lib.BIO_s_mem())
        if rbio == ffi.NULL or wbio == ffi.NULL:
            for bio in (rbio, wbio):
                if bio != ffi.NULL:
                    lib.BIO_free(bio)
            raise MemoryError("BIO_new failed")
        lib.SSL_set_bio(ssl_, rbio, wbio)
        if server_side:
            lib.SSL_set_accept_state(ssl_)
        else:
            lib.SSL_set_connect_state(ssl_)
        self.ssl = ssl_
        self.rbio = rbio
        self.wbio = wbio

    def feed(self, data: bytes | memoryview) -> None:
        src = data if isinstance(data, bytes) else ffi.from_buffer(data)
        lib.BIO_write(self.rbio, src, len(data))

    def handshake(self) -> bool:
        ssl_ = self.ssl
        result = lib.SSL_do_handshake(ssl_)
        if result == 1:
            return True
        err = lib.SSL_get_error(ssl_, result)
        if err == _WANT_READ:
            return False
        text = _error_queue_text()
        if err == lib.SSL_ERROR_SSL:
            upper = text.upper().replace(" ", "_")
            code = lib.SSL_get_verify_result(ssl_)
            if code != 0 and "CERTIFICATE_VERIFY_FAILED" in upper:
                reason = verify_code_reason(code)
            else:
                reason = alert_reason(upper)
            raise HandshakeError(reason, text or "TLS handshake failed")
        if err in (lib.SSL_ERROR_SYSCALL, _ZERO_RETURN):
            raise HandshakeError("eof", text or "peer closed during the TLS handshake")
        raise HandshakeError("protocol", text or f"TLS handshake failed (SSL_get_error {err})")

    def take_output(self) -> bytes:
        wbio = self.wbio
        pending = lib.BIO_get_mem_data(wbio, _PTR_OUT)
        if pending <= 0:
            return b""
        if pending >= _LARGE:
            # Bulk: one copy out of the BIO into memory nobody else uses (no zero-fill, no
            # second copy into `bytes`); the transport keeps it alive until it is sent.
            buf = _raw_alloc("char[]", pending)
            n = lib.BIO_read(wbio, buf, pending)
            return ffi.buffer(buf, max(n, 0))  # type: ignore[no-any-return]
        n = lib.BIO_read(wbio, _WIRE_PTR, pending)
        return bytes(_WIRE_VIEW[:n]) if n > 0 else b""

    def read(self) -> tuple[bytes, bool]:
        ssl_ = self.ssl
        # Plaintext is never longer than the ciphertext waiting in the BIO plus what OpenSSL
        # already decrypted; bulk reads go straight into a buffer of their own (no extra copy).
        cap = lib.BIO_get_mem_data(self.rbio, _PTR_IN) + lib.SSL_pending(ssl_)
        if cap < _LARGE:
            return self._read_small(ssl_, self.rbio)
        cap = min(cap, READ_CHUNK)
        buf = _raw_alloc("char[]", cap)
        got = 0
        eof = False
        while got < cap:
            n = lib.SSL_read(ssl_, buf + got, cap - got)
            if n > 0:
                got += n
                continue
            eof = _read_stopped_at_eof(ssl_, n)
            break
        data: bytes = ffi.buffer(buf, got) if got else b""
        if got == cap and not eof:
            more, eof = self._read_small(ssl_, self.rbio)
            if more:
                data = b"".join((data, more))
        return data, eof

    def _read_small(self, ssl_: object, rbio: object, got: int = 0) -> tuple[bytes, bool]:
        """Decrypt into the scratch buffer, whose first `got` bytes are plaintext already."""
        size = READ_CHUNK
        eof = False
        chunks: list[bytes] = []
        while True:
            n = lib.SSL_read(ssl_, _SCRATCH_PTR + got, size - got)
            if n > 0:
                got += n
                if got == size:
                    chunks.append(bytes(_SCRATCH_VIEW[:got]))
                    got = 0
                elif lib.BIO_get_mem_data(rbio, _PTR_IN) <= 0 and lib.SSL_pending(ssl_) <= 0:
                    # Nothing left to decrypt: skip the SSL_read (and SSL_get_error) that could
                    # only answer WANT_READ. A close_notify or a partial record still waiting
                    # is either in the BIO (read on) or needs more bytes (a later feed).
                    break
                continue
            eof = _read_stopped_at_eof(ssl_, n)
            break
        if got:
            chunks.append(bytes(_SCRATCH_VIEW[:got]))
        if not chunks:
            return b"", eof
        return (chunks[0] if len(chunks) == 1 else b"".join(chunks)), eof

    def write(self, data: bytes | memoryview) -> None:
        ssl_ = self.ssl
        total = len(data)
        src0 = data if isinstance(data, bytes) else ffi.from_buffer(data)
        n = lib.SSL_write(ssl_, src0, total)  # memory BIO: normally all of it at once
        if n != total:
            _write_rest(ssl_, ffi.from_buffer(data), n, total)

    def seal_read(self, nbytes: int) -> bytes:
        """`write` + `take_output` for the first `nbytes` of the shared read buffer.

        Two cffi calls for a small record (SSL_write, BIO_read), against four through `write`
        and `take_output`; the ciphertext of a small write is copied out with `ffi.unpack`.
        """
        ssl_ = self.ssl
        n = lib.SSL_write(ssl_, _READ_PTR, nbytes)
        if n != nbytes:
            _write_rest(ssl_, _READ_PTR, n, nbytes)
        if nbytes >= _LARGE:
            return self.take_output()
        n = lib.BIO_read(self.wbio, _WIRE_PTR, _WIRE_SIZE)
        if n <= 0:
            return b""
        out: bytes = ffi.unpack(_WIRE_PTR, n)
        if n == _WIRE_SIZE:  # more than a small record and the tickets: never in practice
            out += self.take_output()
        return out

    def open_read(self, nbytes: int) -> tuple[bytes, bool]:
        """`feed` + `read` for the first `nbytes` of the shared read buffer.

        A small read is usually one whole record: BIO_write, SSL_read and one look at the BIO
        (three cffi calls, against seven through `feed` and `read`).
        """
        rbio = self.rbio
        lib.BIO_write(rbio, _READ_PTR, nbytes)
        if nbytes >= _LARGE:
            return self.read()
        ssl_ = self.ssl
        n = lib.SSL_read(ssl_, _SCRATCH_PTR, READ_CHUNK)
        if n <= 0:
            return b"", _read_stopped_at_eof(ssl_, n)
        if lib.BIO_get_mem_data(rbio, _PTR_IN) <= 0:
            # Less than asked for means the record was used up (SSL_pending is 0): done.
            return ffi.unpack(_SCRATCH_PTR, n), False
        return self._read_small(ssl_, rbio, n)

    def shutdown(self) -> None:
        lib.SSL_shutdown(self.ssl)
        lib.ERR_clear_error()

    def peer_der(self) -> bytes | None:
        cert = lib.SSL_get_peer_certificate(self.ssl)  # a new reference, or NULL
        if cert == ffi.NULL:
            return None
        bio = lib.BIO_new(lib.BIO_s_mem())
        try:
            if bio == ffi.NULL or lib.i2d_X509_bio(bio, cert) != 1:
                lib.ERR_clear_error()
                return None
            n = lib.BIO_get_mem_data(bio, _PTR_DER)
            return bytes(ffi.buffer(_PTR_DER[0], n)) if n > 0 else None
        finally:
            if bio != ffi.NULL:
                lib.BIO_free(bio)
            lib.X509_free(cert)

    def version(self) -> str:
        return ffi.string(lib.SSL_get_version(self.ssl)).decode()  # type: ignore[no-any-return]


def _write_rest(ssl_: object, src: object, sent: int, total: int) -> None:
    """Finish a write that `SSL_write` took only part of (`sent` bytes, or <= 0)."""
    sent = max(sent, 0)
    while sent < total:
        n = lib.SSL_write(ssl_, src + sent, total - sent)  # type: ignore[operator]
        if n <= 0:
            lib.ERR_clear_error()
            raise TLSRecordError(f"TLS write failed (SSL_get_error {lib.SSL_get_error(ssl_, n)})")
        sent += n


def _read_stopped_at_eof(ssl_: object, n: int) -> bool:
    """Why an `SSL_read` returned `n` <= 0: True at close_notify, False when it wants more
    bytes; anything else is a broken stream."""
    err = lib.SSL_get_error(ssl_, n)
    if err == _ZERO_RETURN:
        return True
    if err != _WANT_READ:
        lib.ERR_clear_error()
        raise TLSRecordError(f"TLS record error (SSL_get_error {err})")
    return False


def _error_queue_text() -> str:
    """OpenSSL's queued errors as "library reason" pairs; empties the queue."""
    parts: list[str] = []
    for _ in range(16):  # the queue is short; bounded anyway
        code = lib.ERR_get_error()
        if code == 0:
            break
        for text in (lib.ERR_lib_error_string(code), lib.ERR_reason_error_string(code)):
            if text != ffi.NULL:
                parts.append(ffi.string(text).decode(errors="replace"))
    lib.ERR_clear_error()
    return " ".join(parts)


class OpenSSLSide:
    kind = "openssl"
    __slots__ = ("ctx", "server_side")

    def __init__(self, ctx: SSL.Context, server_side: bool) -> None:
        self.ctx = ctx
        self.server_side = server_side

    def engine(self) -> Engine:
        return OpenSSLEngine(self.ctx, self.server_side)


def openssl_sides(
    chain_pem: str, key_pem: str, roots_pem: tuple[str, ...]
) -> tuple[OpenSSLSide, OpenSSLSide]:
    chain = x509.load_pem_x509_certificates(chain_pem.encode())
    roots = [c for pem in roots_pem for c in x509.load_pem_x509_certificates(pem.encode())]
    return (
        OpenSSLSide(_context(chain, key_pem, roots, True), True),
        OpenSSLSide(_context(chain, key_pem, roots, False), False),
    )

# SPDX-License-Identifier: MPL-2.0
"""Short, stable reason labels for failed handshakes (the `reason` metric label)."""

from __future__ import annotations

import ssl

from meshkit.tls import HandshakeError, IdentityError, stdlib_reason

# A verified leaf whose SPIFFE identity names another trust domain than ours (Consul's
# authorize says "Identity from an external trust domain"); refused before authorization.
FOREIGN_TRUST_DOMAIN = "foreign_trust_domain"


class PeerMismatch(Exception):
    """The upstream's certificate names another service than the one we meant to reach."""


def handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, HandshakeError):
        return exc.reason
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, PeerMismatch):
        return "peer_mismatch"
    if isinstance(exc, IdentityError):
        return "bad_identity"
    if isinstance(exc, ssl.SSLError):
        return stdlib_reason(exc)
    if isinstance(exc, ConnectionError | EOFError):
        return "eof"
    return "error"

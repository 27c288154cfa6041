# SPDX-License-Identifier: MPL-2.0
"""The two certificate-material formats the data path and the dev agent's CA share.

Kept in the host package (not beside the CA in meshkit_tools.pki) because the proxy needs them
at run time: serials in Consul's spelling for peer identities, and the leaf key read from PEM.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def colon_hex(value: int | bytes) -> str:
    """Consul's `aa:bb:...` spelling of serials and key IDs."""
    raw = (
        value
        if isinstance(value, bytes)
        else value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    )
    return ":".join(f"{b:02x}" for b in raw)


def load_key(pem: str | bytes) -> ec.EllipticCurvePrivateKey:
    """The leaf's private key. Consul's CA issues P-256 (EC) keys only: anything else is refused."""
    key = serialization.load_pem_private_key(pem.encode() if isinstance(pem, str) else pem, None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an EC private key")
    return key

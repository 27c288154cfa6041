"""Short, stable reason labels for failed handshakes (the `reason` metric label)."""

from __future__ import annotations

import ssl

from meshkit.tls import IdentityError


class PeerMismatch(Exception):
    """The upstream's certificate names another service than the one we meant to reach."""


def handshake_reason(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, PeerMismatch):
        return "peer_mismatch"
    if isinstance(exc, IdentityError):
        return "bad_identity"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", 0)
        if code == 10:  # X509_V_ERR_CERT_HAS_EXPIRED
            return "cert_expired"
        if code == 9:  # X509_V_ERR_CERT_NOT_YET_VALID
            return "cert_not_yet_valid"
        if code in (2, 18, 19, 20, 21):  # issuer unknown / self-signed / no local issuer
            return "unknown_ca"
        if code == 26:  # X509_V_ERR_INVALID_PURPOSE
            return "bad_key_usage"
        return "cert_invalid"
    if isinstance(exc, ssl.SSLError):
        text = (exc.reason or str(exc)).upper()
        if (
            "PEER_DID_NOT_RETURN_A_CERTIFICATE" in text
            or "CERTIFICATE REQUIRED" in text
            or "CERTIFICATE_REQUIRED" in text
        ):
            return "no_client_cert"
        if "UNKNOWN_CA" in text:
            return "peer_rejected_ca"
        if "BAD_CERTIFICATE" in text or "CERTIFICATE_EXPIRED" in text:
            return "peer_rejected_cert"
        if "WRONG_VERSION" in text or "UNSUPPORTED_PROTOCOL" in text or "HTTP_REQUEST" in text:
            return "not_tls"
        return "protocol"
    if isinstance(exc, ConnectionError | EOFError):
        return "eof"
    return "error"

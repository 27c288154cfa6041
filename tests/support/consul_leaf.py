# SPDX-License-Identifier: MPL-2.0
"""A leaf certificate as Consul's `/v1/agent/connect/ca/leaf/<service>` answers it, signed by a
test root for one trust domain; and a watch policy fast enough for tests that wait on renewals."""

from __future__ import annotations

import datetime as dt

from meshkit.consul.watch import Policy
from meshkit.spiffe import service_id
from meshkit_tools import pki

TD = "11111111-2222-3333-4444-555555555555.consul"
FAST = Policy(wait_s=30, backoff_base_s=0.1, backoff_cap_s=0.5)


def leaf_body(root: pki.Issued, valid_for: dt.timedelta) -> dict[str, object]:
    leaf = pki.issue_leaf(root, service_id(TD, "dc1", "api"), valid_for=valid_for)
    return {
        "SerialNumber": pki.colon_hex(leaf.cert.serial_number),
        "CertPEM": leaf.chain_pem,
        "PrivateKeyPEM": leaf.key_pem,
        "Service": "api",
        "ValidBefore": leaf.cert.not_valid_after_utc.isoformat().replace("+00:00", "Z"),
    }

# SPDX-License-Identifier: MPL-2.0
"""The CA: roots, leaves verified with `cryptography`, blocking leaf, rotation, persistence."""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meshkit_tools import pki
from tests.support.devagent import DevAgent


def _verify(chain_pem: str, roots: list[str]) -> x509.Certificate:
    """Verify CertPEM (leaf, then any intermediates) against `roots` as a TLS peer would."""
    leaf, *intermediates = x509.load_pem_x509_certificates(chain_pem.encode())
    store = x509.verification.Store([x509.load_pem_x509_certificate(r.encode()) for r in roots])
    verifier = x509.verification.PolicyBuilder().store(store).build_client_verifier()
    verifier.verify(leaf, intermediates)
    return leaf


def test_leaf_verifies_and_carries_the_spiffe_uri(dev_agent: DevAgent) -> None:
    roots = dev_agent.ok("GET", "/v1/agent/connect/ca/roots")
    td = roots["TrustDomain"]
    assert td.endswith(".consul") and roots["ActiveRootID"] == roots["Roots"][0]["ID"]
    status, headers, leaf = dev_agent.get("/v1/agent/connect/ca/leaf/web")
    assert status == 200 and int(headers["X-Consul-Index"]) == leaf["ModifyIndex"]
    assert leaf["ServiceURI"] == f"spiffe://{td}/ns/default/dc/dc1/svc/web"
    cert = _verify(leaf["CertPEM"], [r["RootCert"] for r in roots["Roots"]])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.UniformResourceIdentifier(leaf["ServiceURI"])]
    assert cert.subject == x509.Name([])
    key = pki.load_key(leaf["PrivateKeyPEM"])
    assert isinstance(key.curve, ec.SECP256R1)
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(hours=72) <= life <= dt.timedelta(hours=72, minutes=2)
    # Same leaf until renewal is due.
    assert (
        dev_agent.ok("GET", "/v1/agent/connect/ca/leaf/web")["SerialNumber"] == leaf["SerialNumber"]
    )


def test_rotation_keeps_old_root_and_wakes_leaf_watchers(dev_agent: DevAgent) -> None:
    leaf = dev_agent.ok("GET", "/v1/agent/connect/ca/leaf/web")
    index = leaf["ModifyIndex"]
    old_roots = dev_agent.ok("GET", "/v1/agent/connect/ca/roots")
    got: dict[str, Any] = {}

    def watch() -> None:
        got["leaf"] = dev_agent.ok("GET", f"/v1/agent/connect/ca/leaf/web?index={index}&wait=30s")

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.3)
    new_key = pki.key_pem(pki.generate_key())
    dev_agent.ok(
        "PUT",
        "/v1/connect/ca/configuration",
        {"Provider": "consul", "Config": {"PrivateKey": new_key, "LeafCertTTL": "72h"}},
    )
    t.join(15)
    roots = dev_agent.ok("GET", "/v1/agent/connect/ca/roots")
    assert len(roots["Roots"]) == 2
    assert roots["ActiveRootID"] != old_roots["ActiveRootID"]
    active = [r for r in roots["Roots"] if r["Active"]]
    assert len(active) == 1 and active[0]["ID"] == roots["ActiveRootID"]
    new_leaf = got["leaf"]
    assert new_leaf["ModifyIndex"] > index
    _verify(new_leaf["CertPEM"], [active[0]["RootCert"]])
    # The new root is cross-signed by the old one and the leaf carries that certificate, so a
    # peer that still trusts only the old root accepts the new leaf (no outage mid-rotation).
    assert (
        active[0]["IntermediateCerts"]
        and len(x509.load_pem_x509_certificates(new_leaf["CertPEM"].encode())) == 2
    )
    _verify(new_leaf["CertPEM"], [old_roots["Roots"][0]["RootCert"]])
    # An old leaf still verifies against the roots served now.
    _verify(leaf["CertPEM"], [r["RootCert"] for r in roots["Roots"]])
    config = dev_agent.ok("GET", "/v1/connect/ca/configuration")
    assert "PrivateKey" not in config["Config"]


def test_leaf_ttl_configurable_and_state_survives_restart(tmp_path: Path) -> None:
    with DevAgent(tmp_path) as agent:
        agent.ok(
            "PUT",
            "/v1/connect/ca/configuration",
            {"Provider": "consul", "Config": {"LeafCertTTL": "2h"}},
        )
        leaf = agent.ok("GET", "/v1/agent/connect/ca/leaf/api")
        cert = x509.load_pem_x509_certificate(leaf["CertPEM"].encode())
        assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(
            hours=2, minutes=2
        )
        td = agent.trust_domain()
        agent.ok(
            "POST",
            "/v1/connect/intentions",
            {"SourceName": "a", "DestinationName": "b", "Action": "deny"},
        )
        agent.ok("POST", "/v1/query", {"Name": "q", "Service": {"Service": "b"}})
        agent.register({"Name": "b", "Port": 1, "Connect": {"SidecarService": {}}})
        agent.restart()
        assert agent.trust_domain() == td
        assert (
            agent.ok("GET", "/v1/agent/connect/ca/leaf/api")["SerialNumber"] == leaf["SerialNumber"]
        )
        assert len(agent.ok("GET", "/v1/connect/intentions")) == 1
        assert len(agent.ok("GET", "/v1/query")) == 1
        assert sorted(agent.ok("GET", "/v1/agent/services")) == ["b", "b-sidecar-proxy"]
        bad = agent.put(
            "/v1/connect/ca/configuration", {"Provider": "consul", "Config": {"LeafCertTTL": "1s"}}
        )
        assert bad[0] == 400 and "LeafCertTTL" in bad[2]

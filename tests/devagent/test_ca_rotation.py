# SPDX-License-Identifier: MPL-2.0
"""Short-lived leaves: renewal at 60-90 % of the lifetime, old roots pruned after their leaves."""

from __future__ import annotations

import datetime as dt

from cryptography import x509

from meshkit_tools import pki
from tests.support.devagent import DevAgent


def test_leaf_renews_between_60_and_90_percent(dev_agent: DevAgent) -> None:
    agent = dev_agent
    agent.ok(
        "PUT",
        "/v1/connect/ca/configuration",
        {"Provider": "consul", "Config": {"LeafCertTTL": "10s"}},
    )
    first = agent.ok("GET", "/v1/agent/connect/ca/leaf/web")
    second = agent.ok("GET", f"/v1/agent/connect/ca/leaf/web?index={first['ModifyIndex']}&wait=30s")
    assert second["SerialNumber"] != first["SerialNumber"]
    assert second["ModifyIndex"] > first["ModifyIndex"]
    # Judged on the certificates (second-granular NotBefore), not on a loaded machine's clock:
    # re-issued after 60 % of the 10s lifetime and before the old leaf expired.
    old = x509.load_pem_x509_certificate(first["CertPEM"].encode())
    new = x509.load_pem_x509_certificate(second["CertPEM"].encode())
    renewed_after = new.not_valid_before_utc - old.not_valid_before_utc
    assert renewed_after >= dt.timedelta(seconds=5), renewed_after
    backdate = dt.timedelta(minutes=1)
    assert new.not_valid_before_utc + backdate < old.not_valid_after_utc


def test_rotated_root_stays_until_its_leaves_expire(dev_agent: DevAgent) -> None:
    agent = dev_agent
    agent.ok(
        "PUT",
        "/v1/connect/ca/configuration",
        {"Provider": "consul", "Config": {"LeafCertTTL": "10s"}},
    )
    old_leaf = agent.ok("GET", "/v1/agent/connect/ca/leaf/web")
    old_root = agent.ok("GET", "/v1/agent/connect/ca/roots")["ActiveRootID"]
    agent.ok(
        "PUT",
        "/v1/connect/ca/configuration",
        {
            "Provider": "consul",
            "Config": {"LeafCertTTL": "10s", "PrivateKey": pki.key_pem(pki.generate_key())},
        },
    )
    roots = agent.ok("GET", "/v1/agent/connect/ca/roots")
    assert {r["ID"] for r in roots["Roots"]} >= {old_root} and len(roots["Roots"]) == 2
    new_leaf = agent.ok("GET", "/v1/agent/connect/ca/leaf/web")
    assert new_leaf["SerialNumber"] != old_leaf["SerialNumber"]
    # Once the old root's last leaf expires (<= 10s) it leaves Roots; a roots watcher wakes.
    index = int(agent.get("/v1/agent/connect/ca/roots")[1]["X-Consul-Index"])
    _, headers, later = agent.get(f"/v1/agent/connect/ca/roots?index={index}&wait=30s")
    assert [r["ID"] for r in later["Roots"]] == [roots["ActiveRootID"]]
    assert int(headers["X-Consul-Index"]) > index

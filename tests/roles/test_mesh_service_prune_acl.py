# SPDX-License-Identifier: MPL-2.0
"""mesh_service_prune with a token per service (ACLs on, default deny): the real dev agent, the
role run by ansible-playbook on localhost, which is both the managed host and the controller.

Under default deny the host reads an empty service list without a token and may deregister a
service only with that service's own token, so a prune that ignores the tokens silently leaves a
removed service registered; these tests prove it is gone, and nothing secret is printed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.ansible_run import Run, recap
from tests.support.devagent import DevAgent
from tests.support.mesh_service_role import DB, MESH, WEB, converge

pytestmark = pytest.mark.slow

# Objects the first run writes and the second no longer lists: neither is used by an upstream.
STALE = {
    "meshkit_prepared_queries": [*MESH["meshkit_prepared_queries"],
                                 {"name": "stale-q", "service": "db"}],
    "meshkit_intentions": [*MESH["meshkit_intentions"],
                           {"source": "old", "destination": "db", "action": "allow"}],
}  # fmt: skip


def tokens(agent: DevAgent) -> dict[str, dict[str, Any]]:
    """This host's service tokens by service ID, each read whole (SecretID included)."""
    found: dict[str, dict[str, Any]] = {}
    for stub in agent.ok("GET", "/v1/acl/tokens"):
        prefix, _, rest = str(stub.get("Description", "")).partition("meshkit proxy ")
        if prefix == "" and rest.endswith(" on localhost"):
            found[rest.removesuffix(" on localhost")] = agent.ok(
                "GET", f"/v1/acl/token/{stub['AccessorID']}"
            )
    return found


def run_role(
    tmp_path: Path, agent: DevAgent, services: list[dict[str, Any]], *args: str, **kw: Any
) -> Run:
    assert agent.acl_master_token
    return converge(
        tmp_path, agent, services, *args,
        meshkit_consul_management_token=agent.acl_master_token, **kw,
    )  # fmt: skip


def assert_no_secret(run: Run, agent: DevAgent, secrets: list[str]) -> None:
    assert agent.acl_master_token
    for secret in [agent.acl_master_token, *secrets]:
        assert secret not in run.output


def test_per_service_prune_deregisters_with_the_removed_service_token(
    tmp_path: Path, dev_agent_acl: DevAgent
) -> None:
    agent = dev_agent_acl
    first = run_role(tmp_path, agent, [WEB, DB], **STALE)
    assert first.rc == 0, first.output
    before = tokens(agent)
    assert set(before) == {"web-1", "db-1"}
    secrets = [t["SecretID"] for t in before.values()]
    assert_no_secret(first, agent, secrets)
    services = agent.ok("GET", "/v1/agent/services")
    assert {"web-1", "web-1-sidecar-proxy", "db-1", "db-1-sidecar-proxy"} <= set(services)
    # Default deny: without a token the agent lists nothing (what the old prune read).
    assert agent.ok("GET", "/v1/agent/services", token="anonymous") == {}

    # Check mode (with diff) predicts the prune and changes nothing.
    check = run_role(tmp_path, agent, [WEB], "--check", "--diff", "-v", mesh_service_prune=True)
    assert check.rc == 0, check.output
    assert recap(check)["changed"] == 4, check.stdout  # service, query, intention, token
    assert_no_secret(check, agent, secrets)
    assert "db-1" in agent.ok("GET", "/v1/agent/services")
    assert set(tokens(agent)) == {"web-1", "db-1"}
    assert "stale-q" in {q["Name"] for q in agent.ok("GET", "/v1/query")}

    pruned = run_role(tmp_path, agent, [WEB], "-v", mesh_service_prune=True)
    assert pruned.rc == 0, pruned.output
    assert_no_secret(pruned, agent, secrets)
    services = agent.ok("GET", "/v1/agent/services")
    assert "db-1" not in services and "db-1-sidecar-proxy" not in services, sorted(services)
    assert {"web-1", "web-1-sidecar-proxy"} <= set(services)
    status, _, _ = agent.get(f"/v1/acl/token/{before['db-1']['AccessorID']}")
    assert status in (403, 404)
    after = tokens(agent)
    assert set(after) == {"web-1"}
    assert after["web-1"]["SecretID"] == before["web-1"]["SecretID"]
    assert agent.ok("GET", "/v1/acl/token/self", token=after["web-1"]["SecretID"])
    assert [q["Name"] for q in agent.ok("GET", "/v1/query")] == ["db-nearest"]
    intentions = {(i["SourceName"], i["DestinationName"])
                  for i in agent.ok("GET", "/v1/connect/intentions")}  # fmt: skip
    assert intentions == {("web", "db")}

    again = run_role(tmp_path, agent, [WEB], "-v", mesh_service_prune=True)
    assert again.rc == 0, again.output
    assert recap(again)["changed"] == 0, again.stdout
    assert_no_secret(again, agent, secrets)


def test_without_prune_the_token_goes_and_the_registration_stays(
    tmp_path: Path, dev_agent_acl: DevAgent
) -> None:
    """The documented default: a removed service's token is deleted, its registration is left
    (docs/security.md says how to remove it)."""
    agent = dev_agent_acl
    first = run_role(tmp_path, agent, [WEB, DB])
    assert first.rc == 0, first.output
    dropped = run_role(tmp_path, agent, [WEB])
    assert dropped.rc == 0, dropped.output
    assert set(tokens(agent)) == {"web-1"}
    assert {"db-1", "db-1-sidecar-proxy"} <= set(agent.ok("GET", "/v1/agent/services"))

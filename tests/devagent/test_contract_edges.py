# SPDX-License-Identifier: MPL-2.0
"""Contract test: the dev agent answers the `consul-1.7.14-edges` recording exactly as Consul did.

The recording has two phases, each against a fresh Consul 1.7.14 dev agent:
1. ACLs off, `enable_central_service_config = true`: empty states, config entries and their
   merge into sidecar registrations, older proxy forms (e01-e37).
2. ACLs on, `default_policy = "deny"`: anonymous and unknown tokens, a service-identity token,
   policies, token update/delete (e38-e74).

Every request is replayed in order against a fresh dev agent started the same way; status,
headers, error texts and JSON (shape, `null` and values) must agree. Deliberate deviations
would be listed in DEVIATIONS with the reason and in docs/dev-agent.md; the list is empty:
where Consul's answer is surprising, Consul wins.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.consul_replay import Replayer, load_session
from tests.support.devagent import DevAgent

SESSION = load_session()
DEVIATIONS: dict[str, str] = {}

# How the recording's agents were started, as dev-agent flags.
CENTRAL_CONFIG_ARGS = ["-enable-central-service-config"]
MASTER_TOKEN = "4f0b2c1e-master-token-of-the-replay"


def replay(agent: DevAgent, acl: bool) -> list[str]:
    player = Replayer(agent, deviations=DEVIATIONS)
    player.prime(SESSION)
    for ex in SESSION:
        if ex.acl == acl:
            player.send(ex)
    return player.problems


def test_recording_has_both_phases() -> None:
    assert sum(ex.acl for ex in SESSION) >= 30
    assert sum(not ex.acl for ex in SESSION) >= 30


def test_phase_acls_off_central_config(tmp_path: Path) -> None:
    with DevAgent(tmp_path, extra_args=CENTRAL_CONFIG_ARGS) as agent:
        problems = replay(agent, acl=False)
    assert problems == [], f"{len(problems)} deviations:\n" + "\n".join(problems)


@pytest.mark.parametrize("policy", ["deny"])
def test_phase_acls_default_deny(tmp_path: Path, policy: str) -> None:
    with DevAgent(
        tmp_path,
        acl_master_token=MASTER_TOKEN,
        extra_args=[*CENTRAL_CONFIG_ARGS, "-acl-default-policy", policy],
    ) as agent:
        problems = replay(agent, acl=True)
    assert problems == [], f"{len(problems)} deviations:\n" + "\n".join(problems)

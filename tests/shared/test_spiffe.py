# SPDX-License-Identifier: MPL-2.0
import pytest

from meshkit.spiffe import SpiffeError, parse_service_uri, service_id

TD = "1aa78cb5-7ff4-9f1e-e2d1-b104afeec934.consul"


def test_round_trip_of_the_recorded_leaf_uri() -> None:
    uri = f"spiffe://{TD}/ns/default/dc/dc1/svc/web"
    sid = parse_service_uri(uri)
    assert (sid.trust_domain, sid.namespace, sid.datacenter, sid.service) == (
        TD,
        "default",
        "dc1",
        "web",
    )
    assert sid.partition == "default"
    assert sid.uri == uri


def test_partition_prefix_and_percent_encoding() -> None:
    sid = parse_service_uri(f"spiffe://{TD}/ap/team%20a/ns/default/dc/dc1/svc/my%2Fsvc")
    assert sid.partition == "team a"
    assert sid.service == "my/svc"
    assert parse_service_uri(sid.uri) == sid


@pytest.mark.parametrize(
    "uri",
    [
        "https://x.consul/ns/default/dc/dc1/svc/web",
        f"spiffe://{TD}",
        f"spiffe://{TD}/agent/client/dc/dc1/id/abc",
        f"spiffe://{TD}/ns/default/dc/dc1/svc/",
        "spiffe:///ns/default/dc/dc1/svc/web",
        f"spiffe://{TD}/ns/default/dc/dc1/svc/web/extra",
    ],
)
def test_non_service_identities_are_refused(uri: str) -> None:
    with pytest.raises(SpiffeError):
        parse_service_uri(uri)


def test_same_service_ignores_trust_domain_and_case() -> None:
    a = service_id(TD, "dc1", "Web")
    b = service_id("other.consul", "DC1", "web")
    assert a.same_service(b)
    assert not a.same_service(service_id(TD, "dc2", "web"))
    assert not a.same_service(service_id(TD, "dc1", "db"))

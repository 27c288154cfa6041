# SPDX-License-Identifier: MPL-2.0
"""python-nomad submission against the Nomad double over real HTTP and real TLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from ansible_collections.meshkit.connect.plugins.module_utils import nomad_submit as ns
from ansible_collections.meshkit.connect.plugins.module_utils.mesh_model import parse_mesh
from ansible_collections.meshkit.connect.plugins.module_utils.model_fields import (
    ModelError,
)
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_jobspec import build_job
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_render import to_api
from ansible_collections.meshkit.connect.plugins.module_utils.nomad_settings import (
    parse_job_settings,
)
from meshkit_tools import pki
from tests.support.nomad_double import NomadDouble
from tests.support.nomad_model import job_settings, mesh_data

FAST = {"timeout": 3.0, "interval": 0.02}


def shop_job(**settings: Any) -> dict[str, Any]:
    spec = build_job(parse_mesh(mesh_data("native")), parse_job_settings(job_settings(**settings)))
    return dict(to_api(spec))


def connect(double: NomadDouble, **kw: Any) -> tuple[Any, ns.NomadConnection]:
    conn = ns.connection_from(address=double.address, env={}, **kw)
    return ns.client(conn), conn


@pytest.fixture
def tls_double(tmp_path: Path) -> Iterator[tuple[NomadDouble, Path]]:
    """The double behind HTTPS with a throwaway CA and a 127.0.0.1 server certificate."""
    ca = pki.make_root("11111111-2222-3333-4444-555555555555.consul")
    key = pki.generate_key()
    now = pki.utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nomad.test")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(pki.new_serial())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    (tmp_path / "ca.pem").write_text(ca.cert_pem)
    (tmp_path / "server.pem").write_text(pki.cert_pem(cert))
    pki.write_private(tmp_path / "server.key", pki.key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    double = NomadDouble()
    double.serve(tls=context)
    try:
        yield double, tmp_path / "ca.pem"
    finally:
        double.close()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_tls_is_verified_by_default(tls_double: tuple[NomadDouble, Path]) -> None:
    double, ca = tls_double
    n, conn = connect(double)
    assert conn.verify is True
    with pytest.raises(ns.NomadSubmitError, match="TLS certificate is not trusted"):
        ns.detect_version(n, conn)
    n, conn = connect(double, ca_cert=str(ca))
    assert ns.detect_version(n, conn) == "1.7.7"
    n, conn = connect(double, validate_certs=False)  # the explicit, documented opt-out
    assert ns.detect_version(n, conn) == "1.7.7"


def test_ca_from_nomad_cacert_env(tls_double: tuple[NomadDouble, Path]) -> None:
    double, ca = tls_double
    conn = ns.connection_from(address=double.address, env={"NOMAD_CACERT": str(ca)})
    assert ns.detect_version(ns.client(conn), conn) == "1.7.7"


def test_token_namespace_region_are_sent_and_token_never_shown(double: NomadDouble) -> None:
    double.token = "tok-7f3a9c"
    n, conn = connect(double)
    with pytest.raises(ns.NomadSubmitError) as err:
        ns.plan(n, conn, shop_job())
    assert "HTTP 403" in str(err.value) and "NOMAD_TOKEN" in str(err.value)
    conn = ns.connection_from(
        address=double.address,
        env={"NOMAD_TOKEN": "tok-7f3a9c", "NOMAD_NAMESPACE": "shop", "NOMAD_REGION": "eu"},
    )
    assert "tok-7f3a9c" not in repr(conn)
    n = ns.client(conn)
    outcome = ns.apply(n, conn, shop_job(), check_mode=False, wait_for_deployment=True, **_w())
    assert outcome.changed and outcome.waited and outcome.waited.status == "successful"
    sent = double.requests[-1]
    assert sent.headers.get("X-Nomad-Token") == "tok-7f3a9c"
    register = next(r for r in double.requests if r.path == "/v1/jobs")
    assert register.query["namespace"] == ["shop"] and register.query["region"] == ["eu"]
    assert register.body["EnforceIndex"] is True and register.body["JobModifyIndex"] == 0
    # An API error while the token is set names neither the token nor its value.
    with pytest.raises(ns.NomadSubmitError) as err:
        ns.plan(n, conn, {**shop_job(), "ID": "no/such"})
    assert "tok-7f3a9c" not in str(err.value)


def _w() -> dict[str, float]:
    return {"wait_timeout": FAST["timeout"], "interval": FAST["interval"]}


def test_register_sends_the_planned_index_and_a_conflict_is_an_error(double: NomadDouble) -> None:
    n, conn = connect(double)
    first = ns.apply(n, conn, shop_job(), check_mode=False, wait_for_deployment=False)
    assert first.registration is not None
    double.bump_after_plan.add("shop")
    changed = shop_job(priority=70)
    with pytest.raises(ns.NomadSubmitError, match="changed by someone else after the plan"):
        ns.apply(n, conn, changed, check_mode=False, wait_for_deployment=False)
    assert double.jobs["shop"].job["Priority"] == 50  # the other writer's version stays


@pytest.mark.parametrize(
    ("settings", "groups", "why"),
    [
        ({"type": "batch"}, {}, "batch"),
        ({"type": "system"}, {}, "system"),
        ({}, {"web": {"count": 0}, "db": {"count": 0}}, "count 0"),
        ({"update": {"max_parallel": 0}}, {}, "max_parallel 0"),
    ],
)
def test_jobs_without_a_deployment_do_not_wait(
    double: NomadDouble, settings: dict[str, Any], groups: dict[str, Any], why: str
) -> None:
    double.deployment_outcome["shop"] = "stuck"  # would never finish if waited on
    n, conn = connect(double)
    job = shop_job(groups=groups, **settings)
    assert not ns.expects_deployment(job), why
    outcome = ns.apply(n, conn, job, check_mode=False, wait_for_deployment=True, **_w())
    assert outcome.waited is not None and "no deployment" in outcome.waited.note
    assert not [r for r in double.requests if r.path.endswith("/deployment")]


def test_update_null_on_a_service_job_is_refused_with_the_fix() -> None:
    """Nomad gives a service job without an update block its default one and deploys anyway."""
    with pytest.raises(ModelError) as err:
        parse_job_settings(job_settings(update=None))
    assert "job.update" in str(err.value) and "max_parallel: 0" in str(err.value)
    assert parse_job_settings(job_settings(type="batch", update=None)).update is None


def test_a_service_job_without_update_waits_for_nomads_default_deployment(
    double: NomadDouble,
) -> None:
    """An operator's JSON job with no Update anywhere: Nomad deploys it, so we wait on it."""
    double.deployment_outcome["shop"] = "failed"
    job = shop_job()
    for group in job["TaskGroups"]:
        del group["Update"]
    assert ns.expects_deployment(job)
    n, conn = connect(double)
    with pytest.raises(ns.NomadSubmitError, match="failed allocations: shop"):
        ns.apply(n, conn, job, check_mode=False, wait_for_deployment=True, **_w())


def test_stuck_deployment_times_out_naming_allocations(double: NomadDouble) -> None:
    double.deployment_outcome["shop"] = "stuck"
    n, conn = connect(double)
    with pytest.raises(ns.NomadSubmitError) as err:
        ns.apply(
            n,
            conn,
            shop_job(),
            check_mode=False,
            wait_for_deployment=True,
            wait_timeout=0.3,
            interval=0.02,
        )
    assert "still running after 0.3s" in str(err.value)
    assert err.value.details["changed"] is True


def test_failed_deployment_names_the_allocation(double: NomadDouble) -> None:
    double.deployment_outcome["shop"] = "failed"
    n, conn = connect(double)
    with pytest.raises(ns.NomadSubmitError) as err:
        ns.apply(n, conn, shop_job(), check_mode=False, wait_for_deployment=True, **_w())
    text = str(err.value)
    assert "failed: Failed due to unhealthy allocations" in text
    assert "shop.web[0]" in text and "unhealthy" in text


def test_plan_reports_placement_failures(double: NomadDouble) -> None:
    double.missing_drivers = {"exec"}
    n, conn = connect(double)
    outcome = ns.apply(n, conn, shop_job(), check_mode=True, wait_for_deployment=False)
    assert set(outcome.plan.failed_groups) == {"web"} if outcome.plan else False
    assert any("could not place group(s) web" in m for m in outcome.messages)
    assert double.writes() == []


def test_placement_failure_fails_the_wait_naming_the_group(double: NomadDouble) -> None:
    double.missing_drivers = {"exec"}  # web's app driver; db and the proxies use raw_exec
    n, conn = connect(double)
    with pytest.raises(ns.NomadSubmitError) as err:
        ns.apply(n, conn, shop_job(), check_mode=False, wait_for_deployment=True, **_w())
    assert "could not place group(s) web (" in str(err.value)
    assert set(err.value.details["failed_groups"]) == {"web"}
    assert err.value.details["failed_groups"]["web"]["ConstraintFiltered"] == {"missing drivers": 1}


def test_stop_and_purge(double: NomadDouble) -> None:
    n, conn = connect(double)
    ns.apply(n, conn, shop_job(), check_mode=False, wait_for_deployment=False)
    assert ns.stop(n, conn, "shop", purge=False, check_mode=True).changed
    assert not double.jobs["shop"].job["Stop"]
    assert ns.stop(n, conn, "shop", purge=False, check_mode=False).changed
    assert double.jobs["shop"].job["Stop"]
    assert not ns.stop(n, conn, "shop", purge=False, check_mode=False).changed
    assert ns.stop(n, conn, "shop", purge=True, check_mode=False).changed
    assert "shop" not in double.jobs
    assert not ns.stop(n, conn, "shop", purge=True, check_mode=False).changed


def test_recorded_hcl_parses_through_the_double(double: NomadDouble) -> None:
    """The double's parse answers the recorded request with the recorded canonical job."""
    n, conn = connect(double)
    from tests.support.nomad_double import fixture

    job = n.jobs.parse(fixture("requests/nomad-parse.json")["JobHCL"], canonicalize=True)
    assert job == fixture("n03-nomad-jobs-parse.json")
    outcome = ns.apply(n, conn, job, check_mode=False, wait_for_deployment=True, **_w())
    assert outcome.waited and outcome.waited.status == "successful"
    assert ns.plan(n, conn, job).diff_type == "None"


@pytest.fixture
def mtls_double(tls_double: tuple[NomadDouble, Path], tmp_path: Path) -> tuple[NomadDouble, Path]:
    """A second HTTPS double that demands a client certificate signed by its own CA."""
    _, ca_path = tls_double
    client_ca = pki.make_root("66666666-7777-8888-9999-000000000000.consul")
    key = pki.generate_key()
    now = pki.utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "operator")]))
        .issuer_name(client_ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(pki.new_serial())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .sign(client_ca.key, hashes.SHA256())
    )
    (tmp_path / "client-ca.pem").write_text(client_ca.cert_pem)
    (tmp_path / "client.pem").write_text(pki.cert_pem(cert))
    pki.write_private(tmp_path / "client.key", pki.key_pem(key))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca_path.parent / "server.pem", ca_path.parent / "server.key")
    context.load_verify_locations(tmp_path / "client-ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    double = NomadDouble()
    double.serve(tls=context)
    return double, ca_path


def test_client_certificate_for_mutual_tls(mtls_double: tuple[NomadDouble, Path]) -> None:
    double, ca = mtls_double
    try:
        n, conn = connect(double, ca_cert=str(ca))
        with pytest.raises(ns.NomadSubmitError, match="reading the Nomad version"):
            ns.detect_version(n, conn)
        folder = ca.parent
        n, conn = connect(
            double,
            ca_cert=str(ca),
            client_cert=str(folder / "client.pem"),
            client_key=str(folder / "client.key"),
        )
        assert ns.detect_version(n, conn) == "1.7.7"
    finally:
        double.close()

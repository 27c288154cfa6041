# SPDX-License-Identifier: MPL-2.0
"""The built-in CA: roots, leaves, configuration and rotation without an outage.

Leaves are issued on demand per service name and re-issued when 60-90 % of their lifetime
has passed or the active root changed; blocking leaf watchers are woken by the index bump
that goes with every issuance. A rotated-out root stays in `Roots` until the last leaf it
signed has expired, so peers keep trusting certificates still in use.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from meshkit.spiffe import service_id
from meshkit_tools import pki
from meshkit_tools.devagent.catalog import BadRequest
from meshkit_tools.devagent.decode import DecodeError, format_duration, parse_duration
from meshkit_tools.devagent.store import Store, wait_event

ROOT_TABLES = ("roots",)
DEFAULT_LEAF_TTL = 72 * 3600.0
MIN_LEAF_TTL = 10.0  # Consul's floor is 1h; tests need shorter (listed as a deviation)
MAX_LEAF_TTL = 8760 * 3600.0
ROOT_VALIDITY = dt.timedelta(days=3650)


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RootRecord:
    id: str
    name: str
    serial: int
    signing_key_id: str
    not_before: str
    not_after: str
    cert_pem: str
    key_pem: str
    active: bool
    create_index: int
    modify_index: int
    leaves_expire: float = 0.0  # epoch of the last expiry among leaves it signed
    intermediates: list[str] = field(default_factory=list)  # cross-signed by the previous root


@dataclass
class LeafRecord:
    service: str
    serial: str
    cert_pem: str
    key_pem: str
    uri: str
    valid_after: str
    valid_before: str
    root_id: str
    renew_at: float
    create_index: int
    modify_index: int


def _root_record(issued: pki.Issued, index: int) -> RootRecord:
    cert = issued.cert
    fingerprint = cert.fingerprint(hashes.SHA1())
    return RootRecord(
        id=pki.colon_hex(fingerprint),
        name="Consul CA Root Cert",
        serial=cert.serial_number,
        signing_key_id=pki.colon_hex(pki.key_id(issued.key.public_key())),
        not_before=_rfc3339(cert.not_valid_before_utc),
        not_after=_rfc3339(cert.not_valid_after_utc),
        cert_pem=issued.cert_pem,
        key_pem=issued.key_pem,
        active=True,
        create_index=index,
        modify_index=index,
    )


class CA:
    def __init__(self, store: Store, cluster_id: str, datacenter: str) -> None:
        self.store = store
        self.cluster_id = cluster_id
        self.trust_domain = f"{cluster_id}.consul"
        self.datacenter = datacenter
        saved = store.items("ca")
        self.config: dict[str, Any] = saved.get("config") or {
            "Provider": "consul",
            "Config": {
                "IntermediateCertTTL": "8760h",
                "LeafCertTTL": "72h",
                "RotationPeriod": "2160h",
            },
            "CreateIndex": 0,
            "ModifyIndex": 0,
        }
        self.roots = [RootRecord(**r) for r in saved.get("roots", [])]
        self.leaves = {k: LeafRecord(**v) for k, v in store.items("leaves").items()}
        if not self.roots:
            index = store.index + 1
            self.config["CreateIndex"] = self.config["ModifyIndex"] = index
            self.roots = [
                _root_record(pki.make_root(self.trust_domain, valid_for=ROOT_VALIDITY), index)
            ]
            self._save_roots()
            store.put("ca", "config", self.config)
            store.bump(*ROOT_TABLES)

    # -- roots ------------------------------------------------------------------------------

    def _save_roots(self) -> None:
        self.store.put("ca", "roots", [asdict(r) for r in self.roots])

    def active(self) -> RootRecord:
        return next(r for r in self.roots if r.active)

    def index(self) -> int:
        return self.store.table_index(ROOT_TABLES)

    def roots_json(self) -> dict[str, Any]:
        return {
            "ActiveRootID": self.active().id,
            "TrustDomain": self.trust_domain,
            "Roots": [
                {
                    "ID": r.id,
                    "Name": r.name,
                    "SerialNumber": r.serial,
                    "SigningKeyID": r.signing_key_id,
                    "ExternalTrustDomain": self.cluster_id,
                    "NotBefore": r.not_before,
                    "NotAfter": r.not_after,
                    "RootCert": r.cert_pem,
                    "IntermediateCerts": list(r.intermediates) or None,
                    "Active": r.active,
                    "PrivateKeyType": "ec",
                    "PrivateKeyBits": 256,
                    "CreateIndex": r.create_index,
                    "ModifyIndex": r.modify_index,
                }
                for r in self.roots
            ],
        }

    def prune(self) -> bool:
        """Drop inactive roots once every leaf they signed has expired."""
        now = time.time()
        keep = [r for r in self.roots if r.active or r.leaves_expire > now]
        if len(keep) == len(self.roots):
            return False
        self.roots = keep
        self._save_roots()
        self.store.bump(*ROOT_TABLES)
        return True

    # -- configuration ------------------------------------------------------------------------

    def config_json(self) -> dict[str, Any]:
        public = {k: v for k, v in self.config["Config"].items() if k != "PrivateKey"}
        return {
            "Provider": self.config["Provider"],
            "Config": public,
            "State": None,
            "ForceWithoutCrossSigning": bool(self.config.get("ForceWithoutCrossSigning", False)),
            "CreateIndex": self.config["CreateIndex"],
            "ModifyIndex": self.config["ModifyIndex"],
        }

    def leaf_ttl(self) -> float:
        return parse_duration(str(self.config["Config"].get("LeafCertTTL") or "72h"))

    def set_config(self, body: dict[str, Any]) -> None:
        """`PUT /v1/connect/ca/configuration`; a new `PrivateKey` rotates the root."""
        unknown = set(body) - {
            "Provider",
            "Config",
            "ForceWithoutCrossSigning",
            "State",
            "CreateIndex",
            "ModifyIndex",
        }
        if unknown:
            raise BadRequest(f'Request decode failed: json: unknown field "{sorted(unknown)[0]}"')
        provider = body.get("Provider") or "consul"
        if provider != "consul":
            raise BadRequest(
                f"error parsing CA config: unsupported CA provider {provider!r} "
                "(meshkit dev-agent runs the consul provider only)"
            )
        cfg = dict(body.get("Config") or {})
        if not isinstance(cfg, dict):
            raise BadRequest("Request decode failed: Config must be an object")
        merged = {**self.config["Config"], **cfg}
        try:
            ttl = parse_duration(str(merged.get("LeafCertTTL") or "72h"))
            for key in ("RotationPeriod", "IntermediateCertTTL"):
                if merged.get(key):
                    parse_duration(str(merged[key]))
        except DecodeError as exc:
            raise BadRequest(f"error parsing CA config: {exc}") from None
        if not MIN_LEAF_TTL <= ttl <= MAX_LEAF_TTL:
            raise BadRequest(
                f"LeafCertTTL must be between {format_duration(MIN_LEAF_TTL)} and "
                f"{format_duration(MAX_LEAF_TTL)}, got {merged.get('LeafCertTTL')}"
            )
        new_root: pki.Issued | None = None
        key_pem = cfg.get("PrivateKey") or ""
        if key_pem:
            try:
                ca_key = pki.load_key(key_pem)
            except (ValueError, TypeError) as exc:
                raise BadRequest(f"error parsing CA config: PrivateKey: {exc}") from None
            root_pem = cfg.get("RootCert") or ""
            if root_pem:
                try:
                    cert = x509.load_pem_x509_certificate(root_pem.encode())
                except ValueError as exc:
                    raise BadRequest(f"error parsing CA config: RootCert: {exc}") from None
                new_root = pki.Issued(cert=cert, key=ca_key)
            elif pki.colon_hex(pki.key_id(ca_key.public_key())) != self.active().signing_key_id:
                new_root = pki.make_root(self.trust_domain, valid_for=ROOT_VALIDITY, key=ca_key)
        merged.pop("PrivateKey", None)
        merged.pop("RootCert", None)
        index = self.store.index + 1
        self.config = {
            "Provider": provider,
            "Config": merged,
            "ForceWithoutCrossSigning": bool(body.get("ForceWithoutCrossSigning", False)),
            "CreateIndex": self.config["CreateIndex"],
            "ModifyIndex": index,
        }
        self.store.put("ca", "config", self.config)
        if new_root is not None:
            record = _root_record(new_root, index)
            if record.id != self.active().id:
                if not self.config["ForceWithoutCrossSigning"]:
                    record.intermediates = [pki.cert_pem(self._cross_sign(new_root))]
                for r in self.roots:
                    if r.active:
                        r.active = False
                        r.modify_index = index
                self.roots.append(record)
                self._save_roots()
        self.store.bump("roots", "caconfig")
        self.prune()

    def _cross_sign(self, new_root: pki.Issued) -> x509.Certificate:
        """The new root's key certified by the old root, as Consul's rotation does.

        Leaves from the new root carry it in their chain, so a peer that has not yet seen the
        new root still verifies them against the old one: no outage during the switch.
        """
        old = self.active()
        old_cert = x509.load_pem_x509_certificate(old.cert_pem.encode())
        old_key = pki.load_key(old.key_pem)
        new_cert = new_root.cert
        start = pki.utcnow() - dt.timedelta(minutes=1)
        end = min(old_cert.not_valid_after_utc, new_cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(new_cert.subject)
            .issuer_name(old_cert.subject)
            .public_key(new_root.key.public_key())
            .serial_number(pki.new_serial())
            .not_valid_before(start)
            .not_valid_after(end)
        )
        for ext in new_cert.extensions:
            if isinstance(ext.value, x509.AuthorityKeyIdentifier):
                continue
            builder = builder.add_extension(ext.value, ext.critical)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier(pki.key_id(old_key.public_key()), None, None),
            critical=False,
        )
        return builder.sign(old_key, hashes.SHA256())

    # -- leaves -------------------------------------------------------------------------------

    def _issue(self, service: str) -> LeafRecord:
        root = self.active()
        issuer = pki.Issued(
            cert=x509.load_pem_x509_certificate(root.cert_pem.encode()),
            key=pki.load_key(root.key_pem),
        )
        ident = service_id(self.trust_domain, self.datacenter, service)
        ttl = self.leaf_ttl()
        issued = pki.issue_leaf(issuer, ident, valid_for=dt.timedelta(seconds=ttl))
        cert = issued.cert
        # Renewal is timed on the nominal lifetime, not the minute of backdating.
        start = time.time()
        end = cert.not_valid_after_utc.timestamp()
        prev = self.leaves.get(service)
        index = self.store.index + 1
        rec = LeafRecord(
            service=service,
            serial=pki.colon_hex(cert.serial_number),
            cert_pem=issued.chain_pem + "".join(root.intermediates),
            key_pem=issued.key_pem,
            uri=ident.uri,
            valid_after=_rfc3339(cert.not_valid_before_utc),
            valid_before=_rfc3339(cert.not_valid_after_utc),
            root_id=root.id,
            renew_at=start + (end - start) * random.uniform(0.6, 0.9),
            create_index=prev.create_index if prev else index,
            modify_index=index,
        )
        self.leaves[service] = rec
        self.store.put("leaves", service, asdict(rec))
        if end > root.leaves_expire:
            root.leaves_expire = end
            self._save_roots()
        self.store.bump(f"leaf:{service}")
        return rec

    def current_leaf(self, service: str) -> LeafRecord:
        rec = self.leaves.get(service)
        if rec is None or rec.root_id != self.active().id or time.time() >= rec.renew_at:
            rec = self._issue(service)
        return rec

    async def leaf(self, service: str, min_index: int, wait: float) -> LeafRecord:
        """The current leaf; with `min_index`, block until a newer one or `wait`."""
        deadline = time.monotonic() + wait
        while True:
            event = self.store.notifier.current()
            rec = self.current_leaf(service)
            if min_index <= 0 or rec.modify_index != min_index:
                return rec
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.store.notifier.closed:
                return rec
            until_renew = max(rec.renew_at - time.time(), 0.0) + 0.01
            await wait_event(event, min(remaining, until_renew))

    @staticmethod
    def leaf_json(rec: LeafRecord) -> dict[str, Any]:
        return {
            "SerialNumber": rec.serial,
            "CertPEM": rec.cert_pem,
            "PrivateKeyPEM": rec.key_pem,
            "Service": rec.service,
            "ServiceURI": rec.uri,
            "ValidAfter": rec.valid_after,
            "ValidBefore": rec.valid_before,
            "CreateIndex": rec.create_index,
            "ModifyIndex": rec.modify_index,
        }

# SPDX-License-Identifier: MPL-2.0
"""Consul's SPIFFE identities: the one place that parses and builds them.

The proxy, the development control plane and the tests all agree on identity through this
module, so a parsing rule (percent-decoding, the optional partition prefix, case folding of
names) cannot drift between the side that issues a certificate and the side that checks it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

_SERVICE_PATH = re.compile(r"^(?:/ap/([^/]+))?/ns/([^/]+)/dc/([^/]+)/svc/([^/]+)$")


class SpiffeError(ValueError):
    """A URI that is not a Consul service identity."""


@dataclass(frozen=True, slots=True)
class ServiceID:
    trust_domain: str
    namespace: str
    datacenter: str
    service: str
    partition: str = "default"

    @property
    def uri(self) -> str:
        prefix = "" if self.partition == "default" else f"/ap/{quote(self.partition, safe='')}"
        return (
            f"spiffe://{self.trust_domain}{prefix}/ns/{quote(self.namespace, safe='')}"
            f"/dc/{quote(self.datacenter, safe='')}/svc/{quote(self.service, safe='')}"
        )

    def same_service(self, other: ServiceID) -> bool:
        """Consul compares identities case-insensitively and ignores the trust domain,
        which chain validation already covers (and which changes during CA migrations)."""
        return (
            self.service.lower() == other.service.lower()
            and self.datacenter.lower() == other.datacenter.lower()
            and self.namespace.lower() == other.namespace.lower()
            and self.partition.lower() == other.partition.lower()
        )

    def __str__(self) -> str:
        return self.uri


def parse_service_uri(uri: str) -> ServiceID:
    """Parse `spiffe://<td>[/ap/<ap>]/ns/<ns>/dc/<dc>/svc/<name>`; raise SpiffeError otherwise."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "spiffe" or not parts.hostname:
        raise SpiffeError(f"not a SPIFFE URI: {uri!r}")
    match = _SERVICE_PATH.match(parts.path)
    if match is None:
        raise SpiffeError(f"not a Consul service identity: {uri!r}")
    partition, ns, dc, svc = (unquote(g) if g else g for g in match.groups())
    return ServiceID(
        trust_domain=parts.hostname,
        namespace=ns,
        datacenter=dc,
        service=svc,
        partition=partition or "default",
    )


def service_id(
    trust_domain: str, datacenter: str, service: str, namespace: str = "default"
) -> ServiceID:
    return ServiceID(
        trust_domain=trust_domain, namespace=namespace, datacenter=datacenter, service=service
    )


def signing_uri(trust_domain: str) -> str:
    """The URI SAN a Consul CA certificate carries (host only, empty path)."""
    return f"spiffe://{trust_domain}"

# SPDX-License-Identifier: MPL-2.0
"""`meshkit.native`: Connect-native Python services, without a sidecar.

    from meshkit.native import Service
    async with Service("web") as svc:
        await svc.start_server(handler, "0.0.0.0", 8443)     # inbound, guarded
        reader, writer = await svc.connect("db")              # outbound, any name at run time

See docs/native.md. aiohttp integration: `meshkit.native.web`; a blocking facade:
`meshkit.native.sync`.
"""

from meshkit.native.destination import Query
from meshkit.native.errors import (
    Denied,
    DialFailed,
    IdentityMismatch,
    MeshError,
    NoHealthyInstance,
    NotReady,
)
from meshkit.native.service import Service, peer_of
from meshkit.spiffe import ServiceID

__all__ = [
    "Denied",
    "DialFailed",
    "IdentityMismatch",
    "MeshError",
    "NoHealthyInstance",
    "NotReady",
    "Query",
    "Service",
    "ServiceID",
    "peer_of",
]

# SPDX-License-Identifier: MPL-2.0
"""The listener settings in force, on `/metrics`, so an operator (and the lab test) can see
that a central configuration change reached the running proxy without a restart.

`Proxy.apply` calls `report` after every diff: the series of listeners that went away are
dropped, the others set to what new connections now use.
"""

from __future__ import annotations

from meshkit import metrics as m
from meshkit.config import ProxyConfig

SETTING = "listener_setting"
INFO = "listener_info"


def report(metrics: m.Metrics, config: ProxyConfig) -> None:
    for key in [k for k in metrics.gauges if k[0] in (SETTING, INFO)]:
        del metrics.gauges[key]
    service = config.service
    pub = config.public
    if pub is not None:
        info = (("service", service), ("listener", "public"), ("protocol", pub.protocol),
                ("bind_address", pub.bind_host),
                ("local_service_address", f"{pub.local_host}:{pub.local_port}"))  # fmt: skip
        metrics.set(INFO, info, 1)
        for name, value in (
            ("bind_port", pub.bind_port),
            ("local_service_port", pub.local_port),
            ("local_connect_timeout_ms", pub.local_connect_timeout_ms),
            ("handshake_timeout_ms", pub.handshake_timeout_ms),
        ):
            lbl = (("service", service), ("listener", "public"), ("setting", name))
            metrics.set(SETTING, lbl, value)
    for up in config.upstreams:
        listener = f"upstream:{up.key}"
        info = (("service", service), ("listener", listener), ("protocol", up.protocol),
                ("bind_address", up.bind_host), ("local_service_address", ""))  # fmt: skip
        metrics.set(INFO, info, 1)
        for name, value in (
            ("bind_port", up.bind_port),
            ("connect_timeout_ms", up.connect_timeout_ms),
        ):
            lbl = (("service", service), ("listener", listener), ("setting", name))
            metrics.set(SETTING, lbl, value)

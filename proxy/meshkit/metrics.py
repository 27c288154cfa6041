# SPDX-License-Identifier: MPL-2.0
"""Prometheus text metrics, kept cheap on the data path.

Connections add to plain integers on their own objects; only the scrape walks the open
connections and sums. Names and labels are listed in docs/proxy.md.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol

Labels = tuple[tuple[str, str], ...]

PREFIX = "meshkit_proxy_"

# name -> (type, help)
METRICS: dict[str, tuple[str, str]] = {
    "inbound_conns": ("gauge", "Open inbound (public listener) connections."),
    "upstream_conns": ("gauge", "Open upstream listener connections."),
    "inbound_rx_bytes_total": ("counter", "Bytes received from mesh peers and sent to the app."),
    "inbound_tx_bytes_total": ("counter", "Bytes received from the app and sent to mesh peers."),
    "upstream_tx_bytes_total": ("counter", "Bytes from the local client sent to the upstream."),
    "upstream_rx_bytes_total": ("counter", "Bytes from the upstream sent to the local client."),
    "handshake_failures_total": ("counter", "Failed TLS handshakes by reason."),
    "authz_denials_total": ("counter", "Inbound connections refused by authorization."),
    "dial_failures_total": ("counter", "Failed dials: local app (dst_type=local) or upstream."),
    "connections_total": ("counter", "Accepted connections."),
    "cert_loads_total": ("counter", "TLS material loads (start and rotations)."),
    "ready": ("gauge", "1 when certificates are loaded and listeners are up."),
    "control_plane_reachable": (
        "gauge",
        "1 when the control plane answered last time (Consul mode).",
    ),
    "consul_watch_healthy": ("gauge", "1 when the Consul watch's last request succeeded."),
    "consul_watch_failures": ("gauge", "Consecutive failed requests of the Consul watch."),
    "consul_watch_age_seconds": (
        "gauge",
        "Seconds since the Consul watch last succeeded (-1: never).",
    ),
    "listener_setting": (
        "gauge",
        "A listener's setting in force for new connections (ports; timeouts in ms), by setting.",
    ),
    "listener_info": (
        "gauge",
        "1 per listener, labelled with its protocol (Config.protocol) and addresses.",
    ),
    "workers": ("gauge", "Worker processes configured (-workers; 1 in Consul mode)."),
    "workers_up": (
        "gauge",
        "Worker processes that answered this scrape (worker 0 included); below `workers` "
        "when one is stuck.",
    ),
}

# Per-process states, not amounts: across workers the minimum (ready only when all are ready).
STATE_GAUGES = frozenset(
    {
        "ready",
        "control_plane_reachable",
        "consul_watch_healthy",
        "listener_setting",  # the same in every worker: not an amount to sum
        "listener_info",
    }
)


def labels(service: str, upstream: str = "", dst_type: str = "local", **extra: str) -> Labels:
    return (("service", service), ("upstream", upstream), ("dst_type", dst_type), *extra.items())


class Flow(Protocol):
    """An open proxied connection as the scrape sees it (and the drain, which cuts it)."""

    labels: Labels
    inbound: bool

    def byte_counts(self) -> tuple[int, int]: ...

    def abort(self) -> None: ...


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[tuple[str, Labels], int] = defaultdict(int)
        self.gauges: dict[tuple[str, Labels], float] = {}
        self.flows: set[Flow] = set()

    def inc(self, name: str, lbl: Labels, n: int = 1) -> None:
        self.counters[(name, lbl)] += n

    def set(self, name: str, lbl: Labels, value: float) -> None:
        self.gauges[(name, lbl)] = value

    def open_flow(self, flow: Flow) -> None:
        self.flows.add(flow)

    def close_flow(self, flow: Flow) -> None:
        if flow in self.flows:
            self.flows.discard(flow)
            up, down = flow.byte_counts()
            self._add_bytes(self.counters, flow, up, down)

    @staticmethod
    def _add_bytes(into: dict[tuple[str, Labels], int], flow: Flow, up: int, down: int) -> None:
        # up: from the accepting side's peer towards the far side; down: the reply direction.
        if flow.inbound:
            into[("inbound_rx_bytes_total", flow.labels)] += up
            into[("inbound_tx_bytes_total", flow.labels)] += down
        else:
            into[("upstream_tx_bytes_total", flow.labels)] += up
            into[("upstream_rx_bytes_total", flow.labels)] += down

    def snapshot(self) -> tuple[dict[tuple[str, Labels], int], dict[tuple[str, Labels], float]]:
        counters: dict[tuple[str, Labels], int] = defaultdict(int, self.counters)
        gauges = dict(self.gauges)
        for key in list(gauges):
            if key[0] in ("inbound_conns", "upstream_conns"):
                gauges[key] = 0
        for flow in list(self.flows):
            up, down = flow.byte_counts()
            self._add_bytes(counters, flow, up, down)
            key = ("inbound_conns" if flow.inbound else "upstream_conns", flow.labels)
            gauges[key] = gauges.get(key, 0) + 1
        return dict(counters), gauges

    def declare_conns(self, inbound: bool, lbl: Labels) -> None:
        """Make a listener's series exist (at zero) before its first connection."""
        self.gauges.setdefault(("inbound_conns" if inbound else "upstream_conns", lbl), 0)
        names = (
            ("inbound_rx_bytes_total", "inbound_tx_bytes_total")
            if inbound
            else ("upstream_tx_bytes_total", "upstream_rx_bytes_total")
        )
        for name in names:
            self.counters[(name, lbl)] += 0

    def render(self) -> str:
        return render(*self.snapshot())


def render(counters: dict[tuple[str, Labels], int], gauges: dict[tuple[str, Labels], float]) -> str:
    """Prometheus text for one process's snapshot or the sum over the workers."""
    by_name: dict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for (name, lbl), count in counters.items():
        by_name[name].append((lbl, float(count)))
    for (name, lbl), gvalue in gauges.items():
        by_name[name].append((lbl, gvalue))
    lines: list[str] = []
    for name in sorted(by_name):
        kind, text = METRICS.get(name, ("untyped", name))
        full = PREFIX + name
        lines.append(f"# HELP {full} {text}")
        lines.append(f"# TYPE {full} {kind}")
        for lbl, value in sorted(by_name[name]):
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in lbl)
            number = float(value)
            shown = str(int(number)) if number.is_integer() else repr(number)
            series = f"{full}{{{inner}}}" if inner else full
            lines.append(f"{series} {shown}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

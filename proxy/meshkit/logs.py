# SPDX-License-Identifier: MPL-2.0
"""Logging set-up: `-log-level` and `-log-json` as `consul connect proxy` spells them.

`MESHKIT_LOG_TAG`, when set, is written into every line (`[TAG]` before the logger's name, or a
`sidecar` field in JSON): `meshkit-proxy-host` sets it to each sidecar's ID, so the one journal
of many sidecars tells them apart. Unset (a proxy run on its own), the output is unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

TRACE = 5
TAG_VARIABLE = "MESHKIT_LOG_TAG"
LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class JSONFormatter(logging.Formatter):
    """hclog-style JSON lines (`@timestamp`, `@level`, `@module`, `@message`)."""

    def __init__(self, tag: str = "") -> None:
        super().__init__()
        self.tag = tag

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "@level": record.levelname.lower(),
            "@module": record.name,
            "@message": record.getMessage(),
        }
        if self.tag:
            out["sidecar"] = self.tag
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def parse_level(text: str) -> int:
    level = LEVELS.get(text.strip().lower())
    if level is None:
        raise ValueError(f"unknown log level {text!r}; use one of trace, debug, info, warn, error")
    return level


def setup(level: str = "info", as_json: bool = False) -> None:
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    tag = os.environ.get(TAG_VARIABLE, "")
    if as_json:
        handler.setFormatter(JSONFormatter(tag))
    else:
        where = f"[{tag.replace('%', '%%')}] " if tag else ""
        fmt = logging.Formatter(
            f"%(asctime)s.%(msecs)03dZ [%(levelname)s] {where}%(name)s: %(message)s",
            "%Y-%m-%dT%H:%M:%S",
        )
        fmt.converter = time.gmtime
        handler.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(parse_level(level))

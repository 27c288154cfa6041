# SPDX-License-Identifier: MPL-2.0
"""The limits, the error and the size-bounded, UTF-8-strict read that every bounded reader
shares (`meshkit.bounded` for JSON and text, `meshkit.bounded.yamlfile` for YAML)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 1 << 20  # 1 MiB: far above any real config file, mesh model or job settings
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 100_000


class FileError(ValueError):
    """A file that cannot be used; `str()` is one line: `<path>: <problem>`."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem


@dataclass(frozen=True)
class Limits:
    max_bytes: int = MAX_BYTES
    max_depth: int = MAX_DEPTH
    max_aliases: int = MAX_ALIASES
    max_nodes: int = MAX_NODES


DEFAULT = Limits()


def read_bytes(path: Path | str, limits: Limits = DEFAULT) -> bytes:
    """At most `max_bytes` of the file; a larger file is refused, not truncated."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limits.max_bytes + 1)
    except OSError as exc:
        raise FileError(path, f"cannot read: {exc.strerror or exc}") from None
    if len(data) > limits.max_bytes:
        raise FileError(path, f"larger than {limits.max_bytes} bytes, the limit for this file")
    return data


def decode_utf8(path: Path | str, data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.start + 1].hex()
        raise FileError(
            path, f"not UTF-8: byte 0x{bad} at offset {exc.start} ({exc.reason}); save it as UTF-8"
        ) from None


def read_text(path: Path | str, limits: Limits = DEFAULT) -> str:
    return decode_utf8(path, read_bytes(path, limits))

# SPDX-License-Identifier: MPL-2.0
"""The one reader of a sidecar env directory: `<ID>.env` files as the mesh_proxy role writes them
for `meshkit-proxy@<ID>.service`, each read into a `Definition`.

A file defines one sidecar exactly as that unit runs it: the environment is the file's
`KEY=VALUE` lines (systemd's `EnvironmentFile=`), the arguments are
`-sidecar-for <ID> -admin-bind $MESHKIT_ADMIN_BIND $MESHKIT_PROXY_ARGS`, the last split on
whitespace as systemd splits an unquoted `$VAR`. Only `*.env` files count; anything else in the
directory (token files, editor backups) is not a sidecar.

Bounded: at most `MAX_FILES` files of at most `MAX_FILE_BYTES` and `MAX_LINES` lines each. A bad
file is an `EnvFileError` naming the file, the line and the fix; the caller decides whether
that stops the start (exit 2) or is logged while what runs keeps running (SIGHUP).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from meshkit import bounded

MAX_FILES = 1000
MAX_FILE_BYTES = 64 * 1024
MAX_LINES = 1000
SUFFIX = ".env"
# The characters systemd allows in a unit's instance name (no `\` escapes: the ID is also a file
# name and a process name here), not starting with a dot.
ID_PATTERN = re.compile(r"[A-Za-z0-9:_\-][A-Za-z0-9:_.\-]{0,199}")
KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
ADMIN_BIND = "MESHKIT_ADMIN_BIND"
PROXY_ARGS = "MESHKIT_PROXY_ARGS"
TOKEN_FILE = "CONSUL_HTTP_TOKEN_FILE"

# (inode, size, mtime_ns) of a sidecar's token file, or None when it has none or it is missing:
# what tells a rotated token from the old one without the parent ever reading a secret.
TokenStamp = tuple[int, int, int] | None


class EnvFileError(ValueError):
    """One line: `<path>:<line>: <problem>; <fix>` (no line number for whole-file problems)."""


@dataclass(frozen=True)
class Definition:
    """One sidecar: its ID, environment and arguments, and what "changed" is judged by."""

    sidecar_id: str
    path: Path
    environment: dict[str, str]
    argv: tuple[str, ...]
    content: bytes
    token_stamp: TokenStamp

    @property
    def admin_bind(self) -> str:
        return self.environment[ADMIN_BIND]

    def same_as(self, other: Definition) -> bool:
        """Same file bytes and the same token file: a running sidecar needs no restart."""
        return self.content == other.content and self.token_stamp == other.token_stamp


def valid_id(name: str) -> bool:
    return ID_PATTERN.fullmatch(name) is not None


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_env(path: Path, text: str) -> dict[str, str]:
    """systemd `EnvironmentFile=` lines: `KEY=VALUE`, blank lines, `#`/`;` comments; a value may
    be wrapped in one pair of quotes."""
    lines = text.splitlines()
    if len(lines) > MAX_LINES:
        raise EnvFileError(f"{path}: {len(lines)} lines, more than {MAX_LINES}; split it up")
    env: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            raise EnvFileError(
                f"{path}:{number}: a line continuation (trailing \\); put the value on one line"
            )
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or KEY_PATTERN.fullmatch(key) is None:
            raise EnvFileError(
                f"{path}:{number}: not a KEY=VALUE line ({raw[:60]!r}); write NAME=value, "
                "NAME of letters, digits and _ not starting with a digit"
            )
        if "\0" in value:
            raise EnvFileError(f"{path}:{number}: {key} holds a NUL byte; remove it")
        env[key] = _unquote(value.strip())
    return env


def token_stamp(environment: dict[str, str]) -> TokenStamp:
    name = environment.get(TOKEN_FILE)
    if not name:
        return None
    try:
        st = os.stat(name)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def read_file(path: Path) -> Definition:
    sidecar_id = path.name[: -len(SUFFIX)]
    if not valid_id(sidecar_id):
        raise EnvFileError(
            f"{path}: {sidecar_id!r} is not a sidecar ID; name the file <ID>.env, ID of letters, "
            "digits, ':', '_', '.' and '-' (a systemd instance name), at most 200, no leading '.'"
        )
    try:
        data = bounded.read_bytes(path, bounded.Limits(max_bytes=MAX_FILE_BYTES))
        text = bounded.decode_utf8(path, data)
    except bounded.FileError as exc:
        raise EnvFileError(str(exc)) from None
    environment = parse_env(path, text)
    admin_bind = environment.get(ADMIN_BIND, "")
    if not admin_bind:
        raise EnvFileError(
            f"{path}: no {ADMIN_BIND}=; add {ADMIN_BIND}=127.0.0.1:PORT (the sidecar's admin "
            "listener, where its /ready answers)"
        )
    argv = (
        "-sidecar-for",
        sidecar_id,
        "-admin-bind",
        admin_bind,
        *environment.get(PROXY_ARGS, "").split(),
    )
    return Definition(sidecar_id, path, environment, argv, data, token_stamp(environment))


def read_dir(directory: Path) -> dict[str, Definition]:
    """Every `*.env` file of `directory`, by sidecar ID; raises `EnvFileError` for the first bad
    one (sorted by name, so the same directory always names the same file)."""
    try:
        with os.scandir(directory) as entries:
            names = sorted(e.name for e in entries if e.name.endswith(SUFFIX) and e.is_file())
    except OSError as exc:
        raise EnvFileError(f"{directory}: cannot list: {exc.strerror or exc}") from None
    if len(names) > MAX_FILES:
        raise EnvFileError(
            f"{directory}: {len(names)} *.env files, more than {MAX_FILES}; "
            "split the sidecars over more hosts"
        )
    definitions: dict[str, Definition] = {}
    for name in names:
        definition = read_file(directory / name)
        definitions[definition.sidecar_id] = definition
    return definitions

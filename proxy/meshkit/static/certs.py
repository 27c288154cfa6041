# SPDX-License-Identifier: MPL-2.0
"""Static mode's certificate source: the cert, key and roots files, polled and fed to the store.

The counterpart of consul/certs.py (which feeds the same `CertStore` from Consul's leaf and
roots watches).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from meshkit import bounded
from meshkit.certstore import CertStore, MaterialError, TLSMaterial

log = logging.getLogger("meshkit.certs")


def split_pems(text: str) -> tuple[str, ...]:
    """Each certificate of a PEM bundle on its own."""
    out: list[str] = []
    marker = "-----END CERTIFICATE-----"
    for part in text.split(marker):
        begin = part.find("-----BEGIN CERTIFICATE-----")
        if begin >= 0:
            out.append(part[begin:] + marker + "\n")
    return tuple(out)


@dataclass(frozen=True)
class MaterialFiles:
    cert_file: Path  # leaf + intermediates
    key_file: Path
    roots_files: tuple[Path, ...]
    trust_domains: tuple[str, ...] = ()  # static mode's `tls.trust_domain` / -trust-domain

    def paths(self) -> tuple[Path, ...]:
        return (self.cert_file, self.key_file, *self.roots_files)

    def read(self) -> TLSMaterial:
        try:
            return self._read()
        except bounded.FileError as exc:  # unreadable, too large, not UTF-8
            raise MaterialError(str(exc)) from None

    def _read(self) -> TLSMaterial:
        roots: list[str] = []
        for path in self.roots_files:
            found = split_pems(bounded.read_text(path))
            if not found:
                raise MaterialError(f"{path}: no PEM certificate found")
            roots.extend(found)
        chain = bounded.read_text(self.cert_file)
        if not split_pems(chain):
            raise MaterialError(f"{self.cert_file}: no PEM certificate found")
        key = bounded.read_text(self.key_file)
        return TLSMaterial(chain, key, tuple(roots), trust_domains=self.trust_domains)


def _stamp(paths: tuple[Path, ...]) -> tuple[tuple[int, int, int, int], ...]:
    out = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append((st.st_ino, st.st_mtime_ns, st.st_size, st.st_ctime_ns))
        except FileNotFoundError:
            out.append((0, 0, 0, 0))
    return tuple(out)


class FileWatcher:
    """Poll the material files (inode, mtime, size, then content hash) and feed the store.

    Polling keeps this dependency-free and works with atomic renames, editors, and
    configuration management alike; a one-second interval bounds how stale a rotation can be.
    A change that does not load (half-written file, key not matching) is logged and retried on
    the next tick; the previous material stays in use.
    """

    def __init__(self, files: MaterialFiles, store: CertStore, interval: float = 1.0) -> None:
        self.files = files
        self.store = store
        self.interval = interval
        self._stamp: tuple[tuple[int, int, int, int], ...] = ()
        self._digest = b""
        self._task: asyncio.Task[None] | None = None

    def load_now(self) -> None:
        """First load: raises so start-up can refuse bad files with a clear message."""
        stamp = _stamp(self.files.paths())
        material = self.files.read()
        digest = _digest(material)
        self.store.update(material)
        self._stamp, self._digest = stamp, digest

    def poll(self) -> bool:
        stamp = _stamp(self.files.paths())
        if stamp == self._stamp:
            return False
        try:
            material = self.files.read()
        except (OSError, MaterialError) as exc:
            log.warning("TLS files changed but could not be read: %s", exc)
            return False
        digest = _digest(material)
        if digest == self._digest:
            self._stamp = stamp
            return False
        try:
            self.store.update(material)
        except MaterialError as exc:
            log.warning("TLS files changed but were not loaded, keeping the old ones: %s", exc)
            return False
        self._stamp, self._digest = stamp, digest
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.poll()


def _digest(material: TLSMaterial) -> bytes:
    h = hashlib.sha256()
    for part in (material.chain_pem, material.key_pem, *material.roots_pem):
        h.update(part.encode())
        h.update(b"\0")
    return h.digest()

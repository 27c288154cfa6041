# SPDX-License-Identifier: MPL-2.0
"""State persistence and the Raft-like index.

Every mutation bumps one global index (as Consul's Raft index) and records it for the
tables it touched; blocking queries compare against those. With a data dir the rows are
written through to SQLite at once, so a restart (even a crash) loses nothing; without one
the same code runs on an in-memory database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DB_NAME = "state.db"


class Notifier:
    """Wakes every waiter at once; waiters re-check their own condition."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.closed = False

    def notify(self) -> None:
        self._event.set()
        if not self.closed:
            self._event = asyncio.Event()

    def close(self) -> None:
        """Shutting down: wake every waiter for good, so each blocking query answers now with
        the state it has instead of holding the shutdown for up to its `wait` (10 min)."""
        self.closed = True
        self._event.set()

    def current(self) -> asyncio.Event:
        return self._event


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    if timeout <= 0:
        return event.is_set()
    try:
        await asyncio.wait_for(event.wait(), timeout)
    except TimeoutError:
        return False
    return True


class Store:
    """Key/value buckets of JSON rows plus the index counters."""

    def __init__(self, data_dir: Path | None) -> None:
        self.data_dir = data_dir
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            os.chmod(data_dir, 0o700)
            path = data_dir / DB_NAME
            if not path.exists():
                # The CA's keys and leaf keys live here: private from the first byte.
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
            self.db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        else:
            self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS kv (bucket TEXT NOT NULL, key TEXT NOT NULL, "
            "value TEXT NOT NULL, PRIMARY KEY (bucket, key))"
        )
        meta = self.items("meta")
        self.index: int = int(meta.get("index", 0))
        self.tables: dict[str, int] = dict(meta.get("tables", {}))
        self.notifier = Notifier()

    # -- rows ---------------------------------------------------------------------------------

    def _begin(self) -> None:
        # Rows written for one operation commit together at its bump(): on disk a change is
        # all there or not there, even if the process dies half way.
        if not self.db.in_transaction:
            self.db.execute("BEGIN")

    def commit(self) -> None:
        if self.db.in_transaction:
            self.db.execute("COMMIT")

    def put(self, bucket: str, key: str, value: Any) -> None:
        self._begin()
        self.db.execute(
            "INSERT OR REPLACE INTO kv (bucket, key, value) VALUES (?, ?, ?)",
            (bucket, key, json.dumps(value, sort_keys=True)),
        )

    def delete(self, bucket: str, key: str) -> None:
        self._begin()
        self.db.execute("DELETE FROM kv WHERE bucket = ? AND key = ?", (bucket, key))

    def items(self, bucket: str) -> dict[str, Any]:
        rows = self.db.execute("SELECT key, value FROM kv WHERE bucket = ?", (bucket,))
        return {k: json.loads(v) for k, v in rows}

    def get(self, bucket: str, key: str) -> Any:
        row = self.db.execute(
            "SELECT value FROM kv WHERE bucket = ? AND key = ?", (bucket, key)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    # -- index --------------------------------------------------------------------------------

    def bump(self, *tables: str) -> int:
        """Advance the index, stamp `tables` with it, wake blocking queries."""
        self.index += 1
        for t in tables:
            self.tables[t] = self.index
        self.put("meta", "index", self.index)
        self.put("meta", "tables", self.tables)
        self.commit()
        self.notifier.notify()
        return self.index

    def table_index(self, tables: Iterable[str]) -> int:
        """Consul never reports 0: an untouched table reads as 1."""
        return max([self.tables.get(t, 0) for t in tables] + [1])

    def close(self) -> None:
        self.commit()
        self.db.close()

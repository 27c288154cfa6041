"""meshkit.native against the real dev agent: serving, dialling, refusing, errors."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meshkit.native import Denied, DialFailed, IdentityMismatch, NoHealthyInstance, NotReady, Query
from tests.consul_mode.apps import free_port
from tests.native.support import Recorder, intention, register_native, roundtrip, run, service
from tests.support.devagent import DevAgent, dev_agent  # noqa: F401


def test_native_client_reaches_native_server_and_handler_sees_identity(dev_agent: DevAgent) -> None:
    port = free_port()
    register_native(dev_agent, "db", port)
    db_rec = Recorder("db")

    async def scenario() -> bytes:
        async with service("db", dev_agent.address) as db, service("web", dev_agent.address) as web:
            server = await db.start_server(db_rec, "127.0.0.1", port)
            async with server:
                reader, writer = await web.connect("db")
                return await roundtrip(reader, writer, b"hello")

    assert run(scenario) == b"db:hello"
    assert db_rec.peers == ["web"]

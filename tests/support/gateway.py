"""A real AI gateway for tests: its own thread and server, a real ledger, a fake provider.

``make_gateway(**settings)`` starts one against the ``fake`` provider (Anthropic's and OpenAI's
wire formats over real HTTP); ``Gateway.record`` waits for a request's ledger row. Test modules
import the fixtures by name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from moltconsole_backend.gateway.budgets import BudgetGuard
from moltconsole_backend.gateway.ledger import Ledger
from moltconsole_backend.gateway.pricing import PriceTable
from moltconsole_backend.gateway.proxy import GatewayProxy, TokenRegistry
from moltconsole_backend.gateway.server import GatewayServer, bind_tcp
from moltconsole_backend.settings import GatewaySettings, ProviderSettings
from moltconsole_shared.wire.records import Cost, RequestRecord, Usage
from tests.support.fake_llm import FakeServer

TOKEN = "sandbox-token-0123456789"
ANTHROPIC_KEY = "sk-ant-real-key-never-in-the-sandbox"
OPENAI_KEY = "sk-openai-real-key"
NANO = 1_000_000_000


@dataclass
class Gateway:
    url: str
    fake: FakeServer
    ledger: Ledger
    proxy: GatewayProxy
    records: dict[str, RequestRecord] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def record(self, request_id: str, timeout: float = 10.0) -> RequestRecord:
        """The ledger row of a request, once the ledger committed it."""
        async with asyncio.timeout(timeout):
            while request_id not in self.records:
                self.arrived.clear()
                await self.arrived.wait()
        return self.records[request_id]

    async def only_record(self, timeout: float = 10.0) -> RequestRecord:
        async with asyncio.timeout(timeout):
            while not self.records:
                self.arrived.clear()
                await self.arrived.wait()
        assert len(self.records) == 1
        return next(iter(self.records.values()))


def gateway_settings(fake_url: str, **overrides: Any) -> GatewaySettings:
    providers = {
        "anthropic": ProviderSettings(api="anthropic", base_url=fake_url, api_key_env="ANTHROPIC_API_KEY"),
        "openai": ProviderSettings(api="openai", base_url=fake_url, api_key_env="OPENAI_API_KEY"),
        "backup": ProviderSettings(api="anthropic", base_url=fake_url, api_key="sk-backup-key"),
    }
    values: dict[str, Any] = {
        "bind_address": "127.0.0.1",
        "port": 0,
        "providers": providers,
        "retry_backoff": 0.0,
    }
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    async with FakeServer() as server:
        yield server


@pytest.fixture
async def make_gateway(tmp_path: Path, fake: FakeServer) -> AsyncIterator[Callable[..., Any]]:
    made: list[tuple[GatewayServer, Ledger]] = []

    async def make(
        *, env: dict[str, str] | None = None, seed: list[RequestRecord] | None = None, **overrides: Any
    ) -> Gateway:
        settings = gateway_settings(fake.url, **overrides)
        ledger = Ledger(tmp_path / f"ledger{len(made)}.sqlite")
        ledger.open()
        for row in seed or []:
            ledger.record(row)
        ledger.flush()
        guard = BudgetGuard(settings, ledger.spend_totals)
        guard.refresh()
        proxy = GatewayProxy(
            settings,
            TokenRegistry({TOKEN: "sb1"}),
            PriceTable(settings),
            ledger.record,
            guard=guard,
            env={"ANTHROPIC_API_KEY": ANTHROPIC_KEY, "OPENAI_API_KEY": OPENAI_KEY} if env is None else env,
        )
        server = GatewayServer(proxy, bind_tcp("127.0.0.1", 0))
        server.start()
        made.append((server, ledger))
        gw = Gateway(f"http://127.0.0.1:{server.port}", fake, ledger, proxy)
        loop = asyncio.get_running_loop()

        def arrived(record: RequestRecord) -> None:
            def apply() -> None:
                gw.records[record.id] = record
                gw.arrived.set()

            loop.call_soon_threadsafe(apply)

        ledger.add_listener(arrived)
        return gw

    yield make
    for server, ledger in made:
        server.stop()
        ledger.close()


def anthropic_body(stream: bool = True, model: str = "claude-sonnet-4-6") -> dict[str, Any]:
    return {
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "messages": [{"role": "user", "content": "Say hello."}],
    }


def agent_headers(token: str = TOKEN) -> dict[str, str]:
    return {"x-api-key": token, "anthropic-version": "2023-06-01", "content-type": "application/json"}


async def post(
    url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None, timeout: float = 30.0
) -> tuple[httpx.Response, bytes]:
    async with httpx.AsyncClient(timeout=timeout) as client:
        async with client.stream(
            "POST", url + path, json=body, headers=agent_headers() if headers is None else headers
        ) as response:
            data = await response.aread()
    return response, data


class RawProvider:
    """A provider that answers every request with bytes the test wrote by hand, over real TCP.

    For what the fake provider cannot be made to do: echo the request's headers, send a stream
    that never reports its usage, send headers the gateway must not relay. ``answer`` gets the
    request's head and body and returns the whole response, or its parts to send in separate
    writes a moment apart (so they arrive as separate reads); the connection closes after it.
    """

    def __init__(self, answer: Callable[[bytes, bytes], bytes | list[bytes]]) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes]] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> RawProvider:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
            self.requests.append((head, body))
            answer = self.answer(head, body)
            for i, part in enumerate([answer] if isinstance(answer, bytes) else answer):
                if i:
                    await asyncio.sleep(0.05)
                writer.write(part)
                await writer.drain()
        finally:
            writer.close()


def sse_response(events: list[bytes], extra_headers: bytes = b"") -> bytes:
    """A close-delimited text/event-stream response carrying ``events``."""
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
        + extra_headers
        + b"\r\n"
        + b"".join(events)
    )


def priced_row(
    nanos: int, *, request_id: str = "seed", started: float | None = None, sandbox: str = "sb1"
) -> RequestRecord:
    """A finished, priced ledger row (spend already made), for budget tests."""
    return RequestRecord(
        id=request_id,
        started_at=time.time() if started is None else started,
        sandbox=sandbox,
        api="anthropic-messages",
        provider="anthropic",
        model="claude-sonnet-4-6",
        requested_model="claude-sonnet-4-6",
        stream=True,
        status=200,
        outcome="ok",
        usage=Usage(input_tokens=1, source="provider"),
        cost=Cost(total_nanos=nanos, pricing_version="test"),
    )

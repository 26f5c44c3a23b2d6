"""The console reads what the backend sends through the shared wire schemas: an answer that does
not fit is a BackendError naming the field (not a crash deep in a screen, not a silent wrong
number), and an error body that does not fit is named as such.

Fake backends on a real unix socket speak the real protocol (uvicorn for HTTP, the websockets
server for streams), with the malformed answers a buggy or mismatched backend would send.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection

from moltconsole.client import BackendClient, BackendError
from moltconsole_shared.wire.reports import SUMMARY, Summary
from moltconsole_shared.wire.sandbox import SandboxStatus
from tests.unit.test_client import _drain, ending_backend, serve_asgi
from tests.unit.test_client import socket_path as socket_path  # the fixture

SUMMARY_BODY = SUMMARY.dump(Summary(
    now=1.0, today_nanos=1, week_nanos=2, month_nanos=3, month_to_date_nanos=3, burn_rate_nanos_per_hour=0,
    requests=4, errors=0, unpriced=0, window_seconds=86400,
))


def answering(path: str, body: object, status: int = 200) -> Starlette:
    async def handle(_: Request) -> Response:
        return JSONResponse(body, status)

    return Starlette(routes=[Route(path, handle)])


async def test_a_summary_is_read_whole(socket_path: Path) -> None:
    async with serve_asgi(answering("/v1/costs/summary", SUMMARY_BODY), socket_path):
        async with BackendClient(socket_path) as client:
            summary = await client.costs_summary()
    assert summary == SUMMARY.read(SUMMARY_BODY)


async def test_money_that_is_not_whole_nanodollars_is_refused_by_name(socket_path: Path) -> None:
    body = {**SUMMARY_BODY, "today_nanos": 2.5}
    async with serve_asgi(answering("/v1/costs/summary", body), socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError) as caught:
                await client.costs_summary()
    assert "summary.today_nanos must be an integer, not 2.5" in str(caught.value)
    assert "Restart the backend" in str(caught.value)


async def test_a_models_answer_without_its_rows_is_refused_by_name(socket_path: Path) -> None:
    async with serve_asgi(answering("/v1/costs/models", {"since": 0, "until": 1}), socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match=r"models report\.models is missing"):
                await client.costs_models()


async def test_an_error_body_that_does_not_fit_falls_back_to_the_status_and_text(socket_path: Path) -> None:
    body = {"error": {"kind": "operation", "message": 5}}
    async with serve_asgi(answering("/v1/status", body, 409), socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError) as caught:
                await client.status()
    assert caught.value.status == 409 and caught.value.kind == "backend"
    assert str(caught.value).startswith("the backend answered GET /v1/status with HTTP 409: ")


async def test_a_tail_record_that_does_not_fit_names_the_field(socket_path: Path) -> None:
    async def bad_batch(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"type": "batch", "records": [{"id": "x"}], "dropped": 0}))
        await ws.close()

    async with ending_backend(socket_path, bad_batch):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match=r"tail batch\.records\[0\]\.started_at is missing"):
                await _drain(client.costs_tail())


async def test_a_stream_error_without_a_message_is_named_a_backend_bug(socket_path: Path) -> None:
    async def unexplained(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"error": {"kind": "operation"}}))
        await ws.close()

    async with ending_backend(socket_path, unexplained):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match="with an error it did not explain"):
                await _drain(client.stats())


async def test_a_status_with_a_state_this_console_does_not_know_is_named(socket_path: Path) -> None:
    body = {**SandboxStatus().to_json(), "state": "hibernating", "gateway": None}
    async with serve_asgi(answering("/v1/status", body), socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match=r"status\.state must be one of unknown, engine-down"):
                await client.status()


async def test_a_device_list_that_does_not_fit_is_named(socket_path: Path) -> None:
    async with serve_asgi(answering("/v1/devices", {"pending": {"requestId": "r"}}), socket_path):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match=r"device list\.pending must be a list, not dict"):
                await client.devices()


async def test_a_stats_sample_that_does_not_fit_is_named(socket_path: Path) -> None:
    async def bad_sample(ws: ServerConnection) -> None:
        await ws.send(json.dumps({"time": "t", "cpu_percent": "high"}))
        await ws.close()

    async with ending_backend(socket_path, bad_sample):
        async with BackendClient(socket_path) as client:
            with pytest.raises(BackendError, match=r"stats sample\.cpu_percent must be a number, not 'high'"):
                await _drain(client.stats())


async def test_event_stream_messages_are_checked_and_a_newer_kind_passes(socket_path: Path) -> None:
    weather = {"type": "weather", "sky": "clear"}  # a kind of message a newer backend might send
    bad_status = {"type": "status", "status": {"state": "ready", "restarts": "many"}}

    async def send(ws: ServerConnection) -> None:
        await ws.send(json.dumps(weather))
        await ws.send(json.dumps(bad_status))
        await ws.close()

    async with ending_backend(socket_path, send):
        async with BackendClient(socket_path) as client:
            got = []
            bad = r"event stream message\.status\.restarts must be an integer, not 'many'"
            with pytest.raises(BackendError, match=bad):
                async for message in client.events():
                    got.append(message)
    assert got == [{"type": "ready"}, weather]

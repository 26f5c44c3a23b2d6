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

"""The backend and its sandboxes as a whole (``moltconsole_shared.wire.sandboxes``).

Requests:   GET    /v1/health: the backend's identity, uptime and gateway
            GET    /v1/sandboxes: every sandbox at a glance (SandboxList)
            POST   /v1/sandboxes: add one (CreateRequest; 201 and its SandboxSummary)
            DELETE /v1/sandboxes/{name}: remove one made by create (204; its state is kept)
"""

from __future__ import annotations

import os
import time

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from moltconsole_backend.api.answers import answer, error, guarded, json_body
from moltconsole_backend.fleet import FleetError, SandboxFleet, UnknownSandbox
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.sandbox.errors import OperationError
from moltconsole_shared import __version__
from moltconsole_shared.wire.sandboxes import CREATE_REQUEST, SANDBOX_LIST, SANDBOX_SUMMARY, SandboxList
from moltconsole_shared.wire.schema import WireFormatError


def fleet_routes(fleet: SandboxFleet, gateway: GatewayService | None) -> list[BaseRoute]:
    """Health and the list of sandboxes, with adding and removing one."""
    started = time.time()

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "backend": "moltconsole",
                "version": __version__,
                "pid": os.getpid(),
                "uptime": time.time() - started,
                "gateway": gateway.status() if gateway is not None else None,
                "sandboxes": [sandbox.name for sandbox in fleet.all()],
            }
        )

    async def listing(_: Request) -> Response:
        async def run() -> Response:
            return answer(SANDBOX_LIST, SandboxList(await fleet.summaries(), fleet.default_name))

        return await guarded(run)

    async def create(request: Request) -> Response:
        body = await json_body(request)
        if isinstance(body, Response):
            return body
        try:
            wanted = CREATE_REQUEST.read(body)
        except WireFormatError as exc:
            return error("request", str(exc), 400)

        async def run() -> Response:
            try:
                sandbox = await fleet.create(wanted)
            except FleetError as exc:
                if exc.bad_value:
                    return error("request", str(exc), 400)
                return error("operation", str(exc), 409)
            except OperationError as exc:
                return error(
                    "operation",
                    f"sandbox {wanted.name!r} was added but did not start: {exc} "
                    f"('moltconsole -s {wanted.name} start' tries again)",
                    409,
                )
            summary = next(s for s in await fleet.summaries() if s.name == sandbox.name)
            return answer(SANDBOX_SUMMARY, summary, 201)

        return await guarded(run)

    async def remove(request: Request) -> Response:
        name = request.path_params["name"]

        async def run() -> Response:
            try:
                await fleet.remove(name)
            except UnknownSandbox as exc:
                return error("not_found", str(exc), 404)
            except FleetError as exc:
                return error("operation", str(exc), 409)
            return Response(status_code=204)

        return await guarded(run)

    return [
        Route("/v1/health", health),
        Route("/v1/sandboxes", listing, methods=["GET"]),
        Route("/v1/sandboxes", create, methods=["POST"]),
        Route("/v1/sandboxes/{name}", remove, methods=["DELETE"]),
    ]

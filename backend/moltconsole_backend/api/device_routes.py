"""OpenClaw's device pairing (``moltconsole_shared.wire.devices``), through its CLI in the sandbox.

Requests:   GET  /v1/devices
            POST /v1/devices/{request_id}/{approve,reject}
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from moltconsole_backend.api.answers import answered, error, guarded
from moltconsole_backend.sandbox import devices
from moltconsole_backend.sandbox.manager import SandboxManager
from moltconsole_shared.wire.devices import DEVICE_DECISION, DEVICE_LIST


def device_routes(manager: SandboxManager) -> list[BaseRoute]:
    """Pairing requests and devices of ``manager``'s sandbox."""

    async def listing(_: Request) -> Response:
        return await guarded(lambda: answered(DEVICE_LIST, devices.list_devices(manager)))

    async def decide(request: Request) -> Response:
        request_id = request.path_params["request_id"]
        decision = request.path_params["decision"]
        if decision not in ("approve", "reject"):
            return error("request", "use approve or reject", 404)
        return await guarded(lambda: answered(DEVICE_DECISION, devices.decide(manager, request_id, decision)))

    return [
        Route("/v1/devices", listing),
        Route("/v1/devices/{request_id}/{decision}", decide, methods=["POST"]),
    ]

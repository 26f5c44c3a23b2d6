"""Device pairing against the real gateway: a real client asks, the API lists, approves, rejects."""

from __future__ import annotations

import pytest

from moltconsole.client import BackendClient, BackendError
from moltconsole_backend.api.service import BackendService
from tests.conftest import SandboxEnv, wait_state
from tests.support.device_client import connect_device, request_pairing

pytestmark = pytest.mark.docker


async def test_pairing_list_approve_and_reject(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    token = (sandbox_env.settings.sandbox_dir / "secrets" / "gateway-token").read_text().strip()
    url = f"ws://127.0.0.1:{sandbox_env.settings.sandbox.gateway_port}"

    assert await client.devices() == {"pending": [], "paired": []}

    # A device outside the sandbox (this test) connects: the gateway wants it paired.
    first = await request_pairing(url, token, display_name="laptop")
    second = await request_pairing(url, token, display_name="phone")
    assert first.pairing_required and second.pairing_required
    assert first.request_id and second.request_id

    listed = await client.devices()
    pending = {entry["requestId"]: entry for entry in listed["pending"]}
    assert set(pending) == {first.request_id, second.request_id}
    assert pending[first.request_id]["displayName"] == "laptop"
    assert listed["paired"] == []

    approved = await client.decide_device(first.request_id, "approve")
    assert approved["decision"] == "approve"
    rejected = await client.decide_device(second.request_id, "reject")
    assert rejected["decision"] == "reject"

    listed = await client.devices()
    assert listed["pending"] == []
    assert [entry["deviceId"] for entry in listed["paired"]] == [first.device_id]
    # The approved device now gets in.
    again = await connect_device(url, token, first.identity)
    assert again.outcome == "connected"

    # Deciding again, or on a made-up id, says what to do.
    with pytest.raises(BackendError, match="no pending pairing request"):
        await client.decide_device(first.request_id, "approve")
    with pytest.raises(BackendError, match="not a pairing request id"):
        await client.decide_device("--all", "approve")

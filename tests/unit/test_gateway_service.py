"""GatewayService: the one owner of the sandboxes' gateway tokens, and what its status reports
(missing keys, budget state), on a real ledger and the real keys file."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from moltconsole_backend.gateway.keys import set_key
from moltconsole_backend.gateway.service import GatewayService
from moltconsole_backend.settings import BudgetSettings, GatewaySettings, SandboxSettings, Settings
from moltconsole_shared.paths import PathSettings
from moltconsole_shared.wire.status import GatewayStatus
from tests.support.gateway import priced_row

NANO = 1_000_000_000


def make_settings(root: Path, **gateway: object) -> Settings:
    return Settings(
        sandbox=SandboxSettings(name="alpha"),
        gateway=GatewaySettings(bind_address="127.0.0.1", port=0, **gateway),  # type: ignore[arg-type]
        paths=PathSettings(data_dir=root / "data", runtime_dir=root / "run"),
    )


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[GatewayService]:
    svc = GatewayService(make_settings(tmp_path), env={})
    yield svc
    await svc.stop()


def token_file(root: Path, sandbox: str) -> Path:
    return root / "data" / "sandboxes" / sandbox / "secrets" / "model-token"


async def test_token_for_creates_saves_and_registers_once(service: GatewayService, tmp_path: Path) -> None:
    token = service.token_for("alpha")
    path = token_file(tmp_path, "alpha")
    assert path.read_text().strip() == token and (path.stat().st_mode & 0o777) == 0o600
    assert service.tokens.sandbox_for(token.encode()) == "alpha"
    assert service.token_for("alpha") == token  # the saved one, still accepted
    assert service.tokens.sandbox_for(token.encode()) == "alpha"


async def test_rotate_refuses_the_old_token_at_once_and_saves_the_new(
    service: GatewayService, tmp_path: Path
) -> None:
    old = service.token_for("alpha")
    other = service.token_for("beta")
    new = service.rotate("alpha")
    assert new != old
    assert service.tokens.sandbox_for(old.encode()) is None
    assert service.tokens.sandbox_for(new.encode()) == "alpha"
    assert token_file(tmp_path, "alpha").read_text().strip() == new
    assert service.tokens.sandbox_for(other.encode()) == "beta"  # other sandboxes keep theirs
    # A backend started later knows the rotated token, not the old one.
    later = GatewayService(make_settings(tmp_path), env={})
    assert later.token_for("alpha") == new


async def test_the_gateway_block_names_missing_keys_and_sees_keys_set_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    settings = make_settings(tmp_path)
    service = GatewayService(settings)  # the real KeyEnvironment: keys file over os.environ
    try:
        status = GatewayStatus.from_json(service.status())
        assert [(m.provider, m.variable, m.command) for m in status.missing_keys] == [
            ("anthropic", "ANTHROPIC_API_KEY", "moltconsole keys set ANTHROPIC_API_KEY")
        ]
        assert status.keys_file == str(tmp_path / "data" / "keys.env")
        set_key(settings.keys_path, "ANTHROPIC_API_KEY", "sk-ant-set-after-start-0000000")
        status = GatewayStatus.from_json(service.status())
        assert status.missing_keys == [] and status.keys_file_error == ""
        assert service.env.get("ANTHROPIC_API_KEY") == "sk-ant-set-after-start-0000000"
        settings.keys_path.chmod(0o640)
        status = GatewayStatus.from_json(service.status())
        assert "chmod 600" in status.keys_file_error
        assert "sk-ant-set-after-start" not in str(service.status())
    finally:
        await service.stop()


def spend(ledger_service: GatewayService, usd: float) -> None:
    now = time.time()
    ledger_service.ledger.record(
        priced_row(round(usd * NANO), request_id=f"r{now}", started=now, sandbox="alpha")
    )
    ledger_service.ledger.flush()


@pytest.mark.parametrize(
    ("spent_usd", "level", "action", "words"),
    [
        (0.0, "ok", "allow", ""),
        (4.2, "warning", "allow", "daily overall budget 84% spent ($4.20 of $5.00)"),
        (5.1, "spent", "block", "the daily limit of $5.00 for the overall budget is spent ($5.10)"),
    ],
)
async def test_the_gateway_block_says_when_a_budget_is_spent_or_past_its_warning(
    tmp_path: Path, spent_usd: float, level: str, action: str, words: str
) -> None:
    settings = make_settings(tmp_path, budget=BudgetSettings(daily_usd=5.0))
    service = GatewayService(settings, env={"ANTHROPIC_API_KEY": "k"})
    await asyncio.to_thread(service.ledger.open)
    try:
        if spent_usd:
            await asyncio.to_thread(spend, service, spent_usd)
        await asyncio.to_thread(service.guard.refresh)
        budget = GatewayStatus.from_json(service.status()).budget
        assert (budget.level, budget.action) == (level, action)
        assert words in budget.message
    finally:
        await service.stop()


async def test_no_budget_reads_as_none(service: GatewayService) -> None:
    assert GatewayStatus.from_json(service.status()).budget.level == "none"


async def test_the_gateway_block_counts_refusals_by_reason(tmp_path: Path) -> None:
    service = GatewayService(
        make_settings(tmp_path, auth_failures_per_minute=2), env={"ANTHROPIC_API_KEY": "k"}
    )
    await service.start()
    try:
        assert service.address is not None
        url = f"http://{service.address[0]}:{service.address[1]}/v1/messages"
        async with httpx.AsyncClient() as client:
            codes = [
                (await client.post(url, json={}, headers={"x-api-key": "wrong"})).status_code
                for _ in range(3)
            ]
        assert codes == [401, 401, 429]
        refusals = GatewayStatus.from_json(service.status()).refusals
        assert (refusals["auth_refused"], refusals["auth_throttled"]) == (2, 1)
        assert refusals["connections_refused"] == 0 and refusals["bodies_bytes_held"] == 0
    finally:
        await service.stop()

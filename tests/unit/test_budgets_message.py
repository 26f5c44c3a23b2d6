"""The budget-spent message, held to the rules by which OpenClaw 2026.9.6 reads a provider's
rate-limit error (read from its classifier and measured with the real agent; the end-to-end
proof is tests/integration/test_gateway_budget_agent.py)."""

from __future__ import annotations

import re

import pytest

from moltconsole_backend.gateway.budgets import MAX_MESSAGE, spent_message

NANO = 1_000_000_000
# Words that make OpenClaw take the error for a billing failure and disable the key for 10 min+.
BILLING = re.compile(
    r"out of budget|spend(ing)? limit|payment|\b402\b|insufficient|credit|balance|billing|"
    r"overloaded|capacity|rpm|tpm|per-minute|per minute|try again in",
    re.IGNORECASE,
)


@pytest.mark.parametrize("period", ["daily", "monthly"])
@pytest.mark.parametrize("sandbox", [None, "default", "a-very-long-sandbox-name-" * 4])
def test_the_budget_message_is_shown_by_the_agent_as_written(period: str, sandbox: str | None) -> None:
    message = spent_message(period, 5 * NANO, 5 * NANO + 10_000_000, sandbox)
    assert len(message) <= MAX_MESSAGE
    assert re.search(rf"\b{period}\b", message)  # a standalone period word: no retries
    assert "resets" in message  # a reset hint: shown verbatim
    assert not BILLING.search(message), BILLING.search(message)
    assert message.startswith("moltconsole budget reached: ")

"""What the backend says about its AI gateway: where it listens, missing keys, the budget.

The wire schema of the ``gateway`` block in ``/v1/health`` and ``/v1/status``, shared by the
backend (which fills it) and the console and CLI (which show it). ``from_json`` is lenient
about blocks from an older backend: a missing field reads as "nothing to report".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

BudgetLevel = Literal["none", "ok", "warning", "spent"]
BudgetAction = Literal["allow", "block", "fallback"]


@dataclass(frozen=True, slots=True)
class MissingKey:
    """A provider the agent can reach whose credential the backend cannot find."""

    provider: str
    variable: str  # the variable to set; "" when the provider names none
    command: str  # what to run to fix it ("" when the config must change first)
    message: str  # one sentence naming the provider, the variable and the fix

    def to_json(self) -> dict[str, str]:
        """The wire form."""
        return {
            "provider": self.provider, "variable": self.variable, "command": self.command,
            "message": self.message,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MissingKey:
        """Read the wire form."""
        return cls(
            provider=str(data.get("provider") or "?"), variable=str(data.get("variable") or ""),
            command=str(data.get("command") or ""), message=str(data.get("message") or ""),
        )


@dataclass(frozen=True, slots=True)
class BudgetState:
    """Where the sandbox's spend stands against its budgets right now.

    ``level``: ``none`` (no budget set), ``ok``, ``warning`` (past ``budget_warn_percent``) or
    ``spent`` (a limit is reached: requests are blocked or served by the fallback model, as
    ``action`` says). ``message`` has the numbers and, once spent, what to do.
    """

    level: BudgetLevel = "none"
    action: BudgetAction = "allow"
    message: str = ""
    summary: str = ""  # once spent: one short line (period, numbers, the setting to raise)

    def to_json(self) -> dict[str, str]:
        """The wire form."""
        return {"level": self.level, "action": self.action, "message": self.message, "summary": self.summary}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> BudgetState:
        """Read the wire form (None: an older backend that does not say)."""
        if not data:
            return cls()
        level = data.get("level")
        action = data.get("action")
        return cls(
            level=level if level in ("none", "ok", "warning", "spent") else "none",
            action=action if action in ("allow", "block", "fallback") else "allow",
            message=str(data.get("message") or ""),
            summary=str(data.get("summary") or ""),
        )


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    """The ``gateway`` block of the backend's health and status."""

    enabled: bool
    listening: str | None = None  # host:port, None while not serving
    keys_file: str = ""
    keys_file_error: str = ""  # why the keys file is not read (bad mode, owner, syntax)
    missing_keys: list[MissingKey] = field(default_factory=list)
    budget: BudgetState = field(default_factory=BudgetState)
    # Requests and connections refused since the gateway started, by reason (bad tokens, the
    # limits of its HTTP server), and what it holds now (open connections, body bytes).
    refusals: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The wire form."""
        return {
            "enabled": self.enabled,
            "listening": self.listening,
            "keys_file": self.keys_file,
            "keys_file_error": self.keys_file_error,
            "missing_keys": [m.to_json() for m in self.missing_keys],
            "budget": self.budget.to_json(),
            "refusals": dict(self.refusals),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> GatewayStatus:
        """Read the wire form (None or empty: a backend without a gateway)."""
        if not data:
            return cls(enabled=False)
        return cls(
            enabled=bool(data.get("enabled")),
            listening=data.get("listening") or None,
            keys_file=str(data.get("keys_file") or ""),
            keys_file_error=str(data.get("keys_file_error") or ""),
            missing_keys=[MissingKey.from_json(m) for m in data.get("missing_keys") or []
                          if isinstance(m, dict)],
            budget=BudgetState.from_json(data.get("budget")),
            refusals={
                str(k): int(v)
                for k, v in (data.get("refusals") or {}).items()
                if isinstance(v, int) and not isinstance(v, bool)
            },
        )

    def problems(self) -> list[tuple[str, str]]:
        """What needs the user's attention, as (severity, one line): ``error`` or ``warning``."""
        out: list[tuple[str, str]] = []
        if self.keys_file_error:
            out.append(("error", self.keys_file_error))
        out += [("error", m.message) for m in self.missing_keys]
        if self.budget.level == "spent":
            out.append(("error", budget_line(self.budget)))
        elif self.budget.level == "warning":
            out.append(("warning", budget_line(self.budget)))
        return out


def budget_line(budget: BudgetState) -> str:
    """One line for a budget that is spent or past its warning threshold."""
    if budget.level == "spent" and budget.summary:
        return budget.summary
    if budget.level == "spent":
        effect = "requests are blocked" if budget.action == "block" else (
            "requests go to the budget fallback model"
        )
        reason = budget.summary or budget.message.removeprefix("moltconsole budget reached: ")
        return f"budget spent, {effect}: {reason}"
    if budget.level == "warning":
        return f"budget warning: {budget.message}"
    return ""

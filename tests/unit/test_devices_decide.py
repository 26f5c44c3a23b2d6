"""Device decisions refuse odd ids and report the OpenClaw CLI's failures briefly and inertly."""

from __future__ import annotations

from typing import cast

import pytest

from moltconsole_backend.sandbox import devices
from moltconsole_backend.sandbox.manager import OperationError, SandboxManager


class NoExecManager:
    """A manager whose exec must not be reached."""

    async def exec(self, cmd: list[str]) -> tuple[int, str, str]:
        raise AssertionError(f"exec ran: {cmd}")


async def test_device_request_id_with_a_trailing_newline_is_refused() -> None:
    manager = cast(SandboxManager, NoExecManager())
    with pytest.raises(OperationError, match="is not a pairing request id"):
        await devices.decide(manager, "req-1\n", "approve")


def test_cli_failure_brief_keeps_the_last_lines_inert_and_apart() -> None:
    text = "banner\n\nstep 1\nstep 2\x1b[31m\nError: gateway closed\n\n"
    assert devices._brief(text) == "step 1 | step 2\u241b[31m | Error: gateway closed"


def test_cli_failure_brief_keeps_the_end_of_a_long_output() -> None:
    brief = devices._brief("x" * 2000 + " Error: the real cause")
    assert len(brief) == devices.BRIEF_MAX
    assert brief.endswith("Error: the real cause")


def test_cli_failure_brief_of_no_output() -> None:
    assert devices._brief(" \n\n") == "(no output)"

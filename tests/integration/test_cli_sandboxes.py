"""``moltconsole ls``, ``create``, ``-s NAME status`` and ``remove`` end to end: the real CLI in
a subprocess against the real backend in-process, on its unix socket. ``create --no-start``
makes no container, so no sandbox starts here; the engine is still asked (the backend opens
every sandbox, and ``remove`` destroys whatever container the name has).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

import pytest

from moltconsole.client import BackendClient
from moltconsole_backend.api.service import BackendService
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK
from tests.conftest import SandboxEnv

pytestmark = pytest.mark.docker
GUARD = 60.0  # one CLI run, imports included, on a busy machine


async def moltconsole(env: SandboxEnv, *argv: str) -> tuple[int, str, str]:
    """Run the ``moltconsole`` CLI with the test's config; its exit code, stdout and stderr."""
    environ = {k: v for k, v in os.environ.items() if k != "MOLTCONSOLE_SANDBOX"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltconsole", "--config", str(env.write_config()), *argv,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=environ,
    )
    out, err = await asyncio.wait_for(process.communicate(), GUARD)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_ls_create_status_remove_end_to_end(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
) -> None:
    default = sandbox_env.settings.sandbox.name
    name = f"x{uuid.uuid4().hex[:8]}"  # containers are named after sandboxes: none to collide with

    code, out, err = await moltconsole(sandbox_env, "ls")
    assert code == EXIT_OK, err
    rows = out.splitlines()[1:-1]
    assert [row.split()[:3] for row in rows] == [[default, "*", "absent"]]

    code, out, err = await moltconsole(sandbox_env, "create", name, "--memory", "3g", "--no-start")
    assert code == EXIT_OK, err
    port = sandbox_env.settings.sandbox.gateway_port + 1  # the first free one above the others'
    assert out.startswith(f"created sandbox {name}: openclaw 2026.9.6, gateway port {port}, "
                          "memory limit 3g\n")
    assert f"start it with: moltconsole -s {name} start" in out

    code, out, err = await moltconsole(sandbox_env, "ls")
    assert code == EXIT_OK, err
    assert [row.split()[0] for row in out.splitlines()[1:-1]] == [default, name]

    code, out, err = await moltconsole(sandbox_env, "-s", name, "status")
    assert code == EXIT_OK, err
    assert out.startswith(f"sandbox    {name}\nstate      absent")
    state_dir = next(line.split(maxsplit=2)[2] for line in out.splitlines() if line.startswith("state dir"))
    assert name in state_dir and default not in state_dir

    code, out, err = await moltconsole(sandbox_env, "status")
    assert code == EXIT_OK, err
    assert out.startswith(f"sandbox    {default}, the default of 2 ('moltconsole ls' lists them)\n")

    # What the backend refuses, in its words, exit 1.
    code, _, err = await moltconsole(sandbox_env, "create", name, "--no-start")
    assert (code, err) == (EXIT_FAILED, f"moltconsole: there is already a sandbox called {name!r}; "
                                        "choose another name\n")
    code, _, err = await moltconsole(sandbox_env, "remove", default, "--yes")
    assert code == EXIT_FAILED and "is declared in the config file ([sandbox])" in err

    code, out, err = await moltconsole(sandbox_env, "remove", name, "--yes")
    assert code == EXIT_OK, err
    assert out == (f"removed sandbox {name}\n"
                   f"kept: {state_dir} ('moltconsole create {name}' takes it up again)\n")
    code, _, err = await moltconsole(sandbox_env, "status", "-s", name)
    assert code == EXIT_FAILED and f"there is no sandbox called {name!r}" in err

    # Created again, it takes up the state directory that was kept.
    code, _, err = await moltconsole(sandbox_env, "create", name, "--no-start")
    assert code == EXIT_OK, err
    code, out, err = await moltconsole(sandbox_env, "status", "-s", name, "--json")
    assert code == EXIT_OK, err
    assert f'"state_dir": "{state_dir}"' in out
    code, _, err = await moltconsole(sandbox_env, "remove", name, "--yes")
    assert code == EXIT_OK, err

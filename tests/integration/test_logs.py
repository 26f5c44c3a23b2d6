"""The log pipeline end to end: the real gateway's output through the spool and /v1/logs."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import pytest

from moltconsole.client import BackendClient, BackendWentAway
from moltconsole_backend.api.service import BackendService
from tests.conftest import SandboxEnv, wait_state

pytestmark = pytest.mark.docker
Record = dict[str, Any]


async def collect_until(
    client: BackendClient, done: Callable[[list[Record]], bool], timeout: float = 60.0,
    **query: Any,
) -> list[Record]:
    """Follow /v1/logs until ``done(records so far)``."""
    records: list[Record] = []

    async def follow() -> list[Record]:
        async for message in client.logs(follow=True, **query):
            assert message.get("dropped", 0) == 0
            records.extend(message.get("records", []))
            if done(records):
                return records
        raise AssertionError("the log stream ended")

    try:
        return await asyncio.wait_for(follow(), timeout)
    except TimeoutError:
        raise AssertionError(f"not seen within {timeout}s; last records: {records[-5:]}") from None


async def history(client: BackendClient, **query: Any) -> list[Record]:
    """Everything the backend has, without following."""
    records: list[Record] = []
    caught_up = False
    async for message in client.logs(follow=False, **query):
        if message["type"] == "caught_up":
            caught_up = True
        records.extend(message.get("records", []))
    assert caught_up
    return records


def write_to_stdout(docker_client: docker.DockerClient, env: SandboxEnv, script: str) -> None:
    """Write to the gateway's own stdout, as if it had logged it."""
    container = docker_client.containers.get(env.container_name)
    code, output = container.exec_run(["sh", "-c", f"{script} > /proc/1/fd/1"])
    assert code == 0, output


async def cli(env: SandboxEnv, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltconsole", "--config", str(env.write_config()), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_gateway_lines_arrive_parsed_with_levels_and_subsystems(
    backend: tuple[BackendService, BackendClient],
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")

    def seen_ready(records: list[Record]) -> bool:
        return any(r["message"] == "gateway ready" for r in records) and any(
            "binding to a non-loopback address" in r["message"] for r in records)

    records = await collect_until(client, seen_ready, timeout=90)
    from_file = [r for r in records if r["source"] == "file"]
    assert from_file and all(r["level"] for r in from_file)
    assert {"info"} <= {r["level"] for r in from_file}
    assert "gateway/channels" in {r["subsystem"] for r in from_file}
    first = from_file[0]
    assert first["raw"].startswith("{") and first["message"] in first["raw"]
    # OpenClaw prints each of these on its console too; they are kept once, from the file.
    binding = [r for r in records if "binding to a non-loopback address" in r["message"]]
    assert [(r["source"], r["level"], r["subsystem"]) for r in binding] == [("file", "warn", "gateway")]
    assert [r["source"] for r in records if r["message"].endswith("ready")] == ["file"]
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs))
    assert all(abs(r["time"] - records[0]["time"]) < 600 for r in records)


async def test_every_event_is_kept_once_in_time_order(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    """Both sources of a real gateway's start, restart and stop, against what each carried."""
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    # Lines only the console has: plain, and one that looks like OpenClaw's (a [tag]).
    await asyncio.to_thread(
        write_to_stdout, docker_client, sandbox_env,
        r"printf 'ONCEMARK plain\n[oncemark] tagged, with no twin in the file\n'",
    )
    await client.action("restart")
    await wait_state(client, "ready")

    def both_runs_ready(records: list[Record]) -> bool:
        return sum(1 for r in records if r["message"] == "gateway ready") >= 2

    await collect_until(client, both_runs_ready, timeout=120)
    await client.action("stop")
    await wait_state(client, "stopped")
    container = docker_client.containers.get(sandbox_env.container_name)
    console = [
        line for stream in ("stdout", "stderr")
        for line in container.logs(stdout=stream == "stdout", stderr=stream == "stderr")
        .decode().splitlines()
    ]
    log_file = sandbox_env.settings.sandbox_dir / "logs" / "openclaw.log"
    file_lines = log_file.read_text(encoding="utf-8").splitlines()

    def kept_all(records: list[Record]) -> bool:
        return sum(1 for r in records if r["source"] == "file") >= len(file_lines)

    records = await collect_until(client, kept_all, timeout=30, tail=100_000)
    # Every record of the log file, each once.
    assert sorted(r["raw"] for r in records if r["source"] == "file") == sorted(file_lines)
    # Of the console, only the two lines the file does not have, each once: OpenClaw printed
    # every other line (tens of them, on both streams) to its log file as well.
    assert len(console) > 20
    from_console = [r["raw"] for r in records if r["source"] != "file"]
    assert sorted(from_console) == ["ONCEMARK plain", "[oncemark] tagged, with no twin in the file"]
    times = [r["time"] for r in records]
    assert times == sorted(times)

    # Where a line came from can be asked for.
    code, out, err = await cli(sandbox_env, "logs", "--source", "console")
    assert code == 0, err
    assert [line.split(maxsplit=3)[3] for line in out.splitlines()] == [
        "ONCEMARK plain", "tagged, with no twin in the file"]  # each message, after its subsystem
    code, out, err = await cli(sandbox_env, "logs", "--source", "file", "--grep", "ONCEMARK|oncemark")
    assert (code, out) == (0, ""), err
    code, out, err = await cli(sandbox_env, "logs", "--source", "journal")
    assert code == 2 and "invalid choice: 'journal'" in err


async def test_escape_sequences_are_kept_raw_and_printed_inert(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    # A colour, a window title and a clipboard write (OSC 52) in one line.
    await asyncio.to_thread(
        write_to_stdout, docker_client, sandbox_env,
        r"printf '\033[31m[evil] ESCMARK\033]0;pwned\007\033]52;c;aGk=\007 done\033[0m\n'",
    )
    records = await collect_until(
        client, lambda rs: any("ESCMARK" in r["message"] for r in rs), grep="ESCMARK", tail=10,
    )
    record = next(r for r in records if "ESCMARK" in r["message"])
    assert "\x1b]52;c;aGk=\x07" in record["raw"]  # stored verbatim
    assert "\x1b" not in record["message"] and record["subsystem"] == "evil"
    assert record["message"] == "ESCMARK done"

    code, out, err = await cli(sandbox_env, "logs", "--grep", "ESCMARK")
    assert code == 0, err
    assert "evil ESCMARK done" in out and "\x1b" not in out and "\x07" not in out
    code, out, err = await cli(sandbox_env, "logs", "--grep", "ESCMARK", "--json")
    assert code == 0, err
    assert "\\u001b]52;c;aGk=" in out and "\x1b" not in out


async def test_cli_tail_grep_and_bad_regex(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
    docker_client: docker.DockerClient,
) -> None:
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    await asyncio.to_thread(
        write_to_stdout, docker_client, sandbox_env,
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo \"TAILMARK line $i\"; done",
    )
    await collect_until(client, lambda rs: any("TAILMARK line 10" in r["message"] for r in rs),
                        grep="TAILMARK", tail=1)

    code, out, err = await cli(sandbox_env, "logs", "--grep", r"TAILMARK line \d+$", "--tail", "3")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split(maxsplit=3)[3] for line in lines] == [
        "TAILMARK line 8", "TAILMARK line 9", "TAILMARK line 10"]
    assert lines[0].split()[1] == "INFO"  # what OpenClaw prints on stdout is info

    code, out, err = await cli(sandbox_env, "logs", "--since", "10m", "--grep", "line 1$")
    assert code == 0 and out.count("TAILMARK") == 1, (out, err)

    code, out, err = await cli(sandbox_env, "logs", "--grep", "(unclosed")
    assert code == 2 and "not a valid regular expression" in err and not out
    code, out, err = await cli(sandbox_env, "logs", "--since", "yesterday")
    assert code == 2 and "--since" in err


async def test_history_survives_backend_restarts_without_duplicates(
    sandbox_env: SandboxEnv, docker_client: docker.DockerClient,
) -> None:
    settings = sandbox_env.settings
    async with BackendService(settings) as service:
        async with BackendClient(service.socket_path) as client:
            await client.action("start")
            await wait_state(client, "ready")
            await asyncio.to_thread(write_to_stdout, docker_client, sandbox_env,
                                    "for i in 1 2 3; do echo \"RESTARTMARK before $i\"; done")
            await collect_until(client, lambda rs: any("before 3" in r["message"] for r in rs),
                                grep="RESTARTMARK")
    # Written while no backend runs, and a container restart while it is away.
    await asyncio.to_thread(write_to_stdout, docker_client, sandbox_env,
                            "for i in 1 2 3; do echo \"RESTARTMARK while-away $i\"; done")
    await asyncio.to_thread(docker_client.containers.get(sandbox_env.container_name).restart,
                            timeout=30)
    async with BackendService(settings) as service:
        async with BackendClient(service.socket_path) as client:
            await wait_state(client, "ready")
            await asyncio.to_thread(write_to_stdout, docker_client, sandbox_env,
                                    "for i in 1 2 3; do echo \"RESTARTMARK after $i\"; done")
            await collect_until(client, lambda rs: any("after 3" in r["message"] for r in rs),
                                grep="RESTARTMARK")

            # The file tailer may still be reading the second run's lines; wait for its ready line.
            def both_ready(rs: list[Record]) -> bool:
                return sum(1 for r in rs if r["source"] == "file" and r["message"] == "gateway ready") >= 2

            await collect_until(client, both_ready)
            records = await history(client)
    marks = [r["message"] for r in records if "RESTARTMARK" in r["message"]]
    assert marks == [f"RESTARTMARK {phase} {i}" for phase in ("before", "while-away", "after")
                     for i in (1, 2, 3)]
    seqs = [r["seq"] for r in records]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # continuous across restarts
    file_lines = [r["raw"] for r in records if r["source"] == "file"]
    assert len(file_lines) == len(set(file_lines))  # the file was not read twice
    # The file's lines from both gateway runs are there (two "gateway ready" lines).
    assert sum(1 for r in records if r["source"] == "file" and r["message"] == "gateway ready") == 2
    assert (Path(settings.sandbox_dir) / "log-spool" / "sources.cursor").exists()


async def test_cli_follow_prints_live_lines_and_ctrl_c_exits_130_quietly(
    backend: tuple[BackendService, BackendClient], sandbox_env: SandboxEnv,
) -> None:
    import signal

    from moltconsole_backend.logs.record import Record

    service, _ = backend
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "moltconsole", "--config", str(sandbox_env.write_config()),
        "logs", "-f", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None

    async def feed_until_printed() -> bytes:
        # Fed straight into the collector: the CLI may subscribe before or after any one
        # record, so keep feeding until one shows up.
        assert process.stdout is not None
        reading = asyncio.ensure_future(process.stdout.readline())
        while True:
            service.logs.ingest([Record(time=1.0, level="warn", subsystem="cli-test",
                                        message="live line", source="stdout", raw="x")], {})
            done, _ = await asyncio.wait({reading}, timeout=0.2)
            if done:
                return reading.result()

    line = await asyncio.wait_for(feed_until_printed(), 30)
    assert line.decode().split(maxsplit=1)[1] == "WARN  cli-test live line\n"
    # The rest of its output and its errors are read while it exits: a full pipe would hold
    # its exit up (it flushes what it printed before it goes).
    rest = asyncio.ensure_future(process.stdout.read())
    errors = asyncio.ensure_future(process.stderr.read())
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 30) == 130
    await rest
    assert await errors == b""


async def test_a_follower_does_not_hold_up_a_backend_stop(sandbox_env: SandboxEnv) -> None:
    import time

    service = BackendService(sandbox_env.settings)
    await service.start()
    async with BackendClient(service.socket_path) as client:
        stream = client.logs(follow=True)
        assert (await anext(stream))["type"] == "caught_up"
        started = time.monotonic()
        await asyncio.wait_for(service.stop(), 10)
        assert time.monotonic() - started < 5
        # The client is told the backend went away, shutting down, rather than hang.
        with pytest.raises(BackendWentAway, match="shutting down"):
            await asyncio.wait_for(anext(stream, None), 10)

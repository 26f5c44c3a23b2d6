"""Several sandboxes from the command line: ``-s NAME`` on every verb that addresses one, and
``ls``, ``create``, ``remove``, against a fake backend that speaks the fleet's API on a unix
socket (the real parser, the real client, the paths it asks for are recorded). No Docker.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from moltconsole import cli
from moltconsole.cli import costs, sandboxes
from moltconsole.cli.choice import SANDBOX_ENV
from moltconsole.cli.parser import build_parser
from moltconsole.cli.sandboxes import format_sandboxes
from moltconsole.client import BackendClient
from moltconsole.settings import load_settings
from moltconsole_shared.commands import EXIT_FAILED, EXIT_NO_BACKEND, EXIT_OK, EXIT_USAGE
from moltconsole_shared.wire.errors import error_body
from moltconsole_shared.wire.sandbox import SandboxState, SandboxStatus
from moltconsole_shared.wire.sandboxes import SANDBOX_LIST, SANDBOX_SUMMARY, SandboxList, SandboxSummary
from tests.unit.test_cli import ContextClient, _Tty
from tests.unit.test_cost_routes import serve_in_thread

NOW = 1_800_000_000.0


def summary(name: str, *, default: bool = False, origin: str = "created", state: str = "stopped",
            **figures: Any) -> SandboxSummary:
    """A sandbox as ``/v1/sandboxes`` lists it."""
    return SandboxSummary(
        name=name, default=default, origin=origin,  # type: ignore[arg-type]
        openclaw_version="2026.9.6", gateway_port=18789, memory_limit="2g",
        status=SandboxStatus(state=SandboxState(state)), **figures,
    )


class FleetBackend:
    """The backend's sandbox API, faked: a list of sandboxes, create and remove with the
    backend's refusals, each sandbox's status, processes and operations by name (the default's
    also at the first paths); unknown names answer 404 naming the known ones."""

    def __init__(self, *names: str) -> None:
        self.fleet: dict[str, SandboxSummary] = {"main": summary("main", default=True, origin="config")}
        for name in names:
            self.fleet[name] = summary(name)
        self.paths: list[str] = []  # "METHOD /path" of every request, in order
        self.created: list[dict[str, Any]] = []
        self.gateway = False  # whether status has an AI gateway that is on
        self.spend_asked: list[str | None] = []  # the sandbox of each costs summary asked for

    def status_of(self, name: str) -> dict[str, Any]:
        gateway = {"enabled": True, "listening": "127.0.0.1:18790"} if self.gateway else {"enabled": False}
        return {"state": "stopped", "desired": "stopped", "reason": "", "restarts": 0,
                "state_dir": f"/srv/moltconsole/sandboxes/{name}", "gateway": gateway}

    def unknown(self, name: str) -> Response:
        known = ", ".join(self.fleet)
        return JSONResponse(error_body("not_found", f"no sandbox named {name}; there are: {known}"), 404)

    def app(self) -> Any:
        async def health(_: Request) -> Response:
            return JSONResponse({"backend": "moltconsole", "pid": 1})

        async def listing(_: Request) -> Response:
            return JSONResponse(SANDBOX_LIST.dump(SandboxList(list(self.fleet.values()), "main")))

        async def create(request: Request) -> Response:
            body = await request.json()
            self.created.append(body)
            if body["name"] in self.fleet:
                return JSONResponse(error_body(
                    "operation", f"a sandbox named {body['name']} exists already; pick another name"), 409)
            self.fleet[body["name"]] = summary(body["name"])
            return JSONResponse(SANDBOX_SUMMARY.dump(self.fleet[body["name"]]), 201)

        async def remove(request: Request) -> Response:
            name = request.path_params["name"]
            if name not in self.fleet:
                return self.unknown(name)
            if self.fleet[name].origin == "config":
                return JSONResponse(error_body(
                    "operation", f"sandbox {name} is declared in the config file; remove its "
                    f"[sandboxes.{name}] section there instead"), 409)
            del self.fleet[name]
            return Response(status_code=204)

        def named(request: Request) -> str:
            return str(request.path_params.get("name", "main"))

        async def status(request: Request) -> Response:
            name = named(request)
            return JSONResponse(self.status_of(name)) if name in self.fleet else self.unknown(name)

        async def processes(request: Request) -> Response:
            name = named(request)
            if name not in self.fleet:
                return self.unknown(name)
            return JSONResponse({"titles": ["PID", "CMD"], "processes": [["1", f"node {name}"]]})

        async def action(request: Request) -> Response:
            name = named(request)
            return JSONResponse(self.status_of(name)) if name in self.fleet else self.unknown(name)

        async def spend(request: Request) -> Response:
            self.spend_asked.append(request.query_params.get("sandbox"))
            return JSONResponse({
                "now": NOW, "today_nanos": 12_300_000, "week_nanos": 0, "month_nanos": 0,
                "month_to_date_nanos": 0, "burn_rate_nanos_per_hour": 0.0, "requests": 0,
                "errors": 0, "unpriced": 0, "window_seconds": 86400.0,
            })

        routes = Starlette(routes=[
            Route("/v1/health", health), Route("/v1/costs/summary", spend), Route("/v1/sandboxes", listing),
            Route("/v1/sandboxes", create, methods=["POST"]),
            Route("/v1/sandboxes/{name}", remove, methods=["DELETE"]),
            Route("/v1/status", status), Route("/v1/sandboxes/{name}/status", status),
            Route("/v1/sandbox/processes", processes), Route("/v1/sandboxes/{name}/processes", processes),
            Route("/v1/sandbox/{action}", action, methods=["POST"]),
            Route("/v1/sandboxes/{name}/{action}", action, methods=["POST"]),
        ])

        async def recorded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                self.paths.append(f"{scope['method']} {scope['path']}")
            await routes(scope, receive, send)

        return recorded


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory with a path short enough for a unix socket."""
    path = Path(tempfile.mkdtemp(prefix="mc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def config(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config file keeping every path under ``root``, and no sandbox chosen by the environment."""
    monkeypatch.delenv(SANDBOX_ENV, raising=False)
    path = root / "config.toml"
    path.write_text(f'[paths]\ndata_dir = "{root}/data"\ncache_dir = "{root}/cache"\n'
                    f'runtime_dir = "{root}/run"\n')
    return path


@pytest.fixture
def fleet(config: Path) -> Iterator[FleetBackend]:
    """A fake backend with sandboxes ``main`` (the default, from the config) and ``work``,
    serving on the socket ``config`` points at."""
    backend = FleetBackend("work")
    socket_path = load_settings(config).socket_path
    socket_path.parent.mkdir(parents=True)
    with serve_in_thread(backend.app(), socket_path):
        yield backend


def moltconsole(config: Path, *argv: str) -> int:
    return cli.main(["--config", str(config), *argv])


# --- -s NAME: parsing -----------------------------------------------------------------------
@pytest.mark.parametrize("argv", [
    ["-s", "work", "status"], ["status", "-s", "work"], ["--sandbox", "work", "status"],
    ["status", "--sandbox=work"], ["-s", "work", "logs", "-f"], ["logs", "-f", "-s", "work"],
    ["-s", "work", "start"], ["stop", "-s", "work"], ["restart", "-s", "work", "--no-wait"],
    ["destroy", "-s", "work", "--yes"], ["rebuild", "-s", "work", "--version", "2026.9.6"],
    ["rotate-token", "-s", "work"], ["ps", "-s", "work"], ["exec", "-s", "work", "--", "ls"],
    ["devices", "approve", "r1", "-s", "work"], ["costs", "-s", "work"], ["-s", "work"],
])
def test_sandbox_is_taken_before_or_after_the_verb(argv: list[str]) -> None:
    assert build_parser().parse_args(argv).sandbox == "work"


def test_sandbox_after_the_verb_wins_over_the_one_before() -> None:
    assert build_parser().parse_args(["-s", "main", "status", "-s", "work"]).sandbox == "work"


def test_sandbox_after_exec_double_dash_belongs_to_the_command() -> None:
    args = build_parser().parse_args(["exec", "--", "grep", "-s", "x"])
    assert args.sandbox is None and args.argv == ["--", "grep", "-s", "x"]


@pytest.mark.parametrize("name", ["Work", "-work", "my_box", "a" * 32, "", "wörk", "a b"])
@pytest.mark.parametrize("where", ["before", "after", "create"])
def test_bad_sandbox_name_is_a_usage_error_before_anything_connects(
    config: Path, capsys: pytest.CaptureFixture[str], name: str, where: str,
) -> None:
    # "=" and "--": a name starting with "-" would otherwise read as an option.
    argv = {"before": [f"--sandbox={name}", "status"], "after": ["status", f"--sandbox={name}"],
            "create": ["create", "--no-start", "--", name]}[where]
    with pytest.raises(SystemExit) as exited:
        moltconsole(config, *argv)  # no backend runs: a connection would exit 3, not 2
    assert exited.value.code == EXIT_USAGE
    assert "1-31 lowercase letters, digits or '-', starting with a letter or digit" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["-s", "work", "serve"], ["-s", "work", "keys", "ls"]])
def test_backend_verbs_refuse_s_instead_of_handing_it_over(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str],
) -> None:
    monkeypatch.setattr("moltconsole.cli.handover.run_backend_cli", lambda argv: pytest.fail("handed over"))
    with pytest.raises(SystemExit) as exited:
        moltconsole(config, *argv)
    assert exited.value.code == EXIT_USAGE
    assert "is the whole backend's, not one sandbox's: leave out -s" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a", "0", "work-2", "a" * 31])
def test_good_sandbox_names_parse(name: str) -> None:
    assert build_parser().parse_args(["status", "-s", name]).sandbox == name


# --- -s NAME: each verb addresses the chosen sandbox ----------------------------------------
@pytest.mark.parametrize(("argv", "path"), [
    (["-s", "work", "status"], "GET /v1/sandboxes/work/status"),
    (["status", "-s", "work"], "GET /v1/sandboxes/work/status"),
    (["ps", "-s", "work"], "GET /v1/sandboxes/work/processes"),
    (["-s", "work", "stop"], "POST /v1/sandboxes/work/stop"),
    (["destroy", "--yes", "-s", "work"], "POST /v1/sandboxes/work/destroy"),
    (["ps"], "GET /v1/sandbox/processes"),
    (["status"], "GET /v1/status"),
])
def test_verbs_address_the_chosen_sandbox(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], path: str,
) -> None:
    assert moltconsole(config, *argv) == EXIT_OK
    assert path in fleet.paths
    assert not [p for p in fleet.paths if "/work/" in p and "work" not in argv]


def test_environment_chooses_the_sandbox_and_s_overrides_it(
    fleet: FleetBackend, config: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(SANDBOX_ENV, "work")
    assert moltconsole(config, "ps") == EXIT_OK
    assert moltconsole(config, "ps", "-s", "main") == EXIT_OK
    assert fleet.paths == ["GET /v1/health", "GET /v1/sandboxes/work/processes",
                           "GET /v1/health", "GET /v1/sandboxes/main/processes"]


def test_bad_name_in_the_environment_is_a_usage_error_naming_it(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(SANDBOX_ENV, "Work")
    with pytest.raises(SystemExit) as exited:
        moltconsole(config, "ps")
    assert exited.value.code == EXIT_USAGE
    assert f"{SANDBOX_ENV}: 'Work' is not a sandbox name" in capsys.readouterr().err


def test_costs_without_s_shows_all_sandboxes_whatever_the_environment_says(
    config: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str | None] = []

    async def fake_print_costs(client: BackendClient, args: Any) -> int:
        asked.append(args.sandbox)
        return EXIT_OK

    async def fake_ensure_backend(settings: Any) -> ContextClient:
        return ContextClient()

    monkeypatch.setattr(costs, "print_costs", fake_print_costs)
    monkeypatch.setattr("moltconsole.launcher.ensure_backend", fake_ensure_backend)
    monkeypatch.setenv(SANDBOX_ENV, "work")
    assert moltconsole(config, "costs") == EXIT_OK
    assert moltconsole(config, "-s", "main", "costs") == EXIT_OK
    assert moltconsole(config, "costs", "-s", "work") == EXIT_OK
    assert asked == [None, "main", "work"]


def test_unknown_sandbox_is_refused_in_the_backends_words(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "-s", "nope", "ps") == EXIT_FAILED
    assert "no sandbox named nope; there are: main, work" in capsys.readouterr().err


# --- status ---------------------------------------------------------------------------------
def test_status_of_a_named_sandbox_says_which(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "status", "-s", "work") == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("sandbox    work\nstate      stopped  (stopped wanted)\n")
    assert "GET /v1/sandboxes" not in fleet.paths  # no need for the list


def test_status_without_s_says_how_many_sandboxes_there_are(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    fleet.fleet["play"] = summary("play")
    assert moltconsole(config, "status") == EXIT_OK
    assert capsys.readouterr().out.startswith(
        "sandbox    main, the default of 3 ('moltconsole ls' lists them)\n"
        "state      stopped  (stopped wanted)\n"
    )


@pytest.mark.parametrize(("argv", "spender"), [
    (["status", "-s", "work"], "work"),  # the sandbox's own spend
    (["status"], "main"),  # several: the default's own, not everyone's
])
def test_status_spend_today_is_the_sandboxs_own(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], spender: str,
) -> None:
    fleet.gateway = True
    assert moltconsole(config, *argv) == EXIT_OK
    assert fleet.spend_asked == [spender]
    assert "AI gateway: 127.0.0.1:18790, spent today $0.0123\n" in capsys.readouterr().out


def test_status_of_the_only_sandbox_shows_all_the_spend(fleet: FleetBackend, config: Path) -> None:
    del fleet.fleet["work"]
    fleet.gateway = True
    assert moltconsole(config, "status") == EXIT_OK
    assert fleet.spend_asked == [None]  # as before several sandboxes: records of any tag count


def test_status_with_one_sandbox_has_no_line_about_others(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    del fleet.fleet["work"]
    assert moltconsole(config, "status") == EXIT_OK
    assert capsys.readouterr().out.startswith("state      stopped  (stopped wanted)\n")


def test_status_json_stays_the_status_alone(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    assert moltconsole(config, "status", "--json") == EXIT_OK
    assert json.loads(capsys.readouterr().out)["state"] == "stopped"


# --- ls -------------------------------------------------------------------------------------
def test_ls_table_marks_the_default_and_shows_dashes_where_there_is_no_figure() -> None:
    running = summary("work", state="ready", cpu_percent=12.345, memory_bytes=812 * 2**20,
                      spend_today_nanos=12_300_000)
    running = dataclasses.replace(running, status=SandboxStatus(
        state=SandboxState.READY, started_at=NOW - 3 * 3600 - 12 * 60))
    fleet = SandboxList([summary("main", default=True, origin="config"), running], "main")
    assert format_sandboxes(fleet, now=NOW) == (
        "name    state    openclaw  port   uptime  cpu    memory   spent today\n"
        "main *  stopped  2026.9.6  18789  -       -      -        -\n"
        "work    ready    2026.9.6  18789  3h12m   12.3%  812 MiB  $0.0123\n"
        "* the default sandbox, which verbs address without -s NAME"
    )


def test_ls_makes_what_the_backend_sent_inert() -> None:
    hostile = dataclasses.replace(summary("x"), openclaw_version="1\x1b]52;c;aGk=\x07")
    table = format_sandboxes(SandboxList([hostile], "main"), now=NOW)
    assert "\x1b" not in table and "\x07" not in table
    assert "1\u241b]52;c;aGk=\u2407" in table


def test_ls_lists_every_sandbox_from_the_backend(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "ls") == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:3]] == ["main", "work"]
    assert lines[1].startswith("main *")


def test_ls_json_is_the_wire_list(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    assert moltconsole(config, "ls", "--json") == EXIT_OK
    listed = SANDBOX_LIST.read(json.loads(capsys.readouterr().out))
    assert [s.name for s in listed.sandboxes] == ["main", "work"] and listed.default == "main"


def test_ls_never_starts_a_backend(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert moltconsole(config, "ls") == EXIT_NO_BACKEND
    assert "no moltconsole backend answers" in capsys.readouterr().err


# --- create ---------------------------------------------------------------------------------
def test_create_no_start_sends_the_limits_and_says_how_to_start(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "create", "play", "--version", "2026.9.6", "--memory", "3g",
                       "--cpus", "1.5", "--port", "18801", "--no-start") == EXIT_OK
    assert fleet.created == [{"name": "play", "openclaw_version": "2026.9.6", "memory_limit": "3g",
                              "cpus": 1.5, "gateway_port": 18801, "start": False}]
    assert capsys.readouterr().out == (
        "created sandbox play: openclaw 2026.9.6, gateway port 18789, memory limit 2g\n"
        "it is stopped; start it with: moltconsole -s play start\n"
    )


def test_create_refused_prints_the_backends_words_and_exits_1(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "create", "work", "--no-start") == EXIT_FAILED
    assert capsys.readouterr().err == "moltconsole: a sandbox named work exists already; pick another name\n"


def test_create_then_starts_the_new_sandbox_and_follows_it(
    config: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    started: list[tuple[str | None, str]] = []

    class Client(ContextClient):
        async def create_sandbox(self, name: str, **options: Any) -> SandboxSummary:
            assert options["start"] is False  # started below, so its progress shows
            return summary(name)

    async def fake_start_like(client: BackendClient, action: str, *, wait: bool) -> int:
        started.append((client.sandbox, action))
        return EXIT_OK

    async def fake_ensure_backend(settings: Any) -> Client:
        return Client()

    monkeypatch.setattr(sandboxes, "start_like", fake_start_like)
    monkeypatch.setattr("moltconsole.launcher.ensure_backend", fake_ensure_backend)
    assert moltconsole(config, "create", "play") == EXIT_OK
    assert started == [("play", "start")]


# --- remove ---------------------------------------------------------------------------------
def test_remove_with_yes_removes_and_names_the_kept_state_directory(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "remove", "work", "--yes") == EXIT_OK
    assert "work" not in fleet.fleet
    assert capsys.readouterr().out == (
        "removed sandbox work\n"
        "kept: /srv/moltconsole/sandboxes/work ('moltconsole create work' takes it up again)\n"
    )


def test_remove_of_a_config_sandbox_prints_the_backends_words_and_exits_1(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "remove", "main", "--yes") == EXIT_FAILED
    assert "main" in fleet.fleet
    assert "remove its [sandboxes.main] section there instead" in capsys.readouterr().err


def test_remove_not_interactive_needs_yes(
    fleet: FleetBackend, config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # pytest's stdin is not a terminal.
    assert moltconsole(config, "remove", "work") == EXIT_USAGE
    assert "confirm with: moltconsole remove work --yes" in capsys.readouterr().err
    assert "work" in fleet.fleet


@pytest.mark.parametrize(("answer", "removed"), [("y", True), ("", False), ("n", False)])
def test_remove_asks_on_a_terminal_naming_the_state_directory(
    fleet: FleetBackend, config: Path, monkeypatch: pytest.MonkeyPatch, answer: str, removed: bool,
) -> None:
    asked: list[str] = []

    def reply(prompt: str = "") -> str:
        asked.append(prompt)
        return answer

    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", reply)
    assert moltconsole(config, "remove", "work") == EXIT_OK
    assert asked == ["Remove sandbox work? Its container goes; its state directory "
                     "/srv/moltconsole/sandboxes/work is kept. [y/N] "]
    assert ("work" not in fleet.fleet) is removed


def test_remove_of_an_unknown_sandbox_says_so_without_asking(
    fleet: FleetBackend, config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input",
                        lambda prompt="": pytest.fail("asked about a sandbox that is not there"))
    assert moltconsole(config, "remove", "nope") == EXIT_FAILED
    assert "no sandbox named nope; there are: main, work" in capsys.readouterr().err


# --- destroy and the hints of the starting verbs --------------------------------------------
def test_destroy_prompt_names_the_sandbox_and_its_state_directory(
    fleet: FleetBackend, config: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[str] = []

    def answer_no(prompt: str = "") -> str:
        asked.append(prompt)
        return "n"

    monkeypatch.setattr(sys, "stdin", _Tty())
    monkeypatch.setattr("builtins.input", answer_no)
    assert moltconsole(config, "destroy", "-s", "work") == EXIT_OK
    assert asked == ["Remove sandbox work's container? The state directory "
                     "/srv/moltconsole/sandboxes/work and the logs are kept. [y/N] "]


def test_destroy_not_interactive_names_the_sandbox_in_the_command_to_type(
    config: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "-s", "work", "destroy") == EXIT_USAGE
    assert "confirm with: moltconsole -s work destroy --yes" in capsys.readouterr().err


async def test_start_hints_name_the_sandbox(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.unit.test_cli import ScriptedClient, start_like, status

    client = ScriptedClient(first=status("stopped"), before=[status("crash-loop", "running", "exit 1")],
                            answer=status("crash-loop", "running", "exit 1"))
    client.sandbox = "work"
    assert await start_like(client, "start") == EXIT_FAILED
    assert "run 'moltconsole -s work start' again" in capsys.readouterr().err


# --- the console ----------------------------------------------------------------------------
class _Console:
    """Stands in for the Textual app: records the client it was given instead of running."""

    opened: list[str | None] = []

    def __init__(self, settings: Any, *, client: BackendClient, **_: Any) -> None:
        self.client = client

    def run(self) -> None:
        _Console.opened.append(self.client.sandbox)


@pytest.fixture
def console_app(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The console's app module replaced by :class:`_Console` (the real one is not imported)."""
    _Console.opened = []
    monkeypatch.setitem(sys.modules, "moltconsole.app", types.SimpleNamespace(MoltConsole=_Console))
    return _Console.opened


@pytest.mark.parametrize("argv", [["-s", "work"], ["--sandbox", "work"]])
def test_console_opens_on_the_chosen_sandbox(
    fleet: FleetBackend, config: Path, console_app: list[str | None], argv: list[str],
) -> None:
    assert moltconsole(config, *argv) == EXIT_OK
    assert console_app == ["work"]
    assert "GET /v1/sandboxes/work/status" in fleet.paths


def test_console_on_an_unknown_sandbox_says_so_and_does_not_open(
    fleet: FleetBackend, config: Path, console_app: list[str | None], capsys: pytest.CaptureFixture[str],
) -> None:
    assert moltconsole(config, "-s", "nope") == EXIT_FAILED
    assert console_app == []
    assert "no sandbox named nope; there are: main, work" in capsys.readouterr().err


def test_console_without_s_opens_on_the_default(
    fleet: FleetBackend, config: Path, console_app: list[str | None],
) -> None:
    assert moltconsole(config) == EXIT_OK
    assert console_app == [None]

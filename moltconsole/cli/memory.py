"""``moltconsole memory ...``: a sandbox's memory (its state directory kept with history, issue 11)
from the command line, through the backend's memory API (``client.memory``).

Verbs that only read (``status``, the default; ``snapshots``, ``ls``, ``cat``, ``log``,
``diff``, ``search``, ``verify``, ``moltworker``) ask the backend that runs and never start
one, as ``status`` does; verbs that change something (``backup``, ``restore``, ``prune``,
``import-moltworker``) start one when none runs, as the lifecycle verbs do. ``restore`` asks
first on a terminal, before the event loop (as ``destroy`` does), saying what is kept.

Snapshot ids are taken whole, by a unique prefix (of the id or of its random part after the
``-``) or as ``latest``; they are resolved here against the sandbox's list of snapshots, so the
backend only ever sees whole ids. ``--json`` prints the backend's message as it is on the wire
(``moltconsole_shared.wire.memory``). What the user asks that cannot be done (no such
snapshot, a path in none, memory off, no backend) is one line on stderr that says what to do,
and a non-zero exit; text from the sandbox reaches a terminal only made inert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from moltconsole.cli import memory_format as fmt
from moltconsole.cli.choice import add_sandbox_option, chosen_sandbox, command_for
from moltconsole.cli.session import confirmed, on_backend, run, settings_of
from moltconsole.client import BackendClient, BackendError, BackendUnreachable
from moltconsole_shared.commands import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from moltconsole_shared.untrusted import sanitize
from moltconsole_shared.wire import memory as wire

SEARCH_LIMIT_MAX = 1000  # the backend's cap
PROGRESS_EVERY = 0.5  # seconds between two looks at a long operation's progress
T = TypeVar("T")
Work = Callable[[BackendClient, argparse.Namespace], Awaitable[int]]


class Refused(Exception):
    """What the user asked cannot be done; the message says why and what to do instead."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


# --- the parser ----------------------------------------------------------------------------
def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``memory [VERB] [-s NAME] [--json]``: status (the default), snapshots, ls, cat, log,
    diff, search, backup, restore, verify, prune, moltworker, import-moltworker."""
    memory = sub.add_parser(
        "memory", help="the agent's memory: its files kept with history (status, ls, cat, log, diff, "
        "restore, ...)",
        description="The sandbox's state directory, kept in snapshots. With no verb: the sync status.",
    )
    add_sandbox_option(memory)
    _json_option(memory)
    memory.set_defaults(func=status_command)
    verbs = memory.add_subparsers(dest="memory_verb", metavar="VERB")

    def verb(name: str, text: str, func: Callable[[argparse.Namespace], int], *,
             json_output: bool = True) -> argparse.ArgumentParser:
        parser = verbs.add_parser(name, help=text, description=text)
        add_sandbox_option(parser)
        if json_output:
            _json_option(parser)
        parser.set_defaults(func=func)
        return parser

    verb("status", "on or off, the bucket, the last snapshot, what waits and what runs", status_command)
    verb("snapshots", "the snapshots, newest first", snapshots_command)
    ls = verb("ls", "the files now, or in a snapshot, with size and time", ls_command)
    _snapshot_option(ls, "list the files as they were in snapshot ID (default: now)")
    ls.add_argument("prefix", nargs="?", default="", metavar="PATH-PREFIX",
                    help="only paths that start so (workspace/, workspace/memory/)")
    cat = verb("cat", "a file's bytes, now or in a snapshot", cat_command, json_output=False)
    cat.add_argument("path", metavar="PATH", help="a path in the state directory: workspace/MEMORY.md")
    _snapshot_option(cat, "the file as it was in snapshot ID (default: now)")
    cat.add_argument("--force", action="store_true",
                     help="show a binary file on a terminal too (its control characters made visible)")
    log = verb("log", "a file's versions across the snapshots", log_command)
    log.add_argument("path", metavar="PATH")
    diff = verb("diff", "how a file changed between two snapshots, or since one", diff_command)
    diff.add_argument("path", metavar="PATH")
    diff.add_argument("old", nargs="?", default="latest", metavar="OLD",
                      help="a snapshot id, a unique prefix, latest or now (default: latest)")
    diff.add_argument("new", nargs="?", default="now", metavar="NEW",
                      help="the same (default: now, the file as it is)")
    search = verb("search", "lines holding TEXT (case-insensitive), now or in a snapshot", search_command)
    search.add_argument("text", metavar="TEXT")
    _snapshot_option(search, "search snapshot ID (default: the files now)")
    search.add_argument("--limit", type=_limit, default=200, metavar="N",
                        help=f"at most N lines (default: 200, at most {SEARCH_LIMIT_MAX:,})")
    verb("backup", "take a snapshot now", backup_command)
    restore = verb("restore", "put a file, a folder or the whole sandbox back as it was in a snapshot "
                   "(what is there now is kept first in a safety snapshot)", restore_command)
    restore.add_argument("snapshot", metavar="SNAPSHOT", help="a snapshot id, a unique prefix, or latest")
    restore.add_argument("path", nargs="?", default=None, metavar="PATH",
                         help="a file or folder to restore (default: the whole sandbox, stopped and "
                         "started again)")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    verify = verb("verify", "read the repository back and check every blob (or a sample)", verify_command)
    verify.add_argument("--sample", type=_fraction, default=None, metavar="FRACTION",
                        help="check this share of the blobs, 0-1 (default: all of them)")
    prune = verb("prune", "forget the snapshots the retention policy does not keep, then remove the "
                 "blobs no snapshot needs", prune_command)
    prune.add_argument("--dry-run", action="store_true", help="say what would go; change nothing")
    for period, kept in (("last", "the newest N snapshots"), ("hourly", "the newest snapshot of each of "
                         "the last N hours"), ("daily", "... of the last N days"),
                         ("weekly", "... of the last N weeks"), ("monthly", "... of the last N months")):
        prune.add_argument(f"--keep-{period}", type=_count, default=None, metavar="N",
                           help=f"keep {kept} (default: the config's memory.keep_{period})")
    moltworker = verb("moltworker", "browse a Moltworker bucket, read-only", moltworker_command)
    _bucket_options(moltworker)
    imported = verb("import-moltworker", "import a Moltworker bucket as a snapshot of this sandbox "
                    "(and put it in place when its state directory is empty)", import_command)
    _bucket_options(imported)
    imported.add_argument("--no-restore", action="store_true",
                          help="keep it as a snapshot only; do not put it into the state directory")


def _json_option(parser: argparse.ArgumentParser) -> None:
    # No default: `memory --json ls` keeps what was given before the verb.
    parser.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print the backend's answer as JSON")


def _snapshot_option(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--snapshot", metavar="ID", default=None,
                        help=text + "; an id, a unique prefix, or latest")


def _bucket_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("location", metavar="LOCATION",
                        help="r2://bucket or s3://bucket/prefix (credentials: the backend's R2_* or AWS_* "
                        "keys)")
    parser.add_argument("--endpoint-url", metavar="URL", default=None,
                        help="the S3 endpoint (default: R2's from CF_ACCOUNT_ID, or AWS)")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction above 0 and at most 1 (0.1 = 10%)")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 0 or more")
    return int(text)


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= SEARCH_LIMIT_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to {SEARCH_LIMIT_MAX:,}")
    return int(text)


# --- running a verb ------------------------------------------------------------------------
def _run(args: argparse.Namespace, work: Work, *, start: bool = False) -> int:
    """``work`` with a client of ``-s``'s sandbox: of the running backend, or (``start``) of
    one started when none runs; refusals and the backend's errors said with a hint."""
    settings = settings_of(args)
    sandbox = chosen_sandbox(args)

    async def go(client: BackendClient) -> int:
        try:
            return await work(client, args)
        except Refused as exc:
            print(f"moltconsole memory: {exc}", file=sys.stderr)
            return exc.code
        except BackendUnreachable:
            raise
        except BackendError as exc:
            raise BackendError(_with_hint(str(exc), exc, args, sandbox), exc.kind, exc.status) from None

    async def connected() -> int:
        if start:
            return await on_backend(settings, go, sandbox=sandbox)
        async with BackendClient(settings.socket_path, sandbox=sandbox) as client:
            return await go(client)

    return run(connected())


def _with_hint(message: str, exc: BackendError, args: argparse.Namespace, sandbox: str | None) -> str:
    """The backend's message, and what to do where it does not say."""
    if "moltconsole " in message:
        return message  # it names the command to run already
    verb = getattr(args, "memory_verb", None) or "status"
    if exc.status == 404 and exc.kind == "backend":
        return (f"{message}. This backend has no 'memory {verb}' yet: restart it on this version "
                "('moltconsole serve', or stop it and run 'moltconsole')")
    if message.startswith("refusing the path"):
        return (f"{message}. Give a path relative to the state directory, as "
                f"'{command_for('memory ls', sandbox)}' shows them")
    if verb == "cat" and message.startswith(f"cannot read {args.path} "):
        return (f"{message}. '{command_for('memory ls', sandbox)}' lists the files now; "
                "--snapshot ID reads one as it was")
    return message


def _print_json(schema: Any, message: Any) -> None:
    print(json.dumps(schema.dump(message), indent=2))


def _wants_json(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _who(sandbox: str | None) -> str:
    return f"sandbox {sandbox}" if sandbox else "the default sandbox"


def _colour(stream: Any) -> bool:
    return bool(stream.isatty()) and not os.environ.get("NO_COLOR")


# --- snapshot ids --------------------------------------------------------------------------
def pick_snapshot(
    snapshots: list[wire.SnapshotSummary], given: str, sandbox: str | None,
) -> wire.SnapshotSummary:
    """The snapshot ``given`` names among ``snapshots`` (newest first): ``latest``, a whole id,
    or a unique prefix of the id or of its random part; else Refused saying why."""
    listing = command_for("memory snapshots", sandbox)
    given = given.strip()
    if not given:
        raise Refused(f"say which snapshot: an id, a unique prefix of one, or latest ('{listing}' lists "
                      "them)", EXIT_USAGE)
    if not snapshots:
        raise Refused(f"{_who(sandbox)} has no snapshot yet; "
                      f"'{command_for('memory backup', sandbox)}' takes one now")
    if given == "latest":
        return snapshots[0]
    for snap in snapshots:
        if snap.id == given:
            return snap
    found = [s for s in snapshots if s.id.startswith(given) or s.id.partition("-")[2].startswith(given)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise Refused(f"{_who(sandbox)} has no snapshot {sanitize(given)!r}; '{listing}' lists them")
    shown = ", ".join(sanitize(s.id) for s in found[:3]) + (", ..." if len(found) > 3 else "")
    raise Refused(f"{sanitize(given)!r} could be any of {len(found)} snapshots ({shown}); give more of "
                  "the id")


async def _snapshot(client: BackendClient, given: str, sandbox: str | None) -> wire.SnapshotSummary:
    return pick_snapshot((await client.memory.snapshots()).snapshots, given, sandbox)


async def _snapshot_id(client: BackendClient, given: str | None, sandbox: str | None) -> str | None:
    """The whole id of ``given`` (None: now)."""
    return None if given is None else (await _snapshot(client, given, sandbox)).id


# --- status, snapshots, ls, cat, log, diff, search -----------------------------------------
def status_command(args: argparse.Namespace) -> int:
    """``moltconsole memory [status]``."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        status = await client.memory.status()
        if _wants_json(args):
            _print_json(wire.MEMORY_STATUS, status)
        else:
            print(fmt.format_status(status, time.time(), client.sandbox))
        return EXIT_OK

    return _run(args, show)


def snapshots_command(args: argparse.Namespace) -> int:
    """``moltconsole memory snapshots``."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        listing = await client.memory.snapshots()
        if _wants_json(args):
            _print_json(wire.SNAPSHOT_LIST, listing)
        elif not listing.snapshots:
            print(f"{_who(client.sandbox)} has no snapshot yet; "
                  f"'{command_for('memory backup', client.sandbox)}' takes one now")
        else:
            print(fmt.format_snapshots(listing))
        return EXIT_OK

    return _run(args, show)


def ls_command(args: argparse.Namespace) -> int:
    """``moltconsole memory ls [--snapshot ID] [PATH-PREFIX]``."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        snapshot = await _snapshot_id(client, args.snapshot, client.sandbox)
        listing = await client.memory.files(snapshot)
        files = [f for f in listing.files if f.path.startswith(args.prefix)]
        where = f"snapshot {snapshot}" if snapshot else "the state directory now"
        if args.prefix and not files:
            raise Refused(f"no file in {where} starts with {sanitize(args.prefix)!r}; "
                          f"'{command_for('memory ls', client.sandbox)}' lists them all")
        if _wants_json(args):
            _print_json(wire.FILE_LIST, wire.FileList(snapshot=listing.snapshot, files=files))
        elif not files:
            print(f"no file in {where}")
        else:
            print(fmt.format_files(files))
        return EXIT_OK

    return _run(args, show)


def cat_command(args: argparse.Namespace) -> int:
    """``moltconsole memory cat PATH [--snapshot ID] [--force]``: the bytes as they are to a
    pipe or a file; on a terminal, text made inert, and binary only with ``--force``."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        snapshot = await _snapshot_id(client, args.snapshot, client.sandbox)
        content = await client.memory.read(args.path, snapshot)
        if not sys.stdout.isatty():
            sys.stdout.flush()
            sys.stdout.buffer.write(content)
            sys.stdout.buffer.flush()
            return EXIT_OK
        kind = fmt.binary_kind(content)
        if kind is not None and not args.force:
            again = command_for(f"memory cat {shlex.quote(args.path)}", client.sandbox) + (
                f" --snapshot {snapshot}" if snapshot else ""
            )
            raise Refused(f"{sanitize(args.path)} is {kind} ({fmt.size(len(content))}) and would garble the "
                          f"terminal; write it to a file: {sanitize(again)} > FILE "
                          "(or add --force to see it with its control characters made visible)", EXIT_USAGE)
        text = fmt.inert_text(content)
        sys.stdout.write(text if not text or text.endswith("\n") else text + "\n")
        return EXIT_OK

    return _run(args, show)


def log_command(args: argparse.Namespace) -> int:
    """``moltconsole memory log PATH``: exit 1 when no snapshot has the file."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        history = await client.memory.log(args.path)
        if _wants_json(args):
            _print_json(wire.FILE_HISTORY, history)
        if not history.versions:
            raise Refused(f"no snapshot of {_who(client.sandbox)} has {sanitize(args.path)}; "
                          f"'{command_for('memory ls --snapshot latest', client.sandbox)}' lists the "
                          "files the newest one keeps")
        if not _wants_json(args):
            print(fmt.format_history(history))
        return EXIT_OK

    return _run(args, show)


def diff_command(args: argparse.Namespace) -> int:
    """``moltconsole memory diff PATH [OLD [NEW]]``: from the newest snapshot to now by default."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        ends: list[str] = []
        snapshots: list[wire.SnapshotSummary] | None = None
        for given in (args.old, args.new):
            if given.strip() == "now":
                ends.append("now")
                continue
            if snapshots is None:
                snapshots = (await client.memory.snapshots()).snapshots
            ends.append(pick_snapshot(snapshots, given, client.sandbox).id)
        diff = await client.memory.diff(args.path, ends[0], ends[1])
        if _wants_json(args):
            _print_json(wire.FILE_DIFF, diff)
        else:
            print(fmt.format_diff(diff, _colour(sys.stdout)))
        return EXIT_OK

    return _run(args, show)


def search_command(args: argparse.Namespace) -> int:
    """``moltconsole memory search TEXT [--snapshot ID] [--limit N]``."""
    async def show(client: BackendClient, args: argparse.Namespace) -> int:
        if not args.text.strip():
            raise Refused("say what to search for: moltconsole memory search TEXT", EXIT_USAGE)
        snapshot = await _snapshot_id(client, args.snapshot, client.sandbox)
        result = await client.memory.search(args.text, snapshot, args.limit)
        if _wants_json(args):
            _print_json(wire.SEARCH_RESULT, result)
        else:
            print(fmt.format_search(result, args.limit))
        return EXIT_OK

    return _run(args, show)


# --- backup, restore -----------------------------------------------------------------------
def backup_command(args: argparse.Namespace) -> int:
    """``moltconsole memory backup``: a snapshot now."""
    async def take(client: BackendClient, args: argparse.Namespace) -> int:
        result = await with_progress(client, client.memory.backup())
        if _wants_json(args):
            _print_json(wire.BACKUP_RESULT, result)
        else:
            print(fmt.format_backup(result, time.time()))
        return EXIT_OK

    return _run(args, take, start=True)


def restore_command(args: argparse.Namespace) -> int:
    """``moltconsole memory restore SNAPSHOT [PATH] [--yes]``: asks first on a terminal, saying
    what is kept; without one, ``--yes`` is needed."""
    sandbox = chosen_sandbox(args)
    if not args.yes:
        if not sys.stdin.isatty():
            again = command_for(f"memory restore {args.snapshot}", sandbox) + (
                f" {shlex.quote(args.path)}" if args.path else ""
            )
            print(f"moltconsole memory: restore replaces files of {_who(sandbox)}; when not run "
                  f"interactively, confirm with: {sanitize(again)} --yes", file=sys.stderr)
            return EXIT_USAGE
        questions: list[str] = []

        async def plan(client: BackendClient, args: argparse.Namespace) -> int:
            snap = await _snapshot(client, args.snapshot, client.sandbox)
            args.snapshot = snap.id  # the restore acts on what was asked about
            questions.append(await restore_question(client, snap, args.path))
            return EXIT_OK

        # Asked between two event loops, as destroy asks: Ctrl-C must interrupt input().
        code = _run(args, plan, start=True)
        if code != EXIT_OK:
            return code
        refused = confirmed(questions[0], "nothing restored")
        if refused is not None:
            return refused

    async def restore(client: BackendClient, args: argparse.Namespace) -> int:
        snap = await _snapshot(client, args.snapshot, client.sandbox)
        result = await with_progress(client, client.memory.restore(snap.id, args.path))
        if _wants_json(args):
            _print_json(wire.RESTORE_RESULT, result)
        else:
            print(fmt.format_restore(result, time.time()))
        return EXIT_OK

    return _run(args, restore, start=True)


async def restore_question(client: BackendClient, snap: wire.SnapshotSummary, path: str | None) -> str:
    """The y/N question before a restore: what comes back, and what is kept (a safety snapshot
    of what is there now, always; for the whole sandbox, that it is stopped and started, and
    that files the snapshot lacks go from the state directory but stay in that snapshot)."""
    who = _who(client.sandbox)
    when = f"snapshot {sanitize(snap.id)} ({fmt.local_time(snap.time)}, {sanitize(snap.reason)})"
    safety = "what is there now is first kept in a safety snapshot"
    if path is None:
        return (f"Restore all of {who}'s memory to {when}, {fmt.count(snap.files, 'file')}, "
                f"{fmt.size(snap.size)}? The sandbox is stopped and started again; {safety}; files that "
                f"are not in the snapshot are removed from the state directory (the safety snapshot "
                "keeps them). [y/N] ")
    folder = path.rstrip("/")
    files = (await client.memory.files(snap.id)).files
    if any(f.path == folder for f in files):
        return (f"Put {sanitize(folder)} of {who} back as it was in {when}? {safety.capitalize()}; no "
                "other file is touched. [y/N] ")
    inside = [f for f in files if f.path.startswith(folder + "/")]
    if not inside:
        raise Refused(f"{sanitize(path)} is not in snapshot {sanitize(snap.id)}; "
                      f"'{command_for(f'memory log {path}', client.sandbox)}' lists the snapshots that have "
                      f"a file, '{command_for(f'memory ls --snapshot {snap.id}', client.sandbox)}' what that "
                      "one has")
    return (f"Put the {fmt.count(len(inside), 'file')} under {sanitize(folder)}/ of {who} back as they "
            f"were in {when}? {safety.capitalize()}; files under {sanitize(folder)}/ that the snapshot "
            "does not have are kept, and no other file is touched. [y/N] ")


# --- verify, prune -------------------------------------------------------------------------
async def with_progress(client: BackendClient, work: Awaitable[T], stream: Any = None) -> T:
    """``work``'s result; meanwhile, on a terminal, the running operation's progress as the
    backend reports it (memory status), on one line that is cleared at the end."""
    stream = stream if stream is not None else sys.stderr
    task = asyncio.ensure_future(work)
    if not stream.isatty():
        return await task
    shown = False
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=PROGRESS_EVERY)
            if task.done():
                break
            try:
                running = (await client.memory.status()).operation
            except BackendError:
                continue
            if running is not None and running.total:
                stream.write(f"\r{fmt.format_progress(running)}\x1b[K")
                stream.flush()
                shown = True
    finally:
        if shown:
            stream.write("\r\x1b[K")
            stream.flush()
    return await task


def verify_command(args: argparse.Namespace) -> int:
    """``moltconsole memory verify [--sample FRACTION]``: exit 1 when anything is damaged."""
    async def check(client: BackendClient, args: argparse.Namespace) -> int:
        result = await with_progress(client, client.memory.verify(args.sample))
        if _wants_json(args):
            _print_json(wire.VERIFY_RESULT, result)
        else:
            print(fmt.format_verify(result))
        return EXIT_OK if result.ok else EXIT_FAILED

    return _run(args, check)


def prune_command(args: argparse.Namespace) -> int:
    """``moltconsole memory prune [--dry-run] [--keep-last N ...]``."""
    async def prune(client: BackendClient, args: argparse.Namespace) -> int:
        request = wire.PruneRequest(
            dry_run=args.dry_run, keep_last=args.keep_last, keep_hourly=args.keep_hourly,
            keep_daily=args.keep_daily, keep_weekly=args.keep_weekly, keep_monthly=args.keep_monthly,
        )
        result = await with_progress(client, client.memory.prune(request))
        if _wants_json(args):
            _print_json(wire.PRUNE_RESULT, result)
        else:
            print(fmt.format_prune(result))
        return EXIT_OK

    return _run(args, prune, start=True)


# --- Moltworker buckets --------------------------------------------------------------------
def moltworker_command(args: argparse.Namespace) -> int:
    """``moltconsole memory moltworker LOCATION [--endpoint-url URL]``: read-only."""
    async def browse(client: BackendClient, args: argparse.Namespace) -> int:
        listing = await client.memory.moltworker(args.location, args.endpoint_url)
        if _wants_json(args):
            _print_json(wire.MOLTWORKER_LISTING, listing)
        else:
            print(fmt.format_moltworker(listing))
        return EXIT_OK

    return _run(args, browse)


def import_command(args: argparse.Namespace) -> int:
    """``moltconsole memory import-moltworker LOCATION [--endpoint-url URL] [--no-restore]``."""
    async def bring(client: BackendClient, args: argparse.Namespace) -> int:
        result = await with_progress(
            client, client.memory.import_moltworker(args.location, args.endpoint_url, not args.no_restore),
        )
        if _wants_json(args):
            _print_json(wire.IMPORT_RESULT, result)
        else:
            print(fmt.format_import(result, time.time()))
        return EXIT_OK

    return _run(args, bring, start=True)

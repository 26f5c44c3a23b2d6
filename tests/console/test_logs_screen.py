"""The Logs screen, hosted alone in a small app and fed by a fake of our own log API.

The fake speaks the documented ``BackendClient.logs`` contract (batches, then caught_up, then
live batches the test pushes) and answers queries (tail, since_time, grep, levels) the way the
backend does, so the screen's whole path from stream to pixels runs for real. The tests marked
``docker`` run the real backend instead.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from textual.app import App
from textual.pilot import Pilot

from moltconsole.client import BackendClient, BackendError
from moltconsole.resources import styles_dir
from moltconsole.screens.logs import LogDetailScreen, LogSource, LogsScreen
from moltconsole.widgets.log_view import LogView
from moltconsole_backend.api.service import BackendService
from tests.conftest import wait_state

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z; fixed so the snapshots never change


def record(seq: int, message: str, *, level: str = "info", subsystem: str = "gateway",
           raw: str | None = None, offset: float | None = None, cut: bool = False,
           source: str = "file") -> dict[str, Any]:
    """A record as the backend sends it."""
    return {
        "seq": seq, "time": T0 + (seq if offset is None else offset), "level": level,
        "subsystem": subsystem, "message": message, "source": source,
        "raw": raw if raw is not None else message, "cut": cut,
    }


FIXED = [
    record(1, "gateway listening on ws://0.0.0.0:18789", raw=json.dumps(
        {"time": "2027-01-15T08:00:01Z", "level": "info", "subsystem": "gateway",
         "msg": "gateway listening on ws://0.0.0.0:18789", "port": 18789})),
    record(2, "loading skills from /home/node/.openclaw/skills", level="debug", subsystem="skills"),
    record(3, "heartbeat scheduled every 30m", subsystem="cron"),
    record(4, "model anthropic/claude-sonnet responded in 1834 ms", subsystem="agent"),
    record(5, "rate limited by upstream, retrying in 2s", level="warn", subsystem="agent"),
    record(6, "tool browser.navigate failed: net::ERR_NAME_NOT_RESOLVED", level="error",
           subsystem="agent"),
    record(7, "plain stderr line without a level", level="", subsystem="", source="stderr"),
    record(8, "a very long line " + "with many words " * 20 + "at the end", subsystem="agent"),
    record(9, "device pairing request from 10.0.0.7 (iPhone)", subsystem="devices"),
    record(10, "session 7f3c saved", level="trace", subsystem="sessions"),
]


class FakeLogs:
    """A fake BackendClient.logs: history first, then caught_up, then what the test pushes.

    Queries are answered as the backend answers them: ``since_time``, ``levels``, ``sources``
    and ``grep`` (on the message or the subsystem) select, ``tail`` keeps the last N of what matches. Pushed
    lines join the history, as they join the backend's spool. ``refuse`` makes the fake refuse
    any grep containing that text, as a backend with a poorer regex engine would; ``gate``, when
    given, holds every history search (``follow=False``) until the test sets it.
    """

    def __init__(self, history: list[dict[str, Any]], *, dropped: int = 0, refuse: str | None = None,
                 gate: asyncio.Event | None = None) -> None:
        self.history = list(history)
        self.dropped = dropped
        self.refuse = refuse
        self.gate = gate
        self.calls: list[dict[str, Any]] = []
        self.asked = asyncio.Event()  # set at each history search
        self.cancelled = 0  # history searches abandoned by the screen before they ended
        self.live: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    @property
    def searches(self) -> list[dict[str, Any]]:
        """The history searches asked so far (the calls without follow)."""
        return [call for call in self.calls if not call.get("follow", True)]

    def select(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        since, levels, grep = query.get("since_time"), query.get("levels"), query.get("grep")
        sources = query.get("sources")
        if grep is not None and self.refuse is not None and self.refuse in grep:
            raise BackendError(f"'grep' is not a valid regular expression: {self.refuse} is not "
                               "supported", "request", 0)
        pattern = re.compile(grep) if grep is not None else None
        found = [
            r for r in self.history
            if (since is None or r["time"] >= since) and (levels is None or r["level"] in levels)
            and (sources is None or r["source"] in sources)
            and (pattern is None or pattern.search(r["message"]) or pattern.search(r["subsystem"]))
        ]
        tail = query.get("tail")
        return found if tail is None else found[len(found) - min(tail, len(found)):]

    async def logs(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        self.calls.append(kwargs)
        if not kwargs.get("follow", True):
            self.asked.set()
            try:
                if self.gate is not None:
                    await self.gate.wait()
                found = self.select(kwargs)
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            yield {"type": "batch", "records": found, "dropped": 0}
            yield {"type": "caught_up"}
            return
        yield {"type": "batch", "records": self.select(kwargs), "dropped": self.dropped}
        yield {"type": "caught_up"}
        while True:
            yield await self.live.get()

    def push(self, records: list[dict[str, Any]], dropped: int = 0) -> None:
        """Send a live batch."""
        self.history.extend(records)
        self.live.put_nowait({"type": "batch", "records": records, "dropped": dropped})


class LogsApp(App[None]):
    """The smallest app that hosts the Logs screen with its stylesheet."""

    CSS_PATH = [str(styles_dir() / "logs.tcss")]

    def __init__(self, client: LogSource, **options: Any) -> None:
        super().__init__()
        self.client = client
        self.options = options
        self.copied: list[str] = []

    def on_mount(self) -> None:
        self.push_screen(LogsScreen(self.client, clock=lambda: T0 + 20, **self.options))

    def copy_to_clipboard(self, text: str) -> None:
        # The real one writes OSC 52 to the terminal; here we keep what would have been sent.
        self.copied.append(text)


def screen_of(pilot: Pilot[None]) -> LogsScreen:
    screen = pilot.app.screen
    assert isinstance(screen, LogsScreen)
    return screen


async def ready(pilot: Pilot[None]) -> LogsScreen:
    """Wait until the history is on screen."""
    await pilot.pause()
    screen = screen_of(pilot)
    await asyncio.wait_for(screen.caught_up.wait(), 10)
    await pilot.pause()
    return screen


async def push(pilot: Pilot[None], records: list[dict[str, Any]], dropped: int = 0) -> None:
    """Send a live batch and wait until the screen has applied it."""
    screen = screen_of(pilot)
    screen.applied.clear()
    client = pilot.app.client  # type: ignore[attr-defined]
    assert isinstance(client, FakeLogs)
    client.push(records, dropped)
    await asyncio.wait_for(screen.applied.wait(), 10)
    await pilot.pause()


async def searched(pilot: Pilot[None], *keys: str) -> LogsScreen:
    """Press ``keys`` (a filter change) and wait until the history search they start has ended."""
    screen = screen_of(pilot)
    screen.history_settled.clear()
    await pilot.press(*keys)
    await asyncio.wait_for(screen.history_settled.wait(), 10)
    await pilot.pause()
    return screen


def query_bar(screen: LogsScreen) -> str:
    return str(screen.query_one("#logs-query").render())


def rows(pilot: Pilot[None]) -> list[str]:
    return pilot.app.screen.query_one(LogView).rendered_rows()


def visible_messages(screen: LogsScreen) -> list[str]:
    return [r.message for r in screen.view.records]


# --- snapshots ------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_logs_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await ready(pilot)

    assert snap_compare(LogsApp(FakeLogs(FIXED, dropped=3)), terminal_size=size, run_before=run_before)


def test_logs_snapshot_filtered_paused_and_searched(snap_compare: Any) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await pilot.press("f", *"sub:agent", "enter", "slash", *"retry", "enter")
        await pilot.pause()

    assert snap_compare(LogsApp(FakeLogs(FIXED)), terminal_size=(80, 24), run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_source_column_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await pilot.press("s")
        await pilot.pause()

    assert snap_compare(LogsApp(FakeLogs(FIXED)), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_history_search_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await searched(pilot, "f", *"sub:agent", "enter")

    # Memory holds seq 6-10; the agent lines 4 and 5 come from the history.
    app = LogsApp(FakeLogs(FIXED), max_lines=5, history_delay=0)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
def test_detail_snapshot(snap_compare: Any, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        await ready(pilot)
        await pilot.press("g", "enter")
        await pilot.pause()

    assert snap_compare(LogsApp(FakeLogs(FIXED)), terminal_size=size, run_before=run_before)


# --- flows ---------------------------------------------------------------------------------------
async def test_history_is_asked_with_tail_and_shown_in_order() -> None:
    client = FakeLogs(FIXED)
    app = LogsApp(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert client.calls == [{"follow": True, "tail": 10_000, "since_time": None}]
        assert [r.seq for r in screen.view.records] == list(range(1, 11))
        assert screen.view.cursor == 9  # following: the newest line is selected
        assert any("session 7f3c saved" in row for row in rows(pilot))


async def test_filter_text_regex_bad_regex_and_subsystem() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("f", *"retry", "enter")
        assert visible_messages(screen) == ["rate limited by upstream, retrying in 2s"]

        await pilot.press("f", "ctrl+u", *"/^(model|tool) /", "enter")
        assert [r.seq for r in screen.view.records] == [4, 6]

        # A bad regex: the query bar says it is invalid and why, and the view keeps the lines
        # it showed before the input opened (not what "/fail(" as plain text matched: none).
        await pilot.press("f", "ctrl+u", *"/fail")
        await pilot.press("(", "/")
        await pilot.pause()
        bar = query_bar(screen)
        assert "invalid" in bar and "bad regex /fail(/" in bar and "missing )" in bar
        assert screen.query_text == "/^(model|tool) /"
        assert [r.seq for r in screen.view.records] == [4, 6]
        await pilot.press("backspace", "backspace", "/", "enter")
        assert "invalid" not in query_bar(screen)
        assert [r.seq for r in screen.view.records] == [6]

        await pilot.press("f", "ctrl+u", *"sub:devices", "enter")
        assert [r.seq for r in screen.view.records] == [9]

        await pilot.press("escape")  # clears filter and search
        assert len(screen.view.records) == 10


async def test_source_column_and_source_filter() -> None:
    client = FakeLogs(FIXED)
    app = LogsApp(client, max_lines=5, history_delay=0)  # memory holds seq 6-10
    async with app.run_test(size=(100, 24)) as pilot:
        screen = await ready(pilot)
        assert "08:00:07.000 -     plain stderr line without a level" in rows(pilot)[1]
        await pilot.press("s")
        await pilot.pause()
        shown = rows(pilot)
        assert "08:00:07.000 stderr -     plain stderr line without a level" in shown[1]
        assert shown[0].startswith("08:00:06.000 file   ERROR agent    tool browser.navigate failed")
        assert "source" in str(screen.query_one("#logs-status").render())

        # Typing "source:c..." filters nothing (and says nothing) until the name is whole.
        await searched(pilot, "f", *"source:console", "enter")
        assert [r.seq for r in screen.view.records] == [7]
        assert client.searches[-1]["sources"] == ["stdout", "stderr"]
        assert not screen.query_one("#logs-error").display
        await searched(pilot, "f", "ctrl+u", *"source:file sub:agent", "enter")
        assert [r.seq for r in screen.view.records] == [4, 5, 6, 8]  # 4 and 5 from the history
        assert client.searches[-1]["sources"] == ["file"]

        await pilot.press("f", "ctrl+u", *"source:journal")
        await pilot.pause()
        error = str(screen.query_one("#logs-error").render())
        assert "source:journal is not a log source: use source:file" in error
        await pilot.press("escape")
        await pilot.press("s")
        await pilot.pause()
        assert not any("file   " in row for row in rows(pilot))


async def test_filter_applies_to_live_lines_too() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("f", *"pairing", "enter")
        await push(pilot, [record(11, "another pairing request", subsystem="devices"),
                           record(12, "unrelated", subsystem="agent")])
        assert [r.seq for r in screen.view.records] == [9, 11]


async def test_filter_finds_lines_only_in_the_backends_history() -> None:
    client = FakeLogs(FIXED)
    app = LogsApp(client, max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert [r.seq for r in screen.view.records] == [6, 7, 8, 9, 10]  # memory: the last 5

        screen = await searched(pilot, "f", *"retry", "enter")
        # Without a delay every key asks; the last search is the one in force.
        assert client.searches[-1] == {"follow": False, "tail": 5, "grep": "(?i)retry",
                                       "levels": None, "since_time": None}
        assert visible_messages(screen) == ["rate limited by upstream, retrying in 2s"]
        assert "+1 from history" in query_bar(screen)

        # Live lines that match keep coming after the history.
        await push(pilot, [record(11, "retrying again"), record(12, "unrelated")])
        assert [r.seq for r in screen.view.records] == [5, 11]

        # A level floor is searched as the levels at or above it (the text filter still holds).
        await searched(pilot, "escape")  # no filter: nothing to search
        assert screen.history_state is None and "history" not in query_bar(screen)
        screen = await searched(pilot, "l", "l", "l")  # warn+
        assert client.searches[-1]["levels"] == ["warn", "error", "fatal"]
        assert client.searches[-1]["grep"] is None
        assert [r.seq for r in screen.view.records] == [5, 6]


async def test_subsystem_filter_searches_the_history_by_name() -> None:
    client = FakeLogs(FIXED)
    app = LogsApp(client, max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        screen = await searched(pilot, "f", *"sub:agent sub:Cron", "enter")
        # The backend greps message or subsystem; the screen keeps the lines whose subsystem matches.
        assert client.searches[-1]["grep"] == "(?i)agent|cron"
        assert [r.seq for r in screen.view.records] == [3, 4, 5, 6, 8]
        assert "+3 from history" in query_bar(screen)


async def test_time_window_with_a_filter_searches_that_window() -> None:
    client = FakeLogs([record(1, "old match", offset=-3600), record(2, "recent match", offset=0),
                       *[record(i, f"filler {i}", offset=0) for i in range(3, 8)]])
    app = LogsApp(client, max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        screen = await searched(pilot, "f", *"match", "enter")
        assert visible_messages(screen) == ["old match", "recent match"]
        screen = await searched(pilot, "r")  # last 1m: the stream restarts, then the search
        assert client.searches[-1] == {"follow": False, "tail": 5, "grep": "(?i)match",
                                       "levels": None, "since_time": T0 + 20 - 60}
        assert visible_messages(screen) == ["recent match"]


async def test_typing_cancels_the_search_for_the_previous_filter() -> None:
    gate = asyncio.Event()
    client = FakeLogs(FIXED, gate=gate)
    app = LogsApp(client, max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("f", "r")
        await asyncio.wait_for(client.asked.wait(), 10)
        assert screen.history_state == "searching"
        assert "searching the history" in query_bar(screen)
        client.asked.clear()
        await pilot.press("a")
        await asyncio.wait_for(client.asked.wait(), 10)
        await pilot.pause()
        assert client.cancelled == 1  # the search for "r" was abandoned
        gate.set()
        await asyncio.wait_for(screen.history_settled.wait(), 10)
        await pilot.pause()
        assert [c["grep"] for c in client.searches] == ["(?i)r", "(?i)ra"]
        assert visible_messages(screen) == ["rate limited by upstream, retrying in 2s"]


async def test_a_regex_the_backend_refuses_is_explained() -> None:
    client = FakeLogs(FIXED, refuse="(?<=")
    app = LogsApp(client, max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        screen = await searched(pilot, "f", *"/(?<=tool )browser/", "enter")
        error = screen.query_one("#logs-error")
        assert error.display
        message = str(error.render())
        assert "The backend cannot search its history for /(?<=tool )browser/" in message
        assert "(?<= is not supported" in message and "in memory only" in message
        assert "history: not searched" in query_bar(screen)
        assert [r.seq for r in screen.view.records] == [6]  # the filter still works in memory
        # Another filter clears the message.
        await searched(pilot, "f", "ctrl+u", *"retry", "enter")
        assert not error.display
        assert [r.seq for r in screen.view.records] == [5]


async def test_no_history_search_while_memory_holds_every_line() -> None:
    client = FakeLogs(FIXED)
    app = LogsApp(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        screen = await searched(pilot, "f", *"retry", "enter")
        assert client.searches == []
        assert "history: all in memory" in query_bar(screen)


async def test_history_lines_are_not_repeated_when_a_pause_ends() -> None:
    client = FakeLogs(FIXED)
    app = LogsApp(client, max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("p")
        await push(pilot, [record(11, "while paused", subsystem="agent")])
        screen = await searched(pilot, "f", *"sub:agent", "enter")
        # The search also found 11, which waits to be shown: only 4 and 5 come from it.
        assert [r.seq for r in screen.view.records] == [4, 5, 6, 8]
        await pilot.press("p")
        assert [r.seq for r in screen.view.records] == [4, 5, 6, 8, 11]


async def test_a_failed_history_search_is_shown_and_memory_still_filters() -> None:
    class Gone(FakeLogs):
        async def logs(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
            if not kwargs.get("follow", True):
                self.calls.append(kwargs)
                raise BackendError("no moltconsole backend answers on /run/x.sock")
            async for message in super().logs(**kwargs):
                yield message

    app = LogsApp(Gone(FIXED), max_lines=5, history_delay=0)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        screen = await searched(pilot, "f", *"pairing", "enter")
        message = str(screen.query_one("#logs-error").render())
        assert "Searching the history for pairing failed: no moltconsole backend answers" in message
        assert [r.seq for r in screen.view.records] == [9]


async def test_long_lived_objects_are_frozen_only_while_the_screen_is_up() -> None:
    assert gc.get_freeze_count() == 0
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.pause()
        assert gc.get_freeze_count() > 10_000  # Textual's own objects, skipped by full collections
    assert gc.get_freeze_count() == 0


async def test_level_floor_cycles() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("l")  # debug+: trace and unlevelled lines go
        assert {r.seq for r in screen.view.records} == set(range(1, 11)) - {7, 10}
        await pilot.press("l", "l")  # warn+
        assert [r.seq for r in screen.view.records] == [5, 6]
        await pilot.press("l")  # error+
        assert [r.seq for r in screen.view.records] == [6]
        await pilot.press("l")  # all again
        assert len(screen.view.records) == 10


async def test_search_highlights_and_jumps_next_and_previous() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("slash", *"ing")
        await pilot.pause()
        assert len(screen.view.records) == 10  # search hides nothing
        assert "4 matching" in str(screen.query_one("#logs-query").render())
        await pilot.press("enter")  # jumps from the last line, wrapping to the first match
        assert screen.view.selected is not None and screen.view.selected.seq == 1
        assert screen.paused  # a jump stops the lines from moving away
        await pilot.press("n")
        assert screen.view.selected.seq == 2
        await pilot.press("n", "n")
        assert screen.view.selected.seq == 9
        await pilot.press("n")  # wraps around
        assert screen.view.selected.seq == 1
        await pilot.press("N")
        assert screen.view.selected.seq == 9

        # The matches are drawn in the match style.
        view = screen.view
        match_style = view.get_component_rich_style("logs-view--match")
        strip = view.render_line(view.cursor - int(view.scroll_y))
        assert any(seg.text == "ing" and seg.style and seg.style.bgcolor == match_style.bgcolor
                   for seg in strip)


async def test_pause_counts_waiting_lines_and_resume_jumps_to_the_end() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("p")
        await push(pilot, [record(11, "while paused 1"), record(12, "while paused 2")])
        await push(pilot, [record(13, "while paused 3")])
        assert [r.seq for r in screen.view.records][-1] == 10  # the view stood still
        status = str(screen.query_one("#logs-status").render())
        assert "paused" in status and "3 waiting" in status

        await pilot.press("p")
        assert [r.seq for r in screen.view.records][-3:] == [11, 12, 13]
        assert screen.view.selected is not None and screen.view.selected.seq == 13
        status = str(screen.query_one("#logs-status").render())
        assert "following" in status and "waiting" not in status
        assert any("while paused 3" in row for row in rows(pilot))


async def test_moving_up_pauses_and_end_follows_again() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("up", "up")
        assert screen.paused and screen.view.selected is not None
        assert screen.view.selected.seq == 8
        await pilot.press("end")
        assert not screen.paused and screen.view.selected.seq == 10


async def test_memory_is_bounded_by_max_lines() -> None:
    app = LogsApp(FakeLogs([]), max_lines=50)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await push(pilot, [record(i, f"line {i}") for i in range(1, 201)])
        assert len(screen.view.records) == 50
        assert screen.view.records[0].seq == 151
        await pilot.press("p")
        await push(pilot, [record(i, f"line {i}") for i in range(201, 401)])
        assert screen.waiting == 200 and len(screen._pending) == 50
        await pilot.press("p")
        assert [r.seq for r in screen.view.records] == list(range(351, 401))


async def test_wrap_and_timestamp_toggles_change_the_rendering() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        before = rows(pilot)
        assert any(row.startswith("08:00:01.000 INFO") for row in before)
        await pilot.press("t")
        no_time = rows(pilot)
        assert any(row.startswith("INFO  gateway  gateway listening") for row in no_time)
        assert not any("08:00:01.000" in row for row in no_time)

        long_rows_before = [row for row in no_time if "very long line" in row]
        assert len(long_rows_before) == 1 and "at the end" not in long_rows_before[0]
        await pilot.press("w")
        wrapped = rows(pilot)
        joined = "".join(wrapped)
        assert "at the end" in joined
        assert screen.view.virtual_size.height > len(screen.view.records)
        await pilot.press("w", "t")
        assert rows(pilot) == before


async def test_time_window_resubscribes_with_since_time() -> None:
    client = FakeLogs([record(1, "old", offset=-3600), record(2, "recent", offset=0)])
    app = LogsApp(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert visible_messages(screen) == ["old", "recent"]
        await pilot.press("r")  # 1m
        await asyncio.wait_for(screen.caught_up.wait(), 10)
        await pilot.pause()
        assert client.calls[-1] == {"follow": True, "tail": 10_000, "since_time": T0 + 20 - 60}
        assert visible_messages(screen) == ["recent"]
        assert "range 1m" in str(screen.query_one("#logs-status").render())


async def test_copy_line_and_last_lines() -> None:
    app = LogsApp(FakeLogs(FIXED), copy_lines=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot)
        await pilot.press("y")
        assert app.copied == ["session 7f3c saved"]
        await pilot.press("Y")
        assert app.copied[-1] == (
            "2027-01-15T08:00:08.000Z INFO agent " + FIXED[7]["message"] + "\n"
            "2027-01-15T08:00:09.000Z INFO devices device pairing request from 10.0.0.7 (iPhone)\n"
            "2027-01-15T08:00:10.000Z TRACE sessions session 7f3c saved"
        )
        notes = [n.message for n in app._notifications]
        assert "Copied line 10 (18 characters)." in notes
        assert any(n.startswith("Copied the last 3 lines") for n in notes)


async def test_detail_pretty_prints_json_and_closes() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(100, 30)) as pilot:
        await ready(pilot)
        await pilot.press("g", "enter")
        await pilot.pause()
        assert isinstance(app.screen, LogDetailScreen)
        body = app.screen.query_one("#logs-detail-body Static")
        assert '  "port": 18789' in str(body.render())
        await pilot.press("y")
        assert json.loads(app.copied[-1])["port"] == 18789
        await pilot.press("escape")
        assert isinstance(app.screen, LogsScreen)


async def test_dropped_counter_shows() -> None:
    app = LogsApp(FakeLogs(FIXED))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert "dropped" not in str(screen.query_one("#logs-status").render())
        await push(pilot, [record(11, "after a gap")], dropped=1234)
        assert "dropped 1,234" in str(screen.query_one("#logs-status").render())


EVIL = "\x1b]52;c;ZXZpbA==\x07\x1b[2J\x9b31m[bold red]markup[/]"


async def test_escape_sequences_are_inert() -> None:
    evil = record(11, EVIL, subsystem="agent\x1b[8m", raw=json.dumps({"msg": EVIL}))
    app = LogsApp(FakeLogs([*FIXED, evil]))
    async with app.run_test(size=(120, 24)) as pilot:
        screen = await ready(pilot)
        strips = [screen.view.render_line(y) for y in range(screen.view.size.height)]
        text = "\n".join(strip.text for strip in strips)
        assert "\u241b]52;c;ZXZpbA==\u2407\u241b[2J\ufffd31m[bold red]markup[/]" in text
        assert "agent\u241b[8m" in text
        for strip in strips:
            for segment in strip:
                assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in segment.text)
        # The detail view and the clipboard get the inert text too.
        await pilot.press("y")
        assert "\x1b" not in app.copied[-1] and "\x9b" not in app.copied[-1]
        await pilot.press("enter")
        await pilot.pause()
        body = str(app.screen.query_one("#logs-detail-body Static").render())
        assert "\x1b" not in body and "\x9b" not in body and "\x07" not in body
        assert "\\u001b]52" in body  # JSON shows the control as an escape, never as itself


async def test_stream_failure_is_shown_and_retried() -> None:
    from moltconsole.client import BackendUnreachable

    class Flaky(FakeLogs):
        async def logs(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
            self.calls.append(kwargs)
            if len(self.calls) == 1:
                yield {"type": "batch", "records": FIXED[:3], "dropped": 0}
                raise BackendUnreachable("no moltconsole backend answers")
            yield {"type": "batch", "records": FIXED[2:], "dropped": 0}  # repeats seq 3
            yield {"type": "caught_up"}
            while True:
                yield await self.live.get()

    client = Flaky([])
    app = LogsApp(client)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        assert client.calls[1] == {"follow": True, "since_seq": 4}
        assert [r.seq for r in screen.view.records] == list(range(1, 11))
        assert screen.problem is None


def write_log_lines(path: Path, lines: list[dict[str, Any]]) -> None:
    """Append JSON lines to the sandbox's OpenClaw log file, as OpenClaw writes them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(line) + "\n" for line in lines))


async def collected(client: BackendClient, message: str) -> None:
    """Wait until the backend has ``message`` in its history."""
    async def follow() -> None:
        async for batch in client.logs(tail=1, follow=True, grep=f"^{re.escape(message)}$"):
            if batch.get("records"):
                return

    await asyncio.wait_for(follow(), 30)


@pytest.mark.docker
async def test_filter_finds_lines_in_the_real_backends_history(
    backend: tuple[BackendService, BackendClient],
) -> None:
    """The real backend's spool holds lines memory does not: the filter finds them there."""
    service, client = backend
    log_file = service.logs.log_file
    now = time.time()
    lines = [{"time": now, "level": "warn" if i % 40 == 0 else "info", "subsystem": "probe",
              "message": f"needle {i}" if i % 40 == 0 else f"filler {i}"} for i in range(200)]
    write_log_lines(log_file, lines)
    await collected(client, "filler 199")

    app = LogsApp(client, max_lines=50, history_delay=0)
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await ready(pilot)
        # Memory holds 150-199: needle 160 is there, the older needles only on disk.
        assert [r.message for r in screen._buffer if r.message.startswith("needle")] == ["needle 160"]
        screen = await searched(pilot, "f", *"/^needle \\d+$/", "enter")
        assert visible_messages(screen) == [f"needle {i}" for i in range(0, 200, 40)]
        assert "+4 from history" in query_bar(screen)
        assert any(row.rstrip().endswith("needle 160") for row in rows(pilot))

        # Then live lines that match, and only those, follow.
        write_log_lines(log_file, [{"time": time.time(), "level": "info", "subsystem": "probe",
                                    "message": m} for m in ("filler 200", "needle 200")])
        while screen.view.records[-1].message != "needle 200":
            screen.applied.clear()
            await asyncio.wait_for(screen.applied.wait(), 30)
        assert visible_messages(screen)[-2:] == ["needle 160", "needle 200"]

        # A level floor asks the backend too: warn+ here is exactly the needles.
        screen = await searched(pilot, "escape", "l", "l", "l")
        assert visible_messages(screen) == [f"needle {i}" for i in range(0, 200, 40)]


@pytest.mark.docker
async def test_real_openclaw_lines_appear_on_the_logs_screen(
    backend: tuple[BackendService, BackendClient],
) -> None:
    """End to end: the real backend, the real container, the real client, this screen."""
    _, client = backend
    await client.action("start")
    await wait_state(client, "ready")
    app = LogsApp(client)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await ready(pilot)
        # The history (tail) already holds the gateway's start; live lines may follow.
        while not any(r.message == "gateway ready" and r.source == "file" for r in screen._buffer):
            screen.applied.clear()
            await asyncio.wait_for(screen.applied.wait(), 60)
        ready_line = next(r for r in screen._buffer if r.message == "gateway ready")
        assert ready_line.level == "info" and ready_line.raw.startswith("{")
        await pilot.press("f", *"/^gateway ready$/", "enter")
        assert any(row.endswith("gateway ready") for row in (r.rstrip() for r in rows(pilot)))
        await pilot.press("g", "enter")
        await pilot.pause()
        assert isinstance(app.screen, LogDetailScreen)
        assert '"gateway ready"' in str(app.screen.query_one("#logs-detail-body Static").render())


async def test_wrap_keeps_every_character_clear_of_the_scrollbar_and_indents_continuations() -> None:
    # Enough lines for a vertical scrollbar: a row folded at the full width lost its last
    # character under it ("En / ure authentication").
    words = " ".join(f"word{i:03d}" for i in range(40))
    app = LogsApp(FakeLogs([record(i, f"{i} {words}") for i in range(1, 40)]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        await pilot.press("w")
        await pilot.pause()
        view = screen.view
        usable = view.scrollable_content_region.width
        shown = rows(pilot)
        last = max(i for i, row in enumerate(shown) if row.startswith("08:00:"))
        head, tail = shown[last], [row for row in shown[last + 1:] if row.strip()]
        assert tail and all(row.startswith("  ") for row in tail)
        text = head[:usable] + "".join(row[2:usable] for row in tail)
        assert text.rstrip().endswith(f"39 {words}")


async def test_status_counts_one_line_in_the_singular() -> None:
    app = LogsApp(FakeLogs([record(1, "only line")]))
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await ready(pilot)
        status = str(screen.query_one("#logs-status").render())
        assert "1 line" in status and "1 lines" not in status

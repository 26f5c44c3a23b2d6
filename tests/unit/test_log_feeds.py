"""The Logs screen's feeds and history-search state, without a screen: the batcher resumes
after a break without a line twice, the history search says whether the backend refused, and
HistorySearch ignores stale answers and says what the view shows instead."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from moltconsole.client import BackendError, BackendWentAway
from moltconsole.screens.log_feeds import LogBatch, log_batches, search_history
from moltconsole.screens.log_history import HistoryPhase, HistorySearch
from moltconsole.streams import StreamState, Wakeup


def record(seq: int) -> dict[str, Any]:
    return {"seq": seq, "time": 1_800_000_000.0 + seq, "raw": f"line {seq}", "message": f"line {seq}"}


class ScriptedLogs:
    """Stands in for ``client.logs``: each call plays the next scripted connection and
    remembers what it was asked."""

    def __init__(self, *scripts: tuple[list[dict[str, Any]], BaseException | None]) -> None:
        self.scripts = list(scripts)
        self.asked: list[dict[str, Any]] = []

    def logs(self, **query: Any) -> AsyncIterator[dict[str, Any]]:
        self.asked.append(query)
        return self._play(*self.scripts.pop(0))

    async def _play(
        self, messages: list[dict[str, Any]], end: BaseException | None,
    ) -> AsyncIterator[dict[str, Any]]:
        for message in messages:
            yield message
        if end is not None:
            raise end


class NoPause(Wakeup):
    """Reconnect at once: the retry delay is the follower's business, not this test's."""

    async def wait(self, timeout: float) -> None:
        return None


async def test_batches_resume_after_the_last_seq_read_and_drop_what_is_sent_again() -> None:
    client = ScriptedLogs(
        ([{"type": "batch", "records": [record(1), record(2)], "dropped": 0},
          {"type": "caught_up"}], BackendWentAway("the backend went away")),
        # The server sends line 2 again after the break: it must not show twice.
        ([{"type": "batch", "records": [record(2), record(3)], "dropped": 1}], None),
    )
    states: list[StreamState] = []
    batches = log_batches(
        client, {"tail": 10, "since_time": None}, max_lines=10, on_state=states.append,
        wakeup=NoPause(),
    )
    got: list[LogBatch] = []
    async for batch in batches:
        got.append(batch)
        if sum(b.received for b in got) == 3:
            break
    await batches.aclose()  # type: ignore[attr-defined]

    assert client.asked[0] == {"follow": True, "tail": 10, "since_time": None}
    assert client.asked[1] == {"follow": True, "since_seq": 3}
    assert [r.seq for b in got for r in b.records] == [1, 2, 3]
    assert got[0].caught_up and sum(b.dropped for b in got) == 1
    assert any(s.phase == "reconnecting" for s in states)


async def test_a_batch_keeps_only_the_newest_max_lines() -> None:
    client = ScriptedLogs(
        ([{"type": "batch", "records": [record(n) for n in range(1, 8)], "dropped": 0},
          {"type": "caught_up"}], None),
    )
    batches = log_batches(client, {}, max_lines=3, on_state=lambda state: None, wakeup=NoPause())
    batch = await anext(batches)
    await batches.aclose()  # type: ignore[attr-defined]
    assert [r.seq for r in batch.records] == [5, 6, 7]
    assert batch.received == 7 and batch.caught_up


async def test_history_search_keeps_the_last_max_lines_and_tells_a_refusal_apart() -> None:
    found = ScriptedLogs(
        ([{"type": "batch", "records": [record(n) for n in range(1, 6)]}, {"type": "caught_up"}],
         None),
    )
    answer = await search_history(found, 4, {"grep": "line"}, max_lines=2, delay=0)
    assert found.asked == [{"follow": False, "tail": 2, "grep": "line"}]
    assert answer.generation == 4 and [r.seq for r in answer.records] == [4, 5]
    assert answer.problem is None

    refused = await search_history(
        ScriptedLogs(([], BackendError("bad regex", kind="request"))), 5, {}, max_lines=2, delay=0)
    assert (refused.problem, refused.refused) == ("bad regex", True)
    failed = await search_history(
        ScriptedLogs(([], BackendError("disk read failed"))), 6, {}, max_lines=2, delay=0)
    assert (failed.problem, failed.refused) == ("disk read failed", False)


def test_history_search_state_ignores_stale_answers_and_says_what_is_shown() -> None:
    search = HistorySearch()
    assert search.phase.value == "off" and search.describe() is None

    old = search.restart()
    search.begin()
    assert not search.settled.is_set()
    assert search.describe() is not None and "searching" in search.describe().plain  # type: ignore[union-attr]
    new = search.restart()
    assert not search.is_current(old) and search.is_current(new)

    search.fail("sub:gateway", "bad regex", refused=True)
    assert search.phase is HistoryPhase.FAILED and search.settled.is_set()
    assert search.error == (
        "The backend cannot search its history for sub:gateway: bad regex. "
        "Showing the matching lines in memory only."
    )
    search.restart()
    assert search.error is None

    search.settle(HistoryPhase.DONE)
    search.shown = 1234
    assert search.describe().plain == "+1,234 from history"
    search.settle(HistoryPhase.MEMORY)
    assert search.describe().plain == "history: all in memory"

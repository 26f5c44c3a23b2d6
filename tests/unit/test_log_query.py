"""The /v1/logs subscription request: validation and matching."""

from __future__ import annotations

import re

import pytest

from moltconsole_backend.logs.collector import LogQuery, QueryError


def record(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"seq": 1, "time": 100.0, "level": "info", "subsystem": "gateway",
                               "message": "hello", "source": "file", "raw": "", "cut": False}
    base.update(fields)
    return base


def test_full_request() -> None:
    query = LogQuery.from_json({"tail": 5, "since_seq": None, "since_time": 50, "follow": False,
                                "grep": "hel+o", "levels": ["info", "warn"]})
    assert query.tail == 5 and query.since_time == 50.0 and not query.follow
    assert query.matches(record())
    assert not query.matches(record(level="debug"))
    assert not query.matches(record(message="bye"))
    assert query.matches(record(message="bye", subsystem="hello-plugin"))
    assert not query.matches(record(time=10.0))


def test_sources_select_the_file_or_the_console() -> None:
    from_file = LogQuery.from_json({"sources": ["file"]})
    assert from_file.filtered and from_file.matches(record())
    assert not from_file.matches(record(source="stderr"))
    console = LogQuery.from_json({"sources": ["console"]})
    assert console.matches(record(source="stdout")) and console.matches(record(source="stderr"))
    assert not console.matches(record())


def test_defaults_follow_everything() -> None:
    query = LogQuery.from_json({})
    assert query.follow and not query.filtered and query.tail is None


@pytest.mark.parametrize(("request_", "message"), [
    ([], "log query must be a JSON object, not list"),
    ({"tail": -1}, "log query.tail must be at least 0 or null, not -1"),
    ({"tail": True}, "log query.tail must be an integer or null, not True"),
    ({"since_time": "yesterday"}, "log query.since_time must be a number or null, not 'yesterday'"),
    ({"follow": "yes"}, "log query.follow must be true or false, not 'yes'"),
    ({"grep": "(unclosed"}, "not a valid regular expression"),
    ({"levels": ["loud"]}, 'log query.levels[0] must be one of trace, debug, info, warn, error, fatal, ""'),
    ({"sources": ["journald"]}, "log query.sources[0] must be one of file, console, stdout, stderr"),
    ({"sources": "file"}, "log query.sources must be a list or null, not 'file'"),
    ({"colour": True}, "log query.colour is not a field of log query; send tail, since_seq, since_time"),
])
def test_bad_requests_say_what_to_fix(request_: object, message: str) -> None:
    with pytest.raises(QueryError, match=re.escape(message)):
        LogQuery.from_json(request_)

"""RequestRecord <-> JSON, for the cost API and the console that reads it back.

The JSON form is the dataclasses' own fields, nested (``usage``, ``cost``, ``attempts``), so a
record survives the round trip unchanged. Reading is strict about types (``records`` declares
them): a record that does not parse is a bug on the other side, and the error names the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import StrictInt

from moltconsole_shared.wire.records import RequestRecord
from moltconsole_shared.wire.schema import WireFormatError, WireSchema

RequestsKind = Literal["top", "errors", "recent"]


@dataclass(slots=True)
class RequestsPage:
    """``GET /v1/costs/requests``: the ``kind`` of list asked for and its records."""

    kind: RequestsKind
    requests: list[RequestRecord]


@dataclass(slots=True)
class TailBatch:
    """One message of ``/v1/costs/tail`` after ``{"type": "ready"}``: records the ledger
    committed, and how many did not fit the reader's queue (``dropped``)."""

    records: list[RequestRecord]
    dropped: StrictInt = 0
    type: Literal["batch"] = "batch"


RECORD: WireSchema[RequestRecord] = WireSchema(RequestRecord, "record")
REQUESTS_PAGE: WireSchema[RequestsPage] = WireSchema(RequestsPage, "requests page")
TAIL_BATCH: WireSchema[TailBatch] = WireSchema(TailBatch, "tail batch")

# The name callers catch; every wire error is one.
RecordFormatError = WireFormatError


def to_json(record: RequestRecord) -> dict[str, Any]:
    """The record as a JSON-ready dict (nested dicts for usage, cost and attempts)."""
    data: dict[str, Any] = RECORD.dump(record)
    return data


def from_json(data: Any) -> RequestRecord:
    """Read back what :func:`to_json` produced; RecordFormatError names a field that does not fit."""
    return RECORD.read(data)

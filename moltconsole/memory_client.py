"""The selected sandbox's memory, through the backend (``moltconsole_shared.wire.memory`` has
the routes and messages): ``client.memory.snapshots()``, ``.read(path)``, ``.restore(...)``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from moltconsole.client import BackendError
from moltconsole_shared.wire.memory import (
    BACKUP_RESULT,
    FILE_DIFF,
    FILE_HISTORY,
    FILE_LIST,
    IMPORT_RESULT,
    MEMORY_STATUS,
    MOLTWORKER_LISTING,
    MOLTWORKER_REQUEST,
    PRUNE_REQUEST,
    PRUNE_RESULT,
    RESTORE_REQUEST,
    RESTORE_RESULT,
    SEARCH_RESULT,
    SNAPSHOT_LIST,
    VERIFY_REQUEST,
    VERIFY_RESULT,
    BackupResult,
    FileDiff,
    FileHistory,
    FileList,
    ImportResult,
    MemoryStatus,
    MoltworkerListing,
    MoltworkerRequest,
    PruneRequest,
    PruneResult,
    RestoreRequest,
    RestoreResult,
    SearchResult,
    SnapshotList,
    VerifyRequest,
    VerifyResult,
)
from moltconsole_shared.wire.memory_db import (
    CONVERSATION,
    ROWS_PAGE,
    SESSION_LIST,
    TABLE_LIST,
    Conversation,
    RowsPage,
    SessionList,
    TableList,
)
from moltconsole_shared.wire.schema import WireFormatError

if TYPE_CHECKING:
    from moltconsole.client import BackendClient


class MemoryClient:
    """The memory resources of ``client``'s sandbox; every answer checked against its schema."""

    def __init__(self, client: BackendClient) -> None:
        self._client = client
        self._base = client._at("memory")

    async def _get(self, sub: str, params: dict[str, Any] | None = None, timeout: float | None = 60.0) -> Any:
        return await self._client._request("GET", self._base + sub, params=params, timeout=timeout)

    async def _post(self, sub: str, body: dict[str, Any]) -> Any:
        # Backups, restores, verifies and prunes take as long as the data takes.
        return await self._client._request("POST", self._base + sub, body, timeout=None)

    async def status(self) -> MemoryStatus:
        return self._client._read(MEMORY_STATUS, "a memory status", await self._get(""))

    async def snapshots(self) -> SnapshotList:
        return self._client._read(SNAPSHOT_LIST, "a snapshot list", await self._get("/snapshots"))

    async def files(self, snapshot: str | None = None) -> FileList:
        """Every file of the state directory now, or as it was in ``snapshot``."""
        # Decoded and checked in one pass: 10,000 files are a megabyte of JSON.
        raw = await self._client._bytes(self._base + "/files", {"snapshot": snapshot})
        try:
            return FILE_LIST.read_json(raw)
        except WireFormatError as exc:
            raise BackendError(
                f"the backend sent a file list this console cannot read ({exc}); the backend and the "
                "console may be different versions. Restart the backend."
            ) from None

    async def read(self, path: str, snapshot: str | None = None) -> bytes:
        """A file's bytes now, or as it was in ``snapshot``."""
        return await self._client._bytes(self._base + "/file", {"path": path, "snapshot": snapshot})

    async def write(self, path: str, content: bytes) -> BackupResult:
        """Replace a workspace file; answers the snapshot taken of what was there first."""
        data = await self._client._request(
            "PUT", self._base + "/file", params={"path": path}, content=content, timeout=60.0,
        )
        return self._client._read(BACKUP_RESULT, "an edit's answer", data)

    async def log(self, path: str) -> FileHistory:
        data = await self._get("/log", {"path": path})
        return self._client._read(FILE_HISTORY, "a file history", data)

    async def diff(self, path: str, old: str, new: str = "now") -> FileDiff:
        """The change to ``path`` from ``old`` to ``new`` (snapshot ids, or "now")."""
        data = await self._get("/diff", {"path": path, "from": old, "to": new})
        return self._client._read(FILE_DIFF, "a diff", data)

    async def search(self, query: str, snapshot: str | None = None, limit: int = 200) -> SearchResult:
        data = await self._get("/search", {"q": query, "snapshot": snapshot, "limit": limit})
        return self._client._read(SEARCH_RESULT, "a search result", data)

    async def tables(self, path: str, snapshot: str | None = None) -> TableList:
        """The tables of the SQLite database at ``path`` (read-only), now or in ``snapshot``."""
        data = await self._get("/db/tables", {"path": path, "snapshot": snapshot})
        return self._client._read(TABLE_LIST, "a table list", data)

    async def rows(
        self, path: str, table: str, offset: int = 0, limit: int = 100, snapshot: str | None = None,
    ) -> RowsPage:
        params = {"path": path, "table": table, "offset": offset, "limit": limit, "snapshot": snapshot}
        return self._client._read(ROWS_PAGE, "a page of rows", await self._get("/db/rows", params))

    async def sessions(self, snapshot: str | None = None) -> SessionList:
        """OpenClaw's sessions (of every agent), the most recently updated first."""
        data = await self._get("/sessions", {"snapshot": snapshot})
        return self._client._read(SESSION_LIST, "a session list", data)

    async def conversation(
        self, session: str, snapshot: str | None = None, internal: bool = False,
    ) -> Conversation:
        """One session's turns, oldest first (``session`` is a ref from ``sessions()``)."""
        params = {"session": session, "snapshot": snapshot, "internal": "1" if internal else None}
        return self._client._read(CONVERSATION, "a conversation", await self._get("/conversation", params))

    async def backup(self) -> BackupResult:
        return self._client._read(BACKUP_RESULT, "a backup result", await self._post("/backup", {}))

    async def restore(self, snapshot: str, path: str | None = None) -> RestoreResult:
        body = RESTORE_REQUEST.dump(RestoreRequest(snapshot=snapshot, path=path))
        return self._client._read(RESTORE_RESULT, "a restore result", await self._post("/restore", body))

    async def verify(self, sample: float | None = None) -> VerifyResult:
        body = VERIFY_REQUEST.dump(VerifyRequest(sample=sample))
        return self._client._read(VERIFY_RESULT, "a verify result", await self._post("/verify", body))

    async def moltworker(self, location: str, endpoint_url: str | None = None) -> MoltworkerListing:
        """The files of a Moltworker bucket, read-only."""
        data = await self._get("/moltworker", {"location": location, "endpoint_url": endpoint_url}, None)
        return self._client._read(MOLTWORKER_LISTING, "a Moltworker listing", data)

    async def moltworker_file(self, location: str, key: str, endpoint_url: str | None = None) -> bytes:
        """One file of a Moltworker bucket, as the bucket holds it (``key`` from the listing's
        ``keys``); read-only, at most 8 MiB."""
        params = {"location": location, "key": key, "endpoint_url": endpoint_url}
        return await self._client._bytes(self._base + "/moltworker/file", params)

    async def import_moltworker(
        self, location: str, endpoint_url: str | None = None, restore: bool = True,
    ) -> ImportResult:
        """A Moltworker bucket imported as this sandbox's newest snapshot (and restored into an
        empty state directory, with ``restore``)."""
        body = MOLTWORKER_REQUEST.dump(MoltworkerRequest(location, endpoint_url, restore))
        data = await self._post("/import-moltworker", body)
        return self._client._read(IMPORT_RESULT, "an import result", data)

    async def prune(self, request: PruneRequest | None = None) -> PruneResult:
        body = PRUNE_REQUEST.dump(request or PruneRequest())
        return self._client._read(PRUNE_RESULT, "a prune result", await self._post("/prune", body))

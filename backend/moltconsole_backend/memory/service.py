"""The backend's memory: one repository for all sandboxes (under ``<data_dir>/memory``, with the
bucket behind it when ``memory.repository`` names one), and a keeper per sandbox.

Opening it never stops the backend: a wrong passphrase, a bucket holding another repository
or a malformed location leaves memory off with the reason in ``problem``, which status shows.
Credentials (the bucket's keys, the passphrase) are read from the keys file or the backend's
environment, and never reach a sandbox or a log line.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path

from moltconsole_backend.memory.keeper import MemoryKeeper, Notify
from moltconsole_backend.memory.replicate import Replica
from moltconsole_backend.memory.repo import Repository, RepositoryError
from moltconsole_backend.memory.store import LocalFirst, LocalStore, ObjectStore, StoreError
from moltconsole_backend.settings import Settings

log = logging.getLogger(__name__)


def bucket_store(settings: Settings, env: Mapping[str, str]) -> ObjectStore | None:
    """The bucket ``memory.repository`` names (None: local only); ValueError if malformed."""
    memory = settings.memory
    if not memory.repository:
        return None
    from moltconsole_backend.memory.s3 import parse_location, s3_store_from

    location = parse_location(memory.repository)
    location = dataclasses.replace(
        location,
        endpoint_url=memory.endpoint_url or location.endpoint_url,
        account_id=memory.account_id or location.account_id,
        region=memory.region or location.region,
        access_key_env=memory.access_key_env or location.access_key_env,
        secret_key_env=memory.secret_key_env or location.secret_key_env,
        path_style=memory.path_style or location.path_style,
    )
    return s3_store_from(location, env)


def moltworker_store(
    settings: Settings, env: Mapping[str, str], location: str, endpoint_url: str = "",
) -> ObjectStore:
    """A Moltworker bucket to read (``r2://bucket`` or ``s3://bucket/prefix``), reached with the
    memory settings' account id, region and path style and the same credentials variables;
    ValueError saying what to set when something is missing or malformed."""
    from moltconsole_backend.memory.s3 import parse_location, s3_store_from

    memory = settings.memory
    parsed = parse_location(location)
    parsed = dataclasses.replace(
        parsed,
        endpoint_url=endpoint_url or parsed.endpoint_url or (
            memory.endpoint_url if parsed.service == "s3" else ""
        ),
        account_id=parsed.account_id or memory.account_id,
        region=parsed.region or memory.region,
        path_style=parsed.path_style or memory.path_style,
        access_key_env=parsed.access_key_env or memory.access_key_env,
        secret_key_env=parsed.secret_key_env or memory.secret_key_env,
    )
    return s3_store_from(parsed, env)


class MemoryService:
    """Opens the repository once, and makes each sandbox's keeper."""

    def __init__(self, settings: Settings, env: Mapping[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.repo: Repository | None = None
        self.replica: Replica | None = None
        self.problem = ""  # why memory is off, when it should be on

    @property
    def enabled(self) -> bool:
        return self.repo is not None

    async def open(self) -> None:
        if not self.settings.memory.enabled:
            return
        try:
            self.repo, self.replica = await asyncio.to_thread(self._open)
        except (RepositoryError, StoreError, ValueError) as exc:
            self.problem = f"memory is off: {exc}"
            log.error("%s", self.problem)

    def _open(self) -> tuple[Repository, Replica | None]:
        memory = self.settings.memory
        passphrase = None
        if memory.encryption_key_env:
            passphrase = self.env.get(memory.encryption_key_env) or None
            if passphrase is None:
                raise RepositoryError(
                    f"memory.encryption_key_env names {memory.encryption_key_env}, which is not set; "
                    f"set it with 'moltconsole keys set {memory.encryption_key_env}'"
                )
        local = LocalStore(self.settings.memory_dir)
        remote = bucket_store(self.settings, self.env)
        if remote is None:
            return Repository(local, passphrase).open(), None
        try:
            if Replica.adopt(local, remote):
                log.info("memory: took the repository of %s (a new server)", remote.where)
        except StoreError as exc:
            log.warning("memory bucket %s not reachable at startup: %s", remote.where, exc)
        repo = Repository(LocalFirst(local, remote), passphrase).open()
        return repo, Replica(repo, remote)

    def keeper(self, name: str, state_dir: Path, notify: Notify | None = None) -> MemoryKeeper | None:
        """The keeper of sandbox ``name`` (None while memory is off)."""
        if self.repo is None:
            return None
        return MemoryKeeper(name, state_dir, self.repo, self.replica, self.settings.memory, notify)

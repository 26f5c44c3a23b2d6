"""A memory repository: content-addressed blobs and one manifest per snapshot.

The format (documented in the README so a user can read a bucket without moltconsole):

    config.json                          what the repository is: format, version, id, and
                                         (when encrypted) the key derivation and a key check
    blobs/<2 hex>/<64 hex>               one file's content, zlib-compressed; the name is the
                                         SHA-256 of the content (HMAC-SHA256 under the key when
                                         encrypted, so names reveal nothing)
    snapshots/<sandbox>/<snapshot id>.json   one snapshot: every file's path, blob, size, mode
                                         and mtime; plain JSON (encrypted when encryption is on)

A snapshot id is its UTC time and a random suffix (``20261203T103000123Z-1a2b3c``), so ids
sort by time. Blobs are written before the manifest that names them, and a blob is never
rewritten: a crash at any point leaves, at worst, blobs no manifest names (prune removes
them), never a manifest that names a missing blob. An unchanged file is never uploaded again,
and identical files are stored once.

Prune against backups (one backend per repository): a blob that a backup finds already stored
is not written again, so a prune that saw no manifest naming it could delete it just before
the backup's manifest names it. Every writer (a snapshot, a copy to the bucket) holds the
repository ``shared()`` from its first blob to its manifest; forget and prune hold it
``exclusive()`` while they delete, and prune takes the names it deleted out of the
known-blob cache (so the next backup writes them again). That lock lives in this process: one
backend per repository means no other process (a second backend, another server, a tool run
by hand) writes to the same directory or bucket prefix while this one prunes; the bucket is a
copy of this backend's repository, never shared by two.

Encryption (optional): AES-256-GCM from the ``cryptography`` package. The key is derived from
the user's passphrase with scrypt (its salt in config.json); a blob or manifest is a 12-byte
nonce followed by the ciphertext and its tag. The passphrase lives in the backend's config or
environment only, never in the sandbox or the bucket.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from moltconsole_backend.memory.store import LocalFirst, ObjectMissing, ObjectStore, check_key

FORMAT = "moltconsole-memory"
VERSION = 1
CONFIG_KEY = "config.json"
BLOBS = "blobs"
SNAPSHOTS = "snapshots"
# zlib level 1: twice as fast as 3 on a 50 MB database image for 3% more bytes (measured).
COMPRESS_LEVEL = 1
SNAPSHOT_ID = _ID = re.compile(r"\d{8}T\d{9}Z-[0-9a-f]{6}")
_BLOB = re.compile(r"[0-9a-f]{64}")
_CHECK = b"moltconsole-memory key check"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class RepositoryError(Exception):
    """The repository cannot be used as it is; the message says why and what to do."""


class CorruptObject(RepositoryError):
    """An object does not match its name or cannot be decoded (a damaged or foreign object)."""


@dataclass(frozen=True)
class FileEntry:
    """One file of a snapshot: its path under the state directory ('/'-separated), its blob,
    size in bytes, permission bits and modification time (ns)."""

    path: str
    blob: str
    size: int
    mode: int = 0o600
    mtime_ns: int = 0


@dataclass(frozen=True)
class Snapshot:
    """One snapshot of a sandbox's state directory."""

    id: str
    sandbox: str
    time: float
    reason: str  # change, schedule, manual, before-stop, safety, import, ...
    files: list[FileEntry] = field(default_factory=list)
    parent: str | None = None
    host: str = ""

    @property
    def size(self) -> int:
        """The bytes of all its files (before compression)."""
        return sum(f.size for f in self.files)

    @property
    def key(self) -> str:
        return snapshot_key(self.sandbox, self.id)

    def to_json(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies every entry (0.1 s for 10,000 files).
        return {
            "id": self.id, "sandbox": self.sandbox, "time": self.time, "reason": self.reason,
            "files": [
                {"path": f.path, "blob": f.blob, "size": f.size, "mode": f.mode, "mtime_ns": f.mtime_ns}
                for f in self.files
            ],
            "parent": self.parent, "host": self.host, "version": VERSION,
        }

    @classmethod
    def from_json(cls, data: Any, where: str) -> Snapshot:
        """A manifest read back, checked (it may come from a bucket anyone could write)."""
        try:
            files = [FileEntry(**entry) for entry in data["files"]]
            snap = cls(
                id=str(data["id"]), sandbox=str(data["sandbox"]), time=float(data["time"]),
                reason=str(data["reason"]), files=files, parent=data.get("parent"),
                host=str(data.get("host", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptObject(f"{where} is not a snapshot manifest ({exc})") from None
        for entry in files:
            if not _BLOB.fullmatch(str(entry.blob)) or not isinstance(entry.size, int):
                raise CorruptObject(f"{where} names a blob that is not one: {entry.blob!r}")
        return snap


@dataclass(frozen=True)
class BadManifest:
    """A manifest that cannot be read: its key, and why (damaged, foreign, a wrong key)."""

    key: str
    reason: str


def list_every_copy(store: ObjectStore, prefix: str) -> Iterator[str]:
    """Every key under ``prefix``, from every copy of the repository: a local repository with
    a bucket behind it (``LocalFirst``) lists both, and an unreachable bucket raises instead
    of being passed over (a forget, prune or verify must not decide on half the snapshots)."""
    if not isinstance(store, LocalFirst):
        yield from store.list(prefix)
        return
    seen = set(list_every_copy(store.local, prefix))
    yield from seen
    for key in list_every_copy(store.remote, prefix):
        if key not in seen:
            yield key


def blob_names(keys: Iterable[str]) -> set[str]:
    """The blob names among the keys of a listing of ``blobs/`` (other keys passed over)."""
    found = set()
    for key in keys:
        name = key.rsplit("/", 1)[-1]
        if _BLOB.fullmatch(name) and key == blob_key(name):
            found.add(name)
    return found


class _SharedOrExclusive:
    """Any number of holders of the shared side at once, or one of the exclusive side alone.
    The exclusive side waits for a moment with no shared holder (it never makes shared
    holders wait in line, so a snapshot never waits for a prune that has not begun)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    def waiting(self) -> None:
        """Called when the exclusive side has to wait (nothing to do; tests watch it)."""

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._exclusive)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            if self._exclusive or self._shared:
                self.waiting()
            self._cond.wait_for(lambda: not self._exclusive and not self._shared)
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def new_snapshot_id(now: float | None = None) -> str:
    """A snapshot id: UTC time to the millisecond, then a random suffix."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"
    return f"{stamp}-{os.urandom(3).hex()}"


def snapshot_key(sandbox: str, snapshot_id: str) -> str:
    return check_key(f"{SNAPSHOTS}/{sandbox}/{snapshot_id}.json")


def blob_key(blob: str) -> str:
    return f"{BLOBS}/{blob[:2]}/{blob}"


class _Cipher:
    """AES-256-GCM with keys derived from a passphrase (scrypt, then one key per purpose)."""

    def __init__(self, passphrase: str, salt: bytes, params: dict[str, int]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

        master = Scrypt(salt=salt, length=32, **params).derive(passphrase.encode())
        self._aead = AESGCM(hmac.new(master, b"encrypt", hashlib.sha256).digest())
        self.mac_key = hmac.new(master, b"blob names", hashlib.sha256).digest()

    def seal(self, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, None)

    def open(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(data[:12], data[12:], None)
        except (InvalidTag, ValueError):
            raise CorruptObject("cannot decrypt: a wrong key, or a damaged object") from None


class Repository:
    """Snapshots and blobs in one ``ObjectStore``. Thread-safe for one writer per sandbox;
    writers hold ``shared()``, forget and prune ``exclusive()`` (see the module docstring)."""

    def __init__(self, store: ObjectStore, passphrase: str | None = None) -> None:
        self.store = store
        self._passphrase = passphrase or None
        self._cipher: _Cipher | None = None
        self._known: set[str] | None = None  # blob names in the store, listed once
        self._lock = threading.Lock()
        self.access = _SharedOrExclusive()
        self._on_deleted: list[Callable[[], None]] = []
        self.id = ""

    def __repr__(self) -> str:
        return f"Repository({self.store.where!r}, encrypted={self._passphrase is not None})"

    # --- opening ----------------------------------------------------------------------------
    def open(self, *, create: bool = True) -> Repository:
        """Read config.json (or, with ``create``, write a new one); check the key matches."""
        try:
            config = json.loads(self.store.get(CONFIG_KEY))
        except ObjectMissing:
            if not create:
                raise RepositoryError(f"there is no memory repository at {self.store.where}") from None
            self._create()
            return self
        except ValueError:
            raise RepositoryError(
                f"{self.store.where}/{CONFIG_KEY} is not a moltconsole memory repository's config"
            ) from None
        if not isinstance(config, dict) or config.get("format") != FORMAT:
            raise RepositoryError(
                f"{self.store.where} holds something other than a moltconsole memory repository; "
                "point memory.repository at an empty place or one moltconsole made"
            )
        if config.get("version") != VERSION:
            raise RepositoryError(
                f"the repository at {self.store.where} is format version {config.get('version')}; "
                f"this moltconsole reads version {VERSION}. Upgrade moltconsole."
            )
        self.id = str(config.get("id", ""))
        self._setup_cipher(config.get("encryption"))
        return self

    def _create(self) -> None:
        config: dict[str, Any] = {"format": FORMAT, "version": VERSION, "id": uuid.uuid4().hex,
                                  "compression": "zlib", "encryption": None}
        if self._passphrase is not None:
            salt = os.urandom(16)
            cipher = _Cipher(self._passphrase, salt, _SCRYPT)
            config["encryption"] = {
                "cipher": "AES-256-GCM", "kdf": "scrypt", **_SCRYPT,
                "salt": base64.b64encode(salt).decode(),
                "check": base64.b64encode(cipher.seal(_CHECK)).decode(),
            }
        self.store.put(CONFIG_KEY, json.dumps(config, indent=2).encode() + b"\n")
        self.id = config["id"]
        self._setup_cipher(config["encryption"])

    def _setup_cipher(self, encryption: Any) -> None:
        if encryption is None:
            if self._passphrase is not None:
                raise RepositoryError(
                    f"the repository at {self.store.where} is not encrypted, but an encryption key "
                    "is set; unset memory.encryption_key_env or use a new repository"
                )
            return
        if self._passphrase is None:
            raise RepositoryError(
                f"the repository at {self.store.where} is encrypted; set the variable that "
                "memory.encryption_key_env names to its passphrase"
            )
        try:
            salt = base64.b64decode(encryption["salt"])
            params = {k: int(encryption[k]) for k in ("n", "r", "p")}
            check = base64.b64decode(encryption["check"])
        except (KeyError, TypeError, ValueError):
            raise RepositoryError(f"{self.store.where}/{CONFIG_KEY} has a damaged encryption block") from None
        cipher = _Cipher(self._passphrase, salt, params)
        try:
            if cipher.open(check) != _CHECK:
                raise CorruptObject("check")
        except CorruptObject:
            raise RepositoryError(
                f"the encryption key does not open the repository at {self.store.where}: a wrong passphrase"
            ) from None
        self._cipher = cipher

    @property
    def encrypted(self) -> bool:
        return self._cipher is not None

    def view(self, store: ObjectStore) -> Repository:
        """The same repository (key, id) read from ``store``, another copy of it (the bucket
        behind a local repository), without deriving the key again."""
        other = Repository(store)
        other._passphrase, other._cipher, other.id = self._passphrase, self._cipher, self.id
        return other

    # --- writers and pruners ----------------------------------------------------------------
    def shared(self) -> contextlib.AbstractContextManager[None]:
        """Held by a writer from its first blob to its manifest: no prune deletes meanwhile."""
        return self.access.shared()

    def exclusive(self) -> contextlib.AbstractContextManager[None]:
        """Held by forget and prune while they delete: no writer is between blobs and manifest."""
        return self.access.exclusive()

    def on_blobs_deleted(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after a prune deleted blobs (a cache of what the bucket holds
        must be listed again); it runs while the prune holds ``exclusive()``."""
        self._on_deleted.append(callback)

    def blobs_deleted(self, names: Iterable[str]) -> None:
        """A prune deleted ``names``: they are no longer known (a backup that needs one writes
        it again), and the callbacks are told."""
        with self._lock:
            if self._known is not None:
                self._known.difference_update(names)
        for callback in self._on_deleted:
            callback()

    # --- blobs ------------------------------------------------------------------------------
    def blob_name(self, content: bytes) -> str:
        """The name ``content`` has in this repository."""
        if self._cipher is not None:
            return hmac.new(self._cipher.mac_key, content, hashlib.sha256).hexdigest()
        return hashlib.sha256(content).hexdigest()

    def known_blobs(self) -> set[str]:
        """The blob names in the store (listed once, then kept up to date by this process)."""
        with self._lock:
            if self._known is None:
                self._known = blob_names(self.store.list(BLOBS + "/"))
            return self._known

    def has_blob(self, name: str) -> bool:
        """Whether blob ``name`` is in the store, as far as this process knows."""
        known = self.known_blobs()
        with self._lock:
            return name in known

    def forget_known(self) -> None:
        """List the store's blobs again next time (another process may have changed it)."""
        with self._lock:
            self._known = None

    def put_blob(self, content: bytes) -> tuple[str, int]:
        """Store ``content`` unless it is there already; its name, and the bytes written (0 if
        it was there)."""
        name = self.blob_name(content)
        known = self.known_blobs()
        if name in known:
            return name, 0
        data = self.encode(content)
        self.store.put(blob_key(name), data)
        with self._lock:
            known.add(name)
        return name, len(data)

    def encode(self, content: bytes) -> bytes:
        data = zlib.compress(content, COMPRESS_LEVEL)
        return self._cipher.seal(data) if self._cipher is not None else data

    def get_blob(self, name: str) -> bytes:
        """The content of blob ``name``, checked against its name."""
        if not _BLOB.fullmatch(name):
            raise CorruptObject(f"{name!r} is not a blob name")
        return self.decode(name, self.store.get(blob_key(name)))

    def read_file(self, entry: FileEntry) -> bytes:
        """The content of a snapshot's file."""
        return self.get_blob(entry.blob)

    def decode(self, name: str, data: bytes) -> bytes:
        """A blob's stored bytes back to its content, checked against ``name``."""
        if self._cipher is not None:
            data = self._cipher.open(data)
        try:
            content = zlib.decompress(data)
        except zlib.error:
            raise CorruptObject(f"blob {name} cannot be decompressed: it is damaged") from None
        if self.blob_name(content) != name:
            raise CorruptObject(f"blob {name} does not match its name: it is damaged")
        return content

    # --- snapshots --------------------------------------------------------------------------
    def write_snapshot(self, snapshot: Snapshot) -> None:
        """Write the manifest (after every blob it names is stored)."""
        body = json.dumps(snapshot.to_json(), separators=(",", ":")).encode()
        if self._cipher is not None:
            body = self._cipher.seal(body)
        self.store.put(snapshot.key, body)

    def read_snapshot(self, sandbox: str, snapshot_id: str) -> Snapshot:
        """One snapshot's manifest, checked."""
        key = snapshot_key(sandbox, snapshot_id)
        data = self.store.get(key)
        if self._cipher is not None:
            data = self._cipher.open(data)
        try:
            parsed = json.loads(data)
        except ValueError:
            raise CorruptObject(f"{key} is not JSON") from None
        snap = Snapshot.from_json(parsed, key)
        if (snap.sandbox, snap.id) != (sandbox, snapshot_id):
            raise CorruptObject(f"{key} describes another snapshot ({snap.sandbox}/{snap.id})")
        return snap

    def snapshot_ids(
        self, sandbox: str | None = None, *, every_copy: bool = False,
    ) -> Iterator[tuple[str, str]]:
        """(sandbox, snapshot id) of every manifest in the store, unordered; keys that are not
        a manifest's are passed over. With ``every_copy``, an unreachable bucket behind the
        local repository raises (``list_every_copy``) instead of being passed over."""
        prefix = f"{SNAPSHOTS}/{sandbox}/" if sandbox else f"{SNAPSHOTS}/"
        keys = list_every_copy(self.store, prefix) if every_copy else self.store.list(prefix)
        for key in keys:
            parts = key.split("/")
            if len(parts) == 3 and parts[2].endswith(".json") and _ID.fullmatch(parts[2][:-5]):
                yield parts[1], parts[2][:-5]

    def snapshots(self, sandbox: str | None = None) -> list[Snapshot]:
        """Every snapshot (of ``sandbox``), oldest first."""
        found = [self.read_snapshot(s, i) for s, i in self.snapshot_ids(sandbox)]
        return sorted(found, key=lambda snap: (snap.time, snap.id))

    def readable_snapshots(
        self, ids: Iterable[tuple[str, str]], progress: Callable[[int], None] | None = None,
    ) -> tuple[list[Snapshot], list[BadManifest]]:
        """The snapshots ``ids`` names (oldest first), and the manifests that cannot be read;
        one deleted since it was listed is passed over. ``progress(done)`` after each."""
        found: list[Snapshot] = []
        bad: list[BadManifest] = []
        for done, (sandbox, snapshot_id) in enumerate(ids, 1):
            try:
                found.append(self.read_snapshot(sandbox, snapshot_id))
            except ObjectMissing:
                pass  # forgotten meanwhile
            except CorruptObject as exc:
                bad.append(BadManifest(snapshot_key(sandbox, snapshot_id), str(exc)))
            if progress is not None:
                progress(done)
        return sorted(found, key=lambda snap: (snap.time, snap.id)), bad

    def latest(self, sandbox: str) -> Snapshot | None:
        """The newest snapshot of ``sandbox``, or None."""
        ids = sorted(i for _, i in self.snapshot_ids(sandbox))
        return self.read_snapshot(sandbox, ids[-1]) if ids else None

    def snapshot_exists(self, snapshot: Snapshot) -> bool:
        """Whether ``snapshot``'s manifest is still in the store (a prune may have forgotten it)."""
        return self.store.exists(snapshot.key)

    def delete_snapshot(self, snapshot: Snapshot) -> None:
        """Remove one manifest (its blobs stay until a prune finds them unused)."""
        self.store.delete(snapshot.key)

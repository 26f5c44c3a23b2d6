"""The two places log lines come from, each read by a blocking loop on a thread of its own.

* ``ContainerLogReader``: ``docker logs --follow --timestamps`` of the sandbox container. The
  multiplexed stream is read in large chunks and split into frames here (docker-py's own helper
  makes two small reads per line, too slow for 50,000 lines/s). Docker's timestamp of the last
  line handed on is the cursor: a re-attach asks for ``since`` it and skips what it already saw.
* ``FileTailer``: OpenClaw's JSON log file on the host, followed by (device, inode, offset).
  When OpenClaw rotates it (``openclaw.log`` -> ``openclaw.1.log``), the old file is read to its
  end through the still-open descriptor before the new one is opened.

Both hand batches of parsed records, with the cursor they reach, to a ``Sink``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moltconsole_backend.logs.record import Record, cut_line, parse_file_line, parse_human, parse_time

log = logging.getLogger(__name__)
# A batch of records plus the source's cursor after them (saved with the batch, atomically).
Sink = Callable[[list[Record], dict[str, Any]], None]
_HEADER = struct.Struct(">BxxxL")
_STREAMS = {1: "stdout", 2: "stderr"}
READ_SIZE = 256 * 1024


_minute_ns: dict[bytes, int] = {}


def docker_ns(stamp: bytes) -> int:
    """Docker's RFC 3339 nanosecond UTC timestamp (``...T13:57:52.0050751Z``) as integer ns."""
    minute = stamp[:16]
    base = _minute_ns.get(minute)
    if base is None:
        seconds = parse_time(minute.decode() + ":00Z")
        if seconds is None or len(stamp) < 20:
            raise ValueError(f"not a Docker timestamp: {stamp!r}")
        if len(_minute_ns) > 10_000:
            _minute_ns.clear()
        base = _minute_ns[minute] = round(seconds) * 1_000_000_000
    frac = stamp[20:-1] if stamp[19:20] == b"." else b""
    return base + int(stamp[17:19]) * 1_000_000_000 + int(frac[:9].ljust(9, b"0"))


def docker_since(ns: int) -> str:
    """The ``since`` query value for a nanosecond timestamp (Docker takes seconds.nanos)."""
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


class ContainerLogReader:
    """Follows one container's stdout/stderr until the stream ends or ``stop`` is called."""

    def __init__(
        self, api: Any, container_id: str, *, last_ns: dict[int, int], max_line_bytes: int, sink: Sink
    ) -> None:
        self.api = api
        self.container_id = container_id
        self.last_ns = dict(last_ns)  # stream (1 stdout, 2 stderr) -> last timestamp taken
        self.max_line_bytes = max_line_bytes
        self.sink = sink
        self._sock: socket.socket | None = None
        self._stopped = False

    def stop(self) -> None:
        """Unblock the reading thread (from any thread)."""
        self._stopped = True
        sock = self._sock
        if sock is not None:
            # shutdown, not close: it wakes a recv blocked in another thread.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> int:
        """Blocking: read until the container's output ends; return the number of lines read."""
        api = self.api
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 1}
        if self.last_ns:
            # A second of overlap: the other stream may lag a little; repeats are dropped.
            params["since"] = docker_since(max(0, max(self.last_ns.values()) - 1_000_000_000))
        response = api._get(api._url("/containers/{0}/logs", self.container_id), params=params, stream=True)
        api._raise_for_status(response)
        sock = api._get_raw_response_socket(response)
        api._disable_socket_timeout(sock)
        self._sock = sock if isinstance(sock, socket.socket) else None
        if self._stopped:
            self.stop()
        try:
            return self._pump(response)
        finally:
            with contextlib.suppress(Exception):
                response.close()

    def _pump(self, response: Any) -> int:
        # Read the HTTP body ourselves, in large pieces: urllib3/http.client hand out one
        # chunk (one log line) per read, which costs more than the rest of the pipeline.
        fp = response.raw._fp.fp
        body = _Dechunker() if response.raw._fp.chunked else None
        buffer = bytearray()
        partial: dict[int, bytearray] = {}
        # Per stream, Docker's timestamps only grow. A line not newer than the last one taken
        # from its stream was seen before: `since` is inclusive, and Docker re-sends lines
        # when its json-file log rotates under a follower (measured here: 74,000 repeats in
        # 500,000 lines). stdout and stderr are stamped by separate goroutines, so each
        # stream is compared with itself only.
        last = self.last_ns
        limit = self.max_line_bytes
        total = 0
        while True:
            try:
                chunk = fp.read1(READ_SIZE)
            except (OSError, ValueError, AttributeError) as exc:
                if self._stopped:
                    return total
                raise ConnectionError(f"container log stream broke: {exc}") from exc
            if not chunk:
                return total
            if body is not None:
                chunk = body.feed(chunk)
            buffer += chunk
            records: list[Record] = []
            pos = 0
            size = len(buffer)
            while size - pos >= 8:
                stream, length = _HEADER.unpack_from(buffer, pos)
                end = pos + 8 + length
                if end > size:
                    break
                payload = bytes(buffer[pos + 8 : end])
                pos = end
                stamp, _, line = payload.partition(b" ")
                ns = docker_ns(stamp)
                if ns <= last.get(stream, 0):
                    continue
                last[stream] = ns
                if not line.endswith(b"\n"):
                    # Docker splits lines over 16 KiB into partial messages: join them, capped.
                    pending = partial.setdefault(stream, bytearray())
                    if len(pending) <= limit:
                        pending += line[: limit + 1 - len(pending)]
                    continue
                if stream in partial:
                    line = bytes(partial.pop(stream)) + line
                line, cut = cut_line(line.rstrip(b"\r\n"), limit)
                records.append(
                    parse_human(
                        line.decode("utf-8", "replace"),
                        source=_STREAMS.get(stream, "stdout"),
                        received=ns / 1e9,
                        cut=cut,
                    )
                )
            del buffer[:pos]
            if records:
                total += len(records)
                self.sink(records, {"docker": {str(k): v for k, v in last.items()}})
            if body is not None and body.finished:
                return total


class _Dechunker:
    """Decodes HTTP/1.1 chunked transfer encoding from arbitrary pieces of the body."""

    def __init__(self) -> None:
        self._raw = bytearray()
        self._left = 0  # bytes of the current chunk still to come
        self._crlf = False  # a chunk's data ended; its CRLF is next
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        """The payload bytes contained in ``data`` (and what was left over before it)."""
        raw = self._raw
        raw += data
        out = bytearray()
        pos = 0
        while not self.finished:
            if self._left == 0:
                if self._crlf:
                    if len(raw) - pos < 2:
                        break
                    pos += 2
                    self._crlf = False
                eol = raw.find(b"\r\n", pos)
                if eol < 0:
                    break
                size = int(bytes(raw[pos:eol]).split(b";")[0], 16)
                pos = eol + 2
                if size == 0:
                    self.finished = True
                    break
                self._left = size
            take = min(self._left, len(raw) - pos)
            if take <= 0:
                break
            out += raw[pos : pos + take]
            pos += take
            self._left -= take
            if self._left == 0:
                self._crlf = True
        del raw[:pos]
        return bytes(out)


@dataclass
class FilePosition:
    """Where the tailer is: which file (device, inode) and how far into it."""

    dev: int = 0
    ino: int = 0
    offset: int = 0

    def to_json(self) -> dict[str, int]:
        """For the cursor file."""
        return {"dev": self.dev, "ino": self.ino, "offset": self.offset}


class FileTailer:
    """Follows OpenClaw's JSON log file across rotations, truncations and restarts."""

    def __init__(
        self, path: Path, position: FilePosition, *, max_line_bytes: int, sink: Sink, interval: float = 0.1
    ) -> None:
        self.path = path
        self.position = position
        self.max_line_bytes = max_line_bytes
        self.sink = sink
        self.interval = interval
        self._stop = threading.Event()

    def stop(self) -> None:
        """Make ``run`` return (from any thread)."""
        self._stop.set()

    def run(self) -> None:
        """Blocking: poll the file until stopped."""
        fh = None
        try:
            while not self._stop.is_set():
                if fh is None:
                    fh = self._open()
                if fh is not None:
                    fh = self._follow(fh)
                self._stop.wait(self.interval)
        finally:
            if fh is not None:
                fh.close()

    def _open(self) -> Any:
        try:
            fh = open(self.path, "rb")  # noqa: SIM115 - held across polls
        except FileNotFoundError:
            return None
        info = os.fstat(fh.fileno())
        saved = self.position
        if (info.st_dev, info.st_ino) == (saved.dev, saved.ino):
            fh.seek(saved.offset if saved.offset <= info.st_size else 0)
            return fh
        if saved.ino:
            # The file we were reading was rotated while we were away: finish it first.
            old = self._find_rotated(saved)
            if old is not None:
                with old:
                    old.seek(saved.offset)
                    self._read_to_end(old, saved)
        self.position = FilePosition(info.st_dev, info.st_ino, 0)
        return fh

    def _find_rotated(self, saved: FilePosition) -> Any:
        for candidate in sorted(self.path.parent.glob(self.path.stem + ".*")):
            with contextlib.suppress(OSError):
                info = candidate.stat()
                if (info.st_dev, info.st_ino) == (saved.dev, saved.ino):
                    return open(candidate, "rb")  # closed by the caller
        return None

    def _follow(self, fh: Any) -> Any:
        info = os.fstat(fh.fileno())
        if info.st_size < self.position.offset:  # truncated in place: start over
            fh.seek(0)
            self.position.offset = 0
        read_any = self._read_to_end(fh, self.position)
        if read_any:
            return fh
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            return fh  # between rename and re-create: keep the old one for now
        if (current.st_dev, current.st_ino) != (info.st_dev, info.st_ino):
            self._read_to_end(fh, self.position)  # lines written just before the rename
            fh.close()
            return self._open()
        return fh

    def _read_to_end(self, fh: Any, position: FilePosition) -> bool:
        """Hand on every complete line from ``position.offset``; True if there were any."""
        limit = self.max_line_bytes
        read_any = False
        fh.seek(position.offset)
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                return read_any
            end = chunk.rfind(b"\n") + 1
            if end == 0:
                if len(chunk) <= limit or len(chunk) < (1 << 20):
                    # An incomplete last line: wait for its end (unless it is absurdly long).
                    fh.seek(position.offset)
                    return read_any
                end = len(chunk)  # a line longer than the read size: cut it here
            records: list[Record] = []
            for line in chunk[:end].split(b"\n"):
                if not line:
                    continue
                line, cut = cut_line(line.rstrip(b"\r"), limit)
                records.append(parse_file_line(line.decode("utf-8", "replace"), received=0.0, cut=cut))
            now = _now()
            for record in records:
                if not record.time:
                    record.time = now
            after = FilePosition(position.dev, position.ino, position.offset + end)
            # Advance only once the sink took the batch: if it fails, the lines are read again.
            self.sink(records, {"file": after.to_json()})
            position.offset = after.offset
            fh.seek(position.offset)
            read_any = True


def _now() -> float:
    import time

    return time.time()

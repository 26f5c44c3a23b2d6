"""A Moltworker bucket on loopback that speaks S3's HTTP and XML (path style), for the tests of
the Memory screen's bucket view and of the API that reads one of its files.

It holds objects in memory and answers what moltconsole asks of a Moltworker bucket:
ListObjectsV2 (pages of at most 1,000 keys, with sizes and times), GetObject and HeadObject. A
request signed with another access key id than ``access_key`` is refused as R2 refuses it
(403 InvalidAccessKeyId), so a test can give the backend wrong credentials. SeaweedFS (the real
server of the integration tests) takes seconds to start; this takes none, which the console's
snapshot tests need.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from tests.support.s3_wire import error_xml

MODIFIED = "2026-05-28T18:00:00.000Z"  # every object's time: the snapshots stay the same


@dataclass
class MoltworkerBucket:
    """Where the bucket is, what it holds and the key pair it takes."""

    name: str = "moltbot-data"
    objects: dict[str, bytes] = field(default_factory=dict)
    access_key: str = "mw-access-key"
    secret_key: str = "mw-secret-key"
    endpoint_url: str = ""
    requests: list[str] = field(default_factory=list)  # "METHOD path" of each request
    # When given, reads of objects (not listings) wait for it to be set: an import held part
    # way, to be seen running.
    gate: threading.Event | None = None

    @property
    def location(self) -> str:
        return f"s3://{self.name}"

    @property
    def env(self) -> dict[str, str]:
        """The backend's environment with this bucket's key pair (Moltworker's names)."""
        return {"R2_ACCESS_KEY_ID": self.access_key, "R2_SECRET_ACCESS_KEY": self.secret_key}

    def answer(self, method: str, path: str, query: dict[str, list[str]], auth: str) -> tuple[int, bytes]:
        self.requests.append(f"{method} {path}")
        if f"Credential={self.access_key}/" not in auth:
            return 403, error_xml("InvalidAccessKeyId", "The access key ID you provided does not exist")
        parts = path.lstrip("/").split("/", 1)
        if parts[0] != self.name:
            return 404, error_xml("NoSuchBucket")
        if len(parts) == 1 or not parts[1]:
            if query.get("list-type") != ["2"]:
                return 400, error_xml("InvalidRequest", "only ListObjectsV2 here")
            return 200, self._list(query)
        key = unquote(parts[1])
        if key not in self.objects:
            return 404, error_xml("NoSuchKey")
        if self.gate is not None:
            self.gate.wait(30)
        return 200, self.objects[key]

    def _list(self, query: dict[str, list[str]]) -> bytes:
        prefix = query.get("prefix", [""])[0]
        start = query.get("continuation-token", [""])[0]
        limit = min(int(query.get("max-keys", ["1000"])[0]), 1000)
        keys = sorted(k for k in self.objects if k.startswith(prefix) and k > start)
        page, more = keys[:limit], len(keys) > limit
        token = f"<NextContinuationToken>{escape(page[-1])}</NextContinuationToken>" if more else ""
        contents = "".join(
            f"<Contents><Key>{escape(k)}</Key><Size>{len(self.objects[k])}</Size>"
            f"<LastModified>{MODIFIED}</LastModified></Contents>"
            for k in page
        )
        return (
            f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>{escape(self.name)}</Name>'
            f"<Prefix>{escape(prefix)}</Prefix><KeyCount>{len(page)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
            f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}{contents}</ListBucketResult>"
        ).encode()


@contextmanager
def serving(bucket: MoltworkerBucket) -> Iterator[MoltworkerBucket]:
    """Serve ``bucket`` on a free loopback port while the block runs."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            parts = urlsplit(self.path)
            status, body = bucket.answer(
                self.command, parts.path, parse_qs(parts.query), self.headers.get("Authorization", ""),
            )
            self.send_response(status)
            is_object = status == 200 and "list-type" not in parts.query
            self.send_header("Content-Type", "application/octet-stream" if is_object else "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Last-Modified", "Thu, 28 May 2026 18:00:00 GMT")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _reply

        def log_message(self, format: str, *args: object) -> None:
            pass  # the tests read `requests`, not stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    bucket.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield bucket
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

"""A scripted S3 endpoint on loopback that speaks S3's HTTP and XML, for what the real server
in the tests (SeaweedFS) will not do: answer 503 SlowDown, hold keys such as ``../x`` or
``/etc/x`` (AWS S3 and R2 accept them, SeaweedFS refuses them), or send an error code laced
with control characters. Each request gets the answer of the first rule that matches it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape


@dataclass(frozen=True)
class Seen:
    """One request the endpoint received."""

    method: str
    path: str
    query: dict[str, list[str]]


Answer = tuple[int, bytes]
Rule = Callable[[Seen], Answer | None]


def error_xml(code: str, message: str = "scripted") -> bytes:
    """An S3 error document."""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
    ).encode()


def list_xml(bucket: str, keys: list[str], *, truncated: bool = False, token: str = "") -> bytes:
    """A ListObjectsV2 page holding ``keys`` (raw, as a hostile server could send them)."""
    contents = "".join(f"<Contents><Key>{escape(k)}</Key><Size>1</Size></Contents>" for k in keys)
    next_token = f"<NextContinuationToken>{escape(token)}</NextContinuationToken>" if token else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult><Name>{escape(bucket)}</Name>'
        f"<KeyCount>{len(keys)}</KeyCount><MaxKeys>1000</MaxKeys>"
        f"<IsTruncated>{'true' if truncated else 'false'}</IsTruncated>{next_token}{contents}"
        "</ListBucketResult>"
    ).encode()


@dataclass
class ScriptedS3:
    """The endpoint's address, its rules, and the requests it saw."""

    endpoint_url: str = ""
    rules: list[Rule] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    def answer(self, request: Seen) -> Answer:
        self.seen.append(request)
        for rule in self.rules:
            found = rule(request)
            if found is not None:
                return found
        return 500, error_xml("InternalError", "no rule for this request")


@contextmanager
def scripted_s3() -> Iterator[ScriptedS3]:
    """Serve a ``ScriptedS3`` on a free loopback port while the block runs."""
    fake = ScriptedS3()

    class Handler(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            parts = urlsplit(self.path)
            status, body = fake.answer(Seen(self.command, parts.path, parse_qs(parts.query)))
            self.send_response(status)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _reply

        def log_message(self, format: str, *args: object) -> None:
            pass  # the tests read `seen`, not stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.endpoint_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()

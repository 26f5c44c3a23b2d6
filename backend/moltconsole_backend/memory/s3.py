"""A memory repository's objects in an S3-compatible bucket: Cloudflare R2 first, AWS S3,
SeaweedFS, MinIO, all through boto3.

Where the bucket is comes from an ``S3Location`` (the config section, or a URL such as
``r2://bucket/prefix`` read by ``parse_location``); the credentials come from the backend's
environment only (never from the config file, never into the sandbox): the variables the
location names, else Moltworker's ``R2_ACCESS_KEY_ID``/``R2_SECRET_ACCESS_KEY``, else
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``. ``s3_store_from`` turns both into an ``S3Store``;
after that the secret lives only inside the boto3 client, so no repr, log line or error message
of this module can show it.

R2's rules are kept even where a laxer server would not need them: checksums only when the
operation requires one (boto3 >= 1.36 otherwise sends headers R2 refuses), at most 1,000 keys a
list page with continuation tokens followed, no reliance on object versioning, and objects put
in one request (no multipart, so no part sizes to keep equal; a repository object is a blob or a
manifest, far under the 5 GiB a single PUT takes).

Failures are sorted for the repository: the bucket cannot be reached now (connection refused,
timeout, 5xx: ``StoreUnreachable``, worth retrying), no such object (``ObjectMissing``), or a
setting to fix (wrong key, no such bucket: ``StoreError`` saying what to check). A key listed
from the bucket is untrusted: one that is not a well-formed repository key is skipped with a
warning, so it can never name a path outside the state directory.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import boto3  # type: ignore[import-untyped]
import botocore.exceptions  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]

from moltconsole_backend.memory.store import ObjectMissing, StoreError, StoreUnreachable, check_key

log = logging.getLogger(__name__)

# A bucket that is down is noticed in seconds, not minutes: a short connect timeout, a read
# timeout long enough for a large blob on a slow link, and one retry for a passing glitch.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 30.0
MAX_ATTEMPTS = 2
# R2 returns at most 1,000 keys a page; asking for more than R2 gives would hide a bug in
# following continuation tokens behind a laxer server.
MAX_PAGE_SIZE = 1000
# The repository uploads blobs from several threads at once; one connection each.
MAX_CONNECTIONS = 16
# What one PUT takes on S3 and R2.
MAX_OBJECT_SIZE = 5 * 1024**3

R2_ENDPOINT = "https://{account_id}.r2.cloudflarestorage.com"
_ACCOUNT_ID = re.compile(r"[0-9a-fA-F]{32}")
# S3's bucket naming rules (R2's are a subset): 3 to 63 lower-case letters, digits, dots and
# hyphens, beginning and ending with a letter or digit.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")

# Error codes of the server that mean "not there" on a read, "try again later", and "fix a setting".
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_TRANSIENT_CODES = {
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "TooManyRequests",
}
_TRANSIENT_EXCEPTIONS = (
    botocore.exceptions.ConnectionError,  # refused, connect timeout, proxy, TLS
    botocore.exceptions.HTTPClientError,  # read timeout, connection closed, stream cut
    botocore.exceptions.IncompleteReadError,
)

Service = Literal["s3", "r2"]


@dataclass(frozen=True)
class S3Location:
    """Where a repository lives in a bucket: the bucket, a key prefix, and how to reach it.

    ``service`` is "r2" for Cloudflare R2 (the endpoint comes from ``account_id``, or from
    ``CF_ACCOUNT_ID`` in the environment, and the region is "auto") or "s3" for anything else
    (AWS S3 when ``endpoint_url`` is empty; SeaweedFS or MinIO at ``endpoint_url``, usually with
    ``path_style``). ``access_key_env``/``secret_key_env`` name the environment variables that
    hold the credentials; the credentials themselves are never part of a location.
    """

    bucket: str = ""
    prefix: str = ""
    endpoint_url: str = ""
    account_id: str = ""
    region: str = ""
    path_style: bool = False
    access_key_env: str = ""
    secret_key_env: str = ""
    service: Service = "s3"


@dataclass(frozen=True)
class S3Credentials:
    """An access key pair, and which environment variables it came from (for messages)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    source: str = ""


def parse_location(url: str) -> S3Location:
    """The location that ``s3://BUCKET/PREFIX`` or ``r2://BUCKET/PREFIX`` names.

    ValueError, saying what is wrong and how to write it, for anything else. The URL is never
    echoed whole, in case someone put a key pair in it.
    """
    how = "write s3://BUCKET/PREFIX (AWS, SeaweedFS, MinIO) or r2://BUCKET/PREFIX (Cloudflare R2)"
    text = url.strip()
    if not text:
        raise ValueError(f"the bucket location is empty: {how}")
    if "://" not in text:
        raise ValueError(f"the bucket location has no s3:// or r2:// in front: {how}")
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("s3", "r2"):
        raise ValueError(f"the bucket location starts with {scheme!r}://, not s3:// or r2://: {how}")
    if "@" in parts.netloc:
        raise ValueError(
            "the bucket location holds credentials (user:secret@); take them out and set "
            "R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY (or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY) in the backend's environment"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"the bucket location has a ?query or #fragment, which it cannot use: {how}")
    bucket = parts.netloc
    if not bucket:
        raise ValueError(f"the bucket location names no bucket: {how}")
    if ":" in bucket:
        raise ValueError(
            "the bucket location has a port after the bucket name; an S3 server's address goes "
            f"in endpoint_url, not in the location: {how}"
        )
    _check_bucket(bucket)
    prefix = _check_prefix(parts.path)
    service: Service = "r2" if scheme == "r2" else "s3"
    return S3Location(bucket=bucket, prefix=prefix, service=service, region="auto" if service == "r2" else "")


def r2_endpoint(account_id: str) -> str:
    """The S3 endpoint of Cloudflare R2 for an account id (32 hex digits)."""
    if not _ACCOUNT_ID.fullmatch(account_id):
        raise ValueError(
            "the Cloudflare account id must be 32 hexadecimal digits (the Account ID shown on the "
            "R2 page of the Cloudflare dashboard); set it as account_id or CF_ACCOUNT_ID"
        )
    return R2_ENDPOINT.format(account_id=account_id.lower())


def credentials_from(location: S3Location, env: Mapping[str, str]) -> S3Credentials:
    """The key pair for ``location`` from ``env``: the variables the location names, else
    Moltworker's R2 names, else AWS's. The first pair whose access key is set is used whole
    (never an access key from one pair with the secret of another)."""
    pairs: list[tuple[str, str]] = []
    if location.access_key_env or location.secret_key_env:
        for name in (location.access_key_env, location.secret_key_env):
            if not _ENV_NAME.fullmatch(name):
                raise ValueError(
                    "access_key_env and secret_key_env must both name an environment variable "
                    "(letters, digits and _)"
                )
        pairs.append((location.access_key_env, location.secret_key_env))
    pairs += [("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    for key_name, secret_name in pairs:
        access = env.get(key_name, "").strip()
        if not access:
            continue
        secret = env.get(secret_name, "").strip()
        if not secret:
            raise ValueError(
                f"{key_name} is set but {secret_name} is not: set both in the backend's environment"
            )
        return S3Credentials(access, secret, source=f"{key_name}/{secret_name}")
    tried = ", ".join(f"{k} and {s}" for k, s in pairs)
    raise ValueError(f"no credentials for the bucket: set {tried} in the backend's environment")


def s3_store_from(config: S3Location, env: Mapping[str, str]) -> S3Store:
    """An ``S3Store`` for ``config``, with the credentials and anything the config leaves out
    (R2's account id and bucket under Moltworker's names) taken from ``env``.

    ValueError saying what to set when something is missing or malformed. Nothing is sent to
    the bucket here: a wrong key or a bucket that is down shows on the first operation.
    """
    bucket = config.bucket or env.get("R2_BUCKET_NAME", "").strip()
    if not bucket:
        raise ValueError("no bucket is named: set bucket in the memory settings, or R2_BUCKET_NAME")
    _check_bucket(bucket)
    prefix = _check_prefix(config.prefix)
    endpoint = config.endpoint_url.strip()
    region = config.region.strip()
    if config.service == "r2":
        if not endpoint:
            account_id = config.account_id.strip() or env.get("CF_ACCOUNT_ID", "").strip()
            if not account_id:
                raise ValueError(
                    "R2 needs the Cloudflare account id to find the bucket: set account_id in the "
                    "memory settings, or CF_ACCOUNT_ID"
                )
            endpoint = r2_endpoint(account_id)
        region = region or "auto"
    else:
        region = region or env.get("AWS_REGION", "").strip() or env.get("AWS_DEFAULT_REGION", "").strip()
        region = region or "us-east-1"
    if endpoint:
        _check_endpoint(endpoint)
    credentials = credentials_from(config, env)
    client = make_client(
        credentials, endpoint_url=endpoint or None, region=region, path_style=config.path_style
    )
    return S3Store(client, bucket, prefix=prefix, endpoint=endpoint or f"AWS S3 ({region})")


def make_client(
    credentials: S3Credentials,
    *,
    endpoint_url: str | None,
    region: str,
    path_style: bool = False,
    connect_timeout: float = CONNECT_TIMEOUT,
    read_timeout: float = READ_TIMEOUT,
    max_attempts: int = MAX_ATTEMPTS,
) -> Any:
    """A boto3 S3 client with R2-safe settings, short timeouts and few retries."""
    config = Config(
        region_name=region,
        signature_version="s3v4",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        max_pool_connections=MAX_CONNECTIONS,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        s3={"addressing_style": "path" if path_style else "auto"},
    )
    # A session of its own with the pair given, so the credentials of a default session (a
    # profile in ~/.aws, the process's AWS_* variables) are never used instead.
    session = boto3.session.Session(
        aws_access_key_id=credentials.access_key_id,
        aws_secret_access_key=credentials.secret_access_key,
        region_name=region,
    )
    return session.client("s3", endpoint_url=endpoint_url, config=config)


class S3Store:
    """Objects in an S3-compatible bucket under an optional key prefix (the ObjectStore protocol).

    ``client`` is a boto3 S3 client (see ``make_client``); it holds the credentials, the store
    holds none. ``endpoint`` is only for messages.
    """

    def __init__(
        self,
        client: Any,
        bucket: str,
        *,
        prefix: str = "",
        endpoint: str = "",
        page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1 to {MAX_PAGE_SIZE} (R2 lists at most 1,000 keys a page)")
        self._client = client
        self.bucket = bucket
        self.prefix = _check_prefix(prefix)
        self.endpoint = _safe_endpoint(endpoint) if endpoint else "the default endpoint"
        self.page_size = page_size

    @property
    def where(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def __repr__(self) -> str:
        return f"S3Store({self.where!r}, endpoint={self.endpoint!r})"

    @property
    def client(self) -> Any:
        """The boto3 client, for a reader that needs keys this store's rules refuse (the
        Moltworker import lists a foreign bucket's raw names)."""
        return self._client

    def error_for(self, exc: Exception, action: str, key: str) -> StoreError:
        """``exc`` from the client as the StoreError this store would raise for it."""
        return self._error(exc, action, key)

    def _full(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def put(self, key: str, data: bytes) -> None:
        full = self._full(key)
        if len(data) > MAX_OBJECT_SIZE:
            raise StoreError(
                f"{key} is {len(data):,} bytes, more than one upload to {self.where} takes (5 GiB)"
            )
        try:
            self._client.put_object(Bucket=self.bucket, Key=full, Body=data, ContentLength=len(data))
        except Exception as exc:
            raise self._error(exc, "write", key) from None

    def get(self, key: str) -> bytes:
        full = self._full(key)
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=full)
            body: bytes = response["Body"].read()
        except Exception as exc:
            raise self._error(exc, "read", key) from None
        return body

    def get_range(self, key: str, start: int, length: int) -> bytes:
        full = self._full(key)
        if length <= 0:
            return b""
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=full, Range=f"bytes={start}-{start + length - 1}",
            )
            body: bytes = response["Body"].read()
        except Exception as exc:
            raise self._error(exc, "read", key) from None
        return body

    def exists(self, key: str) -> bool:
        full = self._full(key)
        try:
            self._client.head_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            error = self._error(exc, "look up", key)
            if isinstance(error, ObjectMissing):
                return False
            raise error from None
        return True

    def list(self, prefix: str) -> Iterator[str]:
        trimmed = prefix.strip("/")
        if trimmed:
            check_key(trimmed)
        inner = f"{trimmed}/" if trimmed else ""
        strip = f"{self.prefix}/" if self.prefix else ""
        request: dict[str, Any] = {"Bucket": self.bucket, "Prefix": strip + inner, "MaxKeys": self.page_size}
        while True:
            try:
                page = self._client.list_objects_v2(**request)
            except Exception as exc:
                raise self._error(exc, "list", inner or "the keys") from None
            for item in page.get("Contents", ()):
                name = item.get("Key", "")
                if not isinstance(name, str) or not name.startswith(strip + inner):
                    self._skip(name)
                    continue
                key = name[len(strip) :]
                try:
                    check_key(key)
                except ValueError:
                    self._skip(name)
                    continue
                yield key
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token or token == request.get("ContinuationToken"):
                raise StoreError(
                    f"listing {self.where} at {self.endpoint} stopped: the server said there was more "
                    "but gave no way to continue; check that the endpoint is an S3-compatible server"
                )
            request["ContinuationToken"] = token

    def delete(self, key: str) -> None:
        full = self._full(key)
        try:
            self._client.delete_object(Bucket=self.bucket, Key=full)
        except Exception as exc:
            error = self._error(exc, "delete", key)
            if not isinstance(error, ObjectMissing):
                raise error from None

    def _skip(self, name: object) -> None:
        # ascii() so a key with control characters or bidi marks cannot drive a terminal.
        shown = ascii(name[:200]) if isinstance(name, str) else type(name).__name__
        log.warning("skipped a key in %s that is not a repository key: %s", self.where, shown)

    def _error(self, exc: Exception, action: str, key: str) -> StoreError:
        """The StoreError for a failed boto3 call, in words the user can act on. Never includes
        the exception's own text: a server's message is untrusted, and a credential must not
        ride along in a chained message."""
        place = f"{self.where} at {self.endpoint}"
        if isinstance(exc, _TRANSIENT_EXCEPTIONS):
            return StoreUnreachable(
                f"cannot {action} {key}: the bucket {place} cannot be reached ({type(exc).__name__}); "
                "check that the server is up and the endpoint is right, then try again"
            )
        if isinstance(exc, botocore.exceptions.ClientError):
            error = exc.response.get("Error", {})
            code = _safe_code(str(error.get("Code", "")))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code == "NoSuchBucket":
                return StoreError(
                    f"cannot {action} {key}: there is no bucket {self.bucket!r} at {self.endpoint}; "
                    "check the bucket name (bucket setting or R2_BUCKET_NAME) and the endpoint or "
                    "account id, or create the bucket"
                )
            if code in _MISSING_CODES or (status == 404 and not code):
                return ObjectMissing(f"{key} is not in {self.where}")
            if code == "InvalidAccessKeyId":
                return StoreError(
                    f"cannot {action} {key} in {place}: the server does not know the access key id; "
                    "check R2_ACCESS_KEY_ID (or the variable the settings name) and that the key was "
                    "made for this account"
                )
            if code == "SignatureDoesNotMatch":
                return StoreError(
                    f"cannot {action} {key} in {place}: the secret access key does not match the "
                    "access key id; check R2_SECRET_ACCESS_KEY (or the variable the settings name)"
                )
            if code == "RequestTimeTooSkewed":
                return StoreError(
                    f"cannot {action} {key} in {place}: the server says this machine's clock is off; "
                    "set the clock right (NTP) and try again"
                )
            if code in ("AccessDenied", "403", "Forbidden") or status == 403:
                return StoreError(
                    f"cannot {action} {key} in {place}: access denied; check the access key pair "
                    "and that it may read, write and list this bucket"
                )
            if code in _TRANSIENT_CODES or status >= 500:
                return StoreUnreachable(
                    f"cannot {action} {key}: the bucket {place} answered {code or 'an error'} "
                    f"(HTTP {status}); it should pass, try again later"
                )
            return StoreError(
                f"cannot {action} {key} in {place}: the server answered {code or 'an error'} "
                f"(HTTP {status}); check the bucket settings"
            )
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            return StoreError(f"cannot {action} {key} in {place}: {type(exc).__name__}")
        raise exc


def _check_bucket(bucket: str) -> None:
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(
            f"{bucket[:80]!r} is not a bucket name: 3 to 63 lower-case letters, digits, '.' and '-', "
            "beginning and ending with a letter or digit"
        )


def _check_prefix(prefix: str) -> str:
    trimmed = prefix.strip("/")
    if not trimmed:
        return ""
    try:
        check_key(trimmed)
    except ValueError:
        raise ValueError(
            f"{trimmed[:120]!r} is not a key prefix: parts separated by '/', each of letters, "
            "digits, '.', '_' and '-' (and never '.' or '..')"
        ) from None
    return trimmed


def _check_endpoint(endpoint: str) -> None:
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "endpoint_url must be an http:// or https:// address of the S3 server, "
            "e.g. http://127.0.0.1:8333"
        )
    if parts.username or parts.password:
        raise ValueError(
            "endpoint_url holds credentials (user:secret@); take them out and set the access key "
            "pair in the backend's environment"
        )


def _safe_endpoint(endpoint: str) -> str:
    """The endpoint for messages: scheme, host and port only (never a user:secret@ part)."""
    parts = urlsplit(endpoint)
    if not parts.scheme or not parts.hostname:
        return endpoint
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def _safe_code(code: str) -> str:
    """A server's error code cut to the characters codes are made of (it is untrusted text)."""
    return re.sub(r"[^A-Za-z0-9._-]", "", code)[:64]

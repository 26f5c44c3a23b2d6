"""S3Store against a real S3 server (SeaweedFS, authentication on): the object round trip,
R2's 1,000-key list pages followed to the end, a wrong secret, a stopped server, hostile keys
planted in the bucket, and two repositories kept apart by prefix in one bucket.

SeaweedFS itself refuses keys with ``.``/``..`` parts and folds a leading ``/`` and ``\\``, so the keys
planted here are the malformed ones it does hold; a listing with ``../x`` and ``/x`` (which AWS
S3 and R2 hold) is tested against a scripted endpoint in tests/unit/test_memory_s3.py.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from moltconsole_backend.memory.s3 import S3Location, S3Store, s3_store_from
from moltconsole_backend.memory.store import ObjectMissing, ObjectStore, StoreError, StoreUnreachable
from tests.integration import memory_conftest_fixtures
from tests.support.s3_server import S3Server, running_s3_server

s3_server = memory_conftest_fixtures.s3_server  # the session's SeaweedFS, shared with other memory tests


def moltworker_env(server: S3Server, secret: str | None = None) -> dict[str, str]:
    """The server's key pair under Moltworker's variable names."""
    return {
        "R2_ACCESS_KEY_ID": server.access_key,
        "R2_SECRET_ACCESS_KEY": server.secret_key if secret is None else secret,
    }


def store_on(
    server: S3Server,
    prefix: str,
    *,
    env: Mapping[str, str] | None = None,
    bucket: str | None = None,
    page_size: int | None = None,
) -> S3Store:
    location = S3Location(
        bucket=bucket or server.bucket, prefix=prefix, endpoint_url=server.endpoint_url, path_style=True
    )
    store = s3_store_from(location, moltworker_env(server) if env is None else env)
    if page_size is not None:
        store.page_size = page_size
    return store


def fresh_prefix() -> str:
    return "t-" + secrets.token_hex(4)


def test_put_get_exists_list_delete_round_trip(s3_server: S3Server) -> None:
    store: ObjectStore = store_on(s3_server, fresh_prefix())  # mypy checks it keeps the protocol
    payloads = {
        "snapshots/2026-12-03T10-00-00Z": b'{"files": 3}',
        "blobs/ab/ab12": bytes(range(256)) * 4096,  # 1 MiB, every byte value
        "blobs/cd/cd34": b"",
        "config": b"v1",
    }
    for key, data in payloads.items():
        store.put(key, data)
    for key, data in payloads.items():
        assert store.exists(key)
        assert store.get(key) == data
    assert sorted(store.list("")) == sorted(payloads)
    assert sorted(store.list("blobs/")) == ["blobs/ab/ab12", "blobs/cd/cd34"]
    assert sorted(store.list("/blobs")) == ["blobs/ab/ab12", "blobs/cd/cd34"]
    assert list(store.list("nothing-here")) == []

    store.put("config", b"v2")
    assert store.get("config") == b"v2"

    store.delete("config")
    store.delete("config")  # twice: no error for a key that is gone
    assert not store.exists("config")
    with pytest.raises(ObjectMissing, match="config is not in s3://"):
        store.get("config")
    assert "config" not in set(store.list(""))


def test_a_listing_of_2500_keys_is_whole_in_pages_of_at_most_1000(s3_server: S3Server) -> None:
    store = store_on(s3_server, fresh_prefix(), page_size=1000)
    keys = {f"blobs/{i % 16:02x}/{i:06d}" for i in range(2500)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: store.put(k, k.encode()), keys))
    pages: list[int] = []

    def count_page(parsed: dict[str, Any], **_: Any) -> None:
        pages.append(len(parsed.get("Contents", [])))

    store._client.meta.events.register("after-call.s3.ListObjectsV2", count_page)
    listed = list(store.list(""))
    assert len(listed) == 2500 and set(listed) == keys
    assert pages == [1000, 1000, 500]

    pages.clear()
    store.page_size = 300
    assert sorted(store.list("blobs/0a")) == sorted(k for k in keys if k.startswith("blobs/0a/"))
    assert max(pages) <= 300 and len(pages) >= 1


def test_a_wrong_secret_is_a_setting_to_fix_and_the_error_shows_no_secret(s3_server: S3Server) -> None:
    good = store_on(s3_server, "wrong-secret")
    good.put("there", b"x")
    wrong = "W" + secrets.token_urlsafe(30)
    store = store_on(s3_server, "wrong-secret", env=moltworker_env(s3_server, secret=wrong))
    calls: list[Callable[[], object]] = [
        lambda: store.get("there"),
        lambda: store.put("other", b"x"),
        lambda: list(store.list("")),
        lambda: store.exists("there"),
        lambda: store.delete("there"),
    ]
    for call in calls:
        with pytest.raises(StoreError) as caught:
            call()
        assert not isinstance(caught.value, StoreUnreachable | ObjectMissing)
        shown = f"{caught.value} {caught.value!r}"
        assert wrong not in shown and s3_server.secret_key not in shown
        assert "s3://moltconsole-test/wrong-secret" in shown
    assert good.exists("there")  # the failed delete deleted nothing


def test_an_unknown_access_key_says_which_variable_to_check(s3_server: S3Server) -> None:
    env = {"AWS_ACCESS_KEY_ID": "NOSUCHKEY0000", "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    store = store_on(s3_server, "unknown-key", env=env)
    with pytest.raises(StoreError) as caught:
        store.get("x")
    assert "access key" in str(caught.value)
    assert s3_server.secret_key not in str(caught.value)


def test_a_bucket_that_does_not_exist_says_so(s3_server: S3Server) -> None:
    # Reads only: SeaweedFS makes the bucket on a PUT from an admin key (R2 and AWS do not).
    store = store_on(s3_server, "p", bucket="never-made-" + secrets.token_hex(4))
    with pytest.raises(StoreError, match=f"there is no bucket '{store.bucket}'"):
        store.get("x")
    with pytest.raises(StoreError, match="there is no bucket"):
        list(store.list(""))


def test_a_stopped_server_is_unreachable_within_seconds(tmp_path: Path) -> None:
    with running_s3_server(tmp_path / "weed") as server:
        store = store_on(server, "down")
        store.put("k", b"v")
        assert store.get("k") == b"v"
        server.stop(timeout=1.0)
        calls: list[Callable[[], object]] = [
            lambda: store.get("k"),
            lambda: store.put("k", b"w"),
            lambda: list(store.list("")),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnreachable) as caught:
                call()
            assert time.monotonic() - started < 5
            message = str(caught.value)
            assert server.endpoint_url in message and "s3://moltconsole-test/down" in message
            assert server.secret_key not in message


def test_malformed_keys_planted_in_the_bucket_are_skipped_and_refused(s3_server: S3Server) -> None:
    prefix = fresh_prefix()
    store = store_on(s3_server, prefix)
    store.put("good/1", b"1")
    planted = ["a\x01b", "%2e%2e/evil", "C:/x", "\u2024\u2024/x", "sp ace", "..%2fevil"]
    raw = s3_server.client()
    for name in planted:
        raw.put_object(Bucket=s3_server.bucket, Key=f"{prefix}/{name}", Body=b"planted")
    held = {o["Key"] for o in raw.list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)["Contents"]}
    assert held == {f"{prefix}/{n}" for n in ["good/1", *planted]}  # the server does hold them

    assert list(store.list("")) == ["good/1"]
    for key in [*planted, "../x", "/etc/passwd", "good/../../x"]:
        with pytest.raises(ValueError):
            store.get(key)
        with pytest.raises(ValueError):
            store.put(key, b"x")


def test_two_prefixes_in_one_bucket_are_two_repositories(s3_server: S3Server) -> None:
    base = fresh_prefix()
    one = store_on(s3_server, f"{base}/box")
    two = store_on(s3_server, f"{base}/box-2")
    whole = store_on(s3_server, base)
    one.put("config", b"one")
    two.put("config", b"two")
    two.put("only-two", b"2")

    assert one.get("config") == b"one" and two.get("config") == b"two"
    assert sorted(one.list("")) == ["config"]
    assert sorted(two.list("")) == ["config", "only-two"]
    assert not one.exists("only-two")
    one.delete("config")
    assert two.get("config") == b"two"
    assert sorted(whole.list("")) == ["box-2/config", "box-2/only-two"]


def test_aws_variable_names_work_too(s3_server: S3Server) -> None:
    env = {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key}
    store = store_on(s3_server, fresh_prefix(), env=env)
    store.put("k", b"aws")
    assert store.get("k") == b"aws"

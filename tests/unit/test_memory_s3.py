"""S3Store's settings and error words without a real bucket: locations, R2's endpoint, where
the credentials come from (Moltworker's names included), that no secret is ever shown, and
answers SeaweedFS does not give (503, keys it refuses to hold), from a scripted S3 endpoint."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Iterator

import pytest

from moltconsole_backend.memory.s3 import (
    S3Credentials,
    S3Location,
    S3Store,
    credentials_from,
    parse_location,
    r2_endpoint,
    s3_store_from,
)
from moltconsole_backend.memory.store import ObjectMissing, StoreError, StoreUnreachable
from tests.support.s3_wire import ScriptedS3, Seen, error_xml, list_xml, scripted_s3

ACCOUNT = "0123456789abcdef0123456789ABCDEF"
SECRET = "s3cr3t-Very-Private-value-0042"
R2_ENV = {"R2_ACCESS_KEY_ID": "r2-key-id", "R2_SECRET_ACCESS_KEY": SECRET, "CF_ACCOUNT_ID": ACCOUNT}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def local_store(endpoint: str, *, prefix: str = "") -> S3Store:
    location = S3Location(bucket="bucket-a", prefix=prefix, endpoint_url=endpoint, path_style=True)
    return s3_store_from(location, {"AWS_ACCESS_KEY_ID": "aws-key-id", "AWS_SECRET_ACCESS_KEY": SECRET})


@pytest.fixture
def scripted() -> Iterator[ScriptedS3]:
    with scripted_s3() as fake:
        yield fake


# --- locations ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "bucket", "prefix", "service"),
    [
        ("s3://my-bucket", "my-bucket", "", "s3"),
        ("s3://my-bucket/", "my-bucket", "", "s3"),
        ("s3://my.bucket/moltconsole/box-1/", "my.bucket", "moltconsole/box-1", "s3"),
        ("r2://moltbot-data/openclaw", "moltbot-data", "openclaw", "r2"),
        ("R2://moltbot-data", "moltbot-data", "", "r2"),
        ("  s3://abc/a_b.c  ", "abc", "a_b.c", "s3"),
    ],
)
def test_parse_location_reads_bucket_and_prefix(url: str, bucket: str, prefix: str, service: str) -> None:
    location = parse_location(url)
    assert (location.bucket, location.prefix, location.service) == (bucket, prefix, service)
    assert location.region == ("auto" if service == "r2" else "")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("", "is empty"),
        ("my-bucket/prefix", "no s3:// or r2://"),
        ("https://my-bucket/prefix", "starts with 'https'://"),
        ("s3:///prefix", "names no bucket"),
        ("s3://My_Bucket/x", "is not a bucket name"),
        ("s3://ab/x", "is not a bucket name"),
        ("s3://bucket..x/y", "is not a bucket name"),
        ("s3://my-bucket:9000/x", "endpoint_url"),
        ("s3://my-bucket/a/../b", "is not a key prefix"),
        ("s3://my-bucket/a b", "is not a key prefix"),
        ("s3://my-bucket/x?versionId=1", "?query"),
    ],
)
def test_parse_location_refuses_with_what_to_write(url: str, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_location(url)
    assert says in str(caught.value)


def test_parse_location_never_echoes_credentials_written_into_it() -> None:
    with pytest.raises(ValueError) as caught:
        parse_location(f"r2://key-id:{SECRET}@moltbot-data/openclaw")
    assert SECRET not in str(caught.value)
    assert "R2_ACCESS_KEY_ID" in str(caught.value)


# --- R2's endpoint and Moltworker's variables ---------------------------------------------------


def test_r2_endpoint_comes_from_the_account_id_in_cf_account_id() -> None:
    store = s3_store_from(parse_location("r2://moltbot-data/openclaw"), R2_ENV)
    meta = store._client.meta
    assert meta.endpoint_url == f"https://{ACCOUNT.lower()}.r2.cloudflarestorage.com"
    assert store.endpoint == meta.endpoint_url
    assert meta.region_name == "auto"
    assert meta.config.request_checksum_calculation == "when_required"
    assert meta.config.response_checksum_validation == "when_required"
    assert meta.config.connect_timeout == 5
    assert meta.config.read_timeout == 30
    assert store.where == "s3://moltbot-data/openclaw"


def test_r2_account_id_in_the_settings_wins_and_an_endpoint_url_wins_over_both() -> None:
    other = "f" * 32
    store = s3_store_from(S3Location(bucket="abc", service="r2", account_id=other), R2_ENV)
    assert store.endpoint == r2_endpoint(other)
    given = S3Location(bucket="abc", service="r2", account_id=other, endpoint_url="https://eu.example.test")
    assert s3_store_from(given, R2_ENV)._client.meta.endpoint_url == "https://eu.example.test"


@pytest.mark.parametrize("account", ["", "12345", "g" * 32, ACCOUNT + ".evil"])
def test_r2_without_a_proper_account_id_says_to_set_it(account: str) -> None:
    env = {**R2_ENV, "CF_ACCOUNT_ID": account}
    with pytest.raises(ValueError, match="CF_ACCOUNT_ID"):
        s3_store_from(parse_location("r2://moltbot-data"), env)


def test_the_bucket_comes_from_r2_bucket_name_when_the_settings_name_none() -> None:
    store = s3_store_from(S3Location(service="r2"), {**R2_ENV, "R2_BUCKET_NAME": "moltbot-data"})
    assert store.bucket == "moltbot-data"
    named = s3_store_from(S3Location(service="r2", bucket="mine-here"), {**R2_ENV, "R2_BUCKET_NAME": "x-y-z"})
    assert named.bucket == "mine-here"
    with pytest.raises(ValueError, match="R2_BUCKET_NAME"):
        s3_store_from(S3Location(service="r2"), R2_ENV)


def test_credentials_come_from_the_named_variables_then_moltworkers_then_aws() -> None:
    named = S3Location(bucket="abc", access_key_env="MY_KEY", secret_key_env="MY_SECRET")
    everything = {
        "MY_KEY": "mine",
        "MY_SECRET": "mine-secret",
        "R2_ACCESS_KEY_ID": "r2",
        "R2_SECRET_ACCESS_KEY": "r2-secret",
        "AWS_ACCESS_KEY_ID": "aws",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    assert credentials_from(named, everything) == S3Credentials("mine", "mine-secret", "MY_KEY/MY_SECRET")
    del everything["MY_KEY"]
    assert credentials_from(named, everything).access_key_id == "r2"
    assert credentials_from(named, everything).secret_access_key == "r2-secret"
    del everything["R2_ACCESS_KEY_ID"]
    assert credentials_from(named, everything).access_key_id == "aws"
    assert credentials_from(named, everything).secret_access_key == "aws-secret"


def test_an_access_key_without_its_secret_is_an_error_not_a_mix_of_two_pairs() -> None:
    env = {"R2_ACCESS_KEY_ID": "r2", "AWS_ACCESS_KEY_ID": "aws", "AWS_SECRET_ACCESS_KEY": SECRET}
    with pytest.raises(ValueError, match="R2_SECRET_ACCESS_KEY is not"):
        credentials_from(S3Location(bucket="abc"), env)


def test_no_credentials_names_every_variable_that_would_do() -> None:
    with pytest.raises(ValueError) as caught:
        credentials_from(S3Location(bucket="abc", access_key_env="K", secret_key_env="S"), {})
    for name in ("K and S", "R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID"):
        assert name in str(caught.value)


def test_s3_region_comes_from_the_settings_then_aws_region_then_us_east_1() -> None:
    env = {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": SECRET}
    assert s3_store_from(S3Location(bucket="abc"), env)._client.meta.region_name == "us-east-1"
    with_region = {**env, "AWS_REGION": "eu-west-3"}
    assert s3_store_from(S3Location(bucket="abc"), with_region)._client.meta.region_name == "eu-west-3"
    told = S3Location(bucket="abc", region="ap-south-1")
    assert s3_store_from(told, with_region)._client.meta.region_name == "ap-south-1"


def test_an_endpoint_with_credentials_in_it_is_refused_without_echoing_them() -> None:
    location = S3Location(bucket="abc", endpoint_url=f"http://key:{SECRET}@127.0.0.1:9000")
    with pytest.raises(ValueError) as caught:
        s3_store_from(location, {"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b"})
    assert SECRET not in str(caught.value)


def test_a_page_size_over_r2s_limit_is_refused() -> None:
    store = local_store("http://127.0.0.1:9")
    with pytest.raises(ValueError, match="1,000"):
        S3Store(store._client, "abc", page_size=1001)


# --- no secret shown --------------------------------------------------------------------------


def test_repr_and_str_of_store_location_and_credentials_hold_no_secret() -> None:
    location = S3Location(bucket="abc", access_key_env="MY_KEY", secret_key_env="MY_SECRET", service="r2")
    env = {"MY_KEY": "key-id", "MY_SECRET": SECRET, "CF_ACCOUNT_ID": ACCOUNT}
    store = s3_store_from(location, env)
    credentials = credentials_from(location, env)
    for shown in (repr(store), str(store), repr(location), repr(credentials), str(credentials), store.where):
        assert SECRET not in shown
    assert "key-id" in repr(credentials)  # the id is not secret and helps find the key


def test_a_bucket_that_is_down_is_unreachable_within_seconds_and_the_error_holds_no_secret() -> None:
    port = closed_port()
    store = local_store(f"http://127.0.0.1:{port}", prefix="box")
    for call in (lambda: store.get("a"), lambda: store.put("a", b"x"), lambda: list(store.list(""))):
        started = time.monotonic()
        with pytest.raises(StoreUnreachable) as caught:
            call()
        assert time.monotonic() - started < 5
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "s3://bucket-a/box" in message
        assert SECRET not in message and SECRET not in repr(caught.value)


# --- answers only a scripted endpoint gives -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "kind", "says"),
    [
        (503, "SlowDown", StoreUnreachable, "try again later"),
        (500, "InternalError", StoreUnreachable, "try again later"),
        (403, "AccessDenied", StoreError, "access denied"),
        (403, "InvalidAccessKeyId", StoreError, "check R2_ACCESS_KEY_ID"),
        (403, "SignatureDoesNotMatch", StoreError, "check R2_SECRET_ACCESS_KEY"),
        (403, "RequestTimeTooSkewed", StoreError, "clock"),
        (404, "NoSuchBucket", StoreError, "there is no bucket 'bucket-a'"),
        (404, "NoSuchKey", ObjectMissing, "is not in s3://bucket-a"),
        (400, "Odd\u202e Code;\u2028", StoreError, "the server answered OddCode (HTTP 400)"),
    ],
)
def test_server_errors_are_sorted_and_say_what_to_check(
    scripted: ScriptedS3, status: int, code: str, kind: type[StoreError], says: str
) -> None:
    scripted.rules.append(lambda _seen: (status, error_xml(code, f"echo {SECRET}")))
    store = local_store(scripted.endpoint_url)
    with pytest.raises(StoreError) as caught:
        store.get("blobs/ab")
    assert type(caught.value) is kind
    message = str(caught.value)
    assert says in message
    assert SECRET not in message  # the server's own message is never repeated
    assert message.isprintable()


def test_exists_is_false_on_404_and_raises_on_403(scripted: ScriptedS3) -> None:
    answers = {"/bucket-a/gone": 404, "/bucket-a/locked": 403}
    scripted.rules.append(lambda seen: (answers.get(seen.path, 200), b""))
    store = local_store(scripted.endpoint_url)
    assert store.exists("there")
    assert not store.exists("gone")
    with pytest.raises(StoreError, match="access denied"):
        store.exists("locked")


def test_delete_of_a_missing_object_is_not_an_error(scripted: ScriptedS3) -> None:
    scripted.rules.append(lambda _seen: (404, error_xml("NoSuchKey")))
    local_store(scripted.endpoint_url).delete("gone")
    assert [s.method for s in scripted.seen] == ["DELETE"]


def test_hostile_keys_in_a_listing_are_skipped_with_a_warning(
    scripted: ScriptedS3, caplog: pytest.LogCaptureFixture
) -> None:
    hostile = ["box/../etc/passwd", "box//abs", "box/a/./b", "box/a\u202eb", "box/.."]
    hostile += ["elsewhere/x", "/box/x"]  # outside the prefix asked for
    scripted.rules.append(lambda _seen: (200, list_xml("bucket-a", ["box/good/1", *hostile, "box/good/2"])))
    store = local_store(scripted.endpoint_url, prefix="box")
    with caplog.at_level(logging.WARNING, logger="moltconsole_backend.memory.s3"):
        assert list(store.list("")) == ["good/1", "good/2"]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == len(hostile)
    assert all(w.isascii() and w.isprintable() for w in warnings)


def test_a_listing_that_says_more_but_gives_no_token_stops_with_an_error(scripted: ScriptedS3) -> None:
    scripted.rules.append(lambda _seen: (200, list_xml("bucket-a", ["k1"], truncated=True)))
    with pytest.raises(StoreError, match="gave no way to continue"):
        list(local_store(scripted.endpoint_url).list(""))
    assert len(scripted.seen) == 1


def test_listing_follows_continuation_tokens_and_asks_for_at_most_1000(scripted: ScriptedS3) -> None:
    def pages(seen: Seen) -> tuple[int, bytes]:
        token = seen.query.get("continuation-token", [""])[0]
        if not token:
            return 200, list_xml("bucket-a", ["p/a"], truncated=True, token="t1")
        if token == "t1":
            return 200, list_xml("bucket-a", ["p/b"], truncated=True, token="t2")
        return 200, list_xml("bucket-a", ["p/c"])

    scripted.rules.append(pages)
    assert list(local_store(scripted.endpoint_url, prefix="p").list("")) == ["a", "b", "c"]
    assert [s.query["max-keys"] for s in scripted.seen] == [["1000"]] * 3
    assert [s.query.get("continuation-token") for s in scripted.seen] == [None, ["t1"], ["t2"]]


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "", "a/.", "a b"])
def test_a_malformed_key_is_refused_before_anything_is_sent(scripted: ScriptedS3, key: str) -> None:
    store = local_store(scripted.endpoint_url)
    for call in (store.get, lambda k: store.put(k, b"x"), store.exists, store.delete):
        with pytest.raises(ValueError):
            call(key)
    with pytest.raises(ValueError):
        list(store.list("../x"))
    assert scripted.seen == []

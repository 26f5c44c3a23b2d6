"""Fixtures for the memory tests that need a real S3 server. Import the fixture by name into a
test module (``from tests.integration.memory_conftest_fixtures import s3_server``); it is kept
out of conftest.py, which other tests own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.s3_server import S3Server, running_s3_server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """One SeaweedFS for the whole session (it takes seconds to start); tests keep apart by
    key prefix."""
    with running_s3_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server

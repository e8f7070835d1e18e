"""Test fixtures: a private redis-server for the session, real
``jobfleet-worker`` processes, the ``jobfleet`` CLI, and a queue of each
test's own (nothing is ever flushed)."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Iterator

import pytest
import redis

import jobfleet

from support import Binaries, Cli, RedisServer, Workers, bin_dir


@pytest.fixture(scope="session")
def binaries() -> Binaries:
    directory = bin_dir()
    found = Binaries(directory / "jobfleet", directory / "jobfleet-worker")
    for path in (found.jobfleet, found.worker):
        if not os.access(path, os.X_OK):
            pytest.fail(
                f"{path} is missing: build the workspace (cargo build) or set JOBFLEET_BIN_DIR",
                pytrace=False,
            )
    return found


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def r(url: str) -> Iterator["redis.Redis"]:
    """A plain redis-py connection, to look at what the client wrote."""
    conn = redis.Redis.from_url(url, decode_responses=True)
    yield conn
    conn.close()


@pytest.fixture
def queue(request: pytest.FixtureRequest) -> str:
    """A queue name of this test's own."""
    stem = re.sub(r"[^A-Za-z0-9_.:-]+", "-", request.node.name)[:40].strip("-")
    return f"py-{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(url: str) -> Iterator[jobfleet.Client]:
    with jobfleet.Client(url) as c:
        yield c


@pytest.fixture
def workers(binaries: Binaries, url: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(binaries, url, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
def cli(binaries: Binaries, url: str) -> Cli:
    return Cli(binaries.jobfleet, url)

"""Typed errors: bad arguments refused before anything is written, an
unreachable Redis, a Redis Cluster node."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any, Dict

import pytest
import redis

import jobfleet
import jobfleet.asyncio
from jobfleet import InvalidArgument, JobSpec

from support import RedisServer, free_port

BAD_QUEUES = ["", "has space", "brace{d}", "glob*", "x" * 65, "ünïcode", "hash#1", "new\nline"]


def nothing_written(r: "redis.Redis", queue: str) -> bool:
    return not r.keys(f"jobfleet:{{{queue}*") and not r.sismember("jobfleet:queues", queue)


@pytest.mark.parametrize("bad", BAD_QUEUES)
def test_an_invalid_queue_name_is_refused(client: jobfleet.Client, bad: str) -> None:
    calls = [
        lambda: client.submit("echo", {}, queue=bad),
        lambda: client.submit_many([("echo", {})], queue=bad),
        lambda: client.status("some-id", queue=bad),
        lambda: client.cancel("some-id", queue=bad),
        lambda: client.wait("some-id", queue=bad, timeout=1),
    ]
    for call in calls:
        with pytest.raises(InvalidArgument, match="invalid queue name"):
            call()
    with pytest.raises(ValueError):
        jobfleet.Client(queue=bad)


@pytest.mark.parametrize(
    "payload",
    [object(), {1, 2}, float("nan"), {"n": math.inf}, b"bytes", {"nested": [object()]}],
    ids=["object", "set", "nan", "infinity", "bytes", "nested"],
)
def test_a_payload_that_is_not_json_is_refused(
    client: jobfleet.Client, queue: str, r: "redis.Redis", payload: Any
) -> None:
    with pytest.raises(InvalidArgument, match="payload is not JSON-serialisable"):
        client.submit("echo", payload, queue=queue)
    assert nothing_written(r, queue)


@pytest.mark.parametrize(
    "options",
    [
        {"key": "has space"},
        {"key": ""},
        {"key": "k" * 201},
        {"key": "tab\there"},
        {"key": "\udcff"},
        {"key": 42},
        {"delay": -1},
        {"delay": "10s"},
        {"delay": math.nan},
        {"delay": 101 * 365.25 * 86400},
        {"timeout": -0.5},
        {"max_attempts": 0},
        {"max_attempts": True},
        {"max_attempts": 1.5},
        {"key_ttl": -1},
        {"traceparent": "not-a-trace"},
        {"traceparent": "00-" + "0" * 32 + "-" + "1" * 16 + "-01"},
        {"traceparent": "00-" + "A" * 32 + "-" + "1" * 16 + "-01"},
    ],
    ids=lambda o: next(iter(o)) + "=" + repr(next(iter(o.values())))[:20],
)
def test_invalid_job_options_are_refused(
    client: jobfleet.Client, queue: str, r: "redis.Redis", options: Dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgument):
        client.submit("echo", {}, queue=queue, **options)
    assert nothing_written(r, queue)


@pytest.mark.parametrize("task", ["", "t" * 201, None])
def test_an_invalid_task_name_is_refused(client: jobfleet.Client, queue: str, task: Any) -> None:
    with pytest.raises(InvalidArgument, match="invalid task name"):
        client.submit(task, {}, queue=queue)


def test_one_bad_job_in_a_batch_submits_none(client: jobfleet.Client, queue: str, r: "redis.Redis") -> None:
    jobs = [JobSpec("echo", {"i": 1}), JobSpec("echo", {"i": 2}), JobSpec("echo", {1, 2}), JobSpec("echo", {})]
    with pytest.raises(InvalidArgument, match="job #3"):
        client.submit_many(jobs, queue=queue)
    with pytest.raises(InvalidArgument, match="job #2"):
        client.submit_many([("echo", {}), "not a job"], queue=queue)  # type: ignore[list-item]
    assert nothing_written(r, queue)
    assert client.submit_many([], queue=queue) == []


def test_a_payload_over_the_limit_is_refused(url: str, queue: str, r: "redis.Redis") -> None:
    with jobfleet.Client(url, max_payload_bytes=100) as small:
        with pytest.raises(InvalidArgument, match="over the 100 byte limit"):
            small.submit("echo", {"blob": "x" * 200}, queue=queue)
        assert small.submit("echo", {"blob": "x" * 10}, queue=queue)


@pytest.mark.parametrize(
    "arguments",
    [
        {"url": "http://127.0.0.1:6379"},
        {"url": "redis+sentinel://127.0.0.1:26379/main"},
        {"url": "redis://10.0.0.1:7000,10.0.0.2:7000"},
        {"prefix": ""},
        {"prefix": "with{brace}"},
        {"prefix": "with space"},
        {"max_payload_bytes": -1},
        {"retries": -1},
        {"command_timeout": 0},
        {"connect_timeout": -1},
    ],
    ids=lambda a: f"{next(iter(a))}={next(iter(a.values()))}",
)
def test_invalid_client_settings_are_refused(arguments: Dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        jobfleet.Client(**arguments)
    with pytest.raises(InvalidArgument):
        jobfleet.asyncio.Client(**arguments)


def test_a_refused_connection_is_a_clear_connection_error() -> None:
    port = free_port()
    url = f"redis://app:s3cret@127.0.0.1:{port}/0"
    with jobfleet.Client(url) as client:
        calls = [
            lambda: client.submit("echo", {}),
            lambda: client.status("an-id"),
            lambda: client.cancel("an-id"),
            lambda: client.wait("an-id", timeout=30),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(jobfleet.ConnectionError) as failed:
                call()
            assert time.monotonic() - started < 5, "a refused connection is reported at once"
            message = str(failed.value)
            assert f"127.0.0.1:{port}" in message and "cannot reach Redis" in message
            assert "s3cret" not in message and "s3cret" not in failed.value.url
            assert isinstance(failed.value, jobfleet.Error)
            assert isinstance(failed.value.__cause__, redis.exceptions.ConnectionError)


def test_a_refused_connection_is_a_clear_connection_error_in_asyncio() -> None:
    port = free_port()

    async def main() -> None:
        async with jobfleet.asyncio.Client(f"redis://:s3cret@127.0.0.1:{port}") as client:
            for call in (lambda: client.submit("echo", {}), lambda: client.wait("an-id", timeout=30)):
                with pytest.raises(jobfleet.ConnectionError) as failed:
                    await call()
                assert f"127.0.0.1:{port}" in str(failed.value) and "s3cret" not in str(failed.value)

    asyncio.run(main())


def test_a_redis_cluster_node_is_refused(tmp_path: Path) -> None:
    node = RedisServer(tmp_path / "cluster", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf")
    try:
        with jobfleet.Client(node.url) as client:
            with pytest.raises(jobfleet.ClusterNotSupported, match="Cluster"):
                client.submit("echo", {})
            with pytest.raises(jobfleet.ClusterNotSupported):
                client.status("an-id")

        async def main() -> None:
            async with jobfleet.asyncio.Client(node.url) as client:
                with pytest.raises(jobfleet.ClusterNotSupported):
                    await client.submit("echo", {})

        asyncio.run(main())
        conn = redis.Redis(host="127.0.0.1", port=node.port)
        try:
            assert conn.dbsize() == 0, "nothing was written to the cluster node"
        finally:
            conn.close()
    finally:
        node.stop()

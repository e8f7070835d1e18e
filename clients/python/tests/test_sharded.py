"""Sharded queues: placement, reads across shards, keys used before a raise."""

from __future__ import annotations

from collections import Counter

import redis

import jobfleet
from jobfleet import CancelOutcome, JobSpec, JobState

from support import Cli, Workers, shard_key


def test_a_sharded_queue_spreads_jobs_and_they_all_complete(
    client: jobfleet.Client, queue: str, workers: Workers, cli: Cli, r: "redis.Redis"
) -> None:
    cli.run("queue", "create", queue, "--shards", "4")
    assert r.hget(f"jobfleet:{{{queue}}}:meta", "shards") == "4"
    assert client.shard_count(queue) == 4
    workers.start(queue)
    ids = client.submit_many([JobSpec("echo", {"i": i}) for i in range(100)], queue=queue)
    placed: Counter[int] = Counter()
    for job_id in ids:
        home = jobfleet.shard_of(job_id, 4)
        placed[home] += 1
        held = [s for s in range(4) if r.exists(shard_key(queue, s, job_id))]
        assert held in ([home], []), f"{job_id} lives on its own shard only"
    assert placed == {0: 25, 1: 25, 2: 25, 3: 25}, "fresh ids go round robin over the shards"
    for i, job_id in enumerate(ids):
        job = client.wait(job_id, queue=queue, timeout=30)
        assert job.result == {"i": i} and job.queue == queue
    for s in range(4):
        tag = queue if s == 0 else f"{queue}#{s}"
        assert r.hget(f"jobfleet:{{{tag}}}:stats", "submitted") == "25"
    status = client.status(ids[-1], queue=queue)
    assert status is not None and status.state == JobState.COMPLETED


def test_a_key_used_before_the_shard_count_was_raised_still_finds_its_job(
    url: str, queue: str, cli: Cli, r: "redis.Redis"
) -> None:
    cli.run("queue", "create", queue, "--shards", "2")
    key = next(f"key-{i}" for i in range(1000) if jobfleet.shard_of(f"key-{i}", 2) != jobfleet.shard_of(f"key-{i}", 4))
    old, new = jobfleet.shard_of(key, 2), jobfleet.shard_of(key, 4)
    with jobfleet.Client(url) as before:
        assert before.submit("noop", {"first": True}, queue=queue, key=key) == key
    assert r.exists(shard_key(queue, old, key)) == 1

    cli.run("queue", "create", queue, "--shards", "4")
    with jobfleet.Client(url) as after:
        assert after.shard_count(queue) == 4
        assert after.submit("noop", {"second": True}, queue=queue, key=key) == key
        assert after.submit_many([JobSpec("noop", {"third": True}, key=key)], queue=queue) == [key]
        assert r.exists(shard_key(queue, new, key)) == 0, "no second job on the key's new shard"
        job = after.status(key, queue=queue)
        assert job is not None and job.payload == {"first": True}
        assert after.cancel(key, queue=queue) == CancelOutcome.CANCELLED
        assert r.hget(shard_key(queue, old, key), "state") == "cancelled"

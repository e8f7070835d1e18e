"""The asyncio client, against real workers."""

from __future__ import annotations

import asyncio

import pytest
import redis

import jobfleet
import jobfleet.asyncio
from jobfleet import CancelOutcome, JobSpec, JobState

from support import Cli, Workers


def test_async_submit_and_wait_for_an_echo(url: str, queue: str, workers: Workers) -> None:
    workers.start(queue)

    async def main() -> jobfleet.Job:
        async with jobfleet.asyncio.Client(url) as client:
            job_id = await client.submit("echo", {"async": ["yes", 1]}, queue=queue)
            return await client.wait(job_id, queue=queue, timeout=20)

    job = asyncio.run(main())
    assert job.state == JobState.COMPLETED
    assert job.result == {"async": ["yes", 1]}
    assert job.task == "echo" and job.attempts == 1


def test_async_batch_status_cancel_and_concurrent_waits(
    url: str, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    async def before_workers(client: jobfleet.asyncio.Client) -> list:
        ids = await client.submit_many([JobSpec("echo", {"i": i}) for i in range(20)], queue=queue)
        states = [(await client.status(i, queue=queue)) for i in ids]
        assert all(job is not None and job.state == JobState.PENDING for job in states)
        assert await client.cancel(ids[0], queue=queue) == CancelOutcome.CANCELLED
        assert await client.cancel("unknown", queue=queue) == CancelOutcome.NOT_FOUND
        with pytest.raises(jobfleet.JobFailed) as failed:
            await client.wait(ids[0], queue=queue, timeout=5)
        assert failed.value.job.state == JobState.CANCELLED
        with pytest.raises(jobfleet.WaitTimeout):
            await client.wait(ids[1], queue=queue, timeout=0.2)
        return ids

    async def after_workers(client: jobfleet.asyncio.Client, ids: list) -> None:
        jobs = await asyncio.gather(*(client.wait(i, queue=queue, timeout=20) for i in ids[1:]))
        assert [job.result for job in jobs] == [{"i": i} for i in range(1, 20)]
        with pytest.raises(jobfleet.JobNotFound):
            await client.wait("never-submitted", queue=queue, timeout=5)

    async def main() -> None:
        async with jobfleet.asyncio.Client(url) as client:
            ids = await before_workers(client)
            workers.start(queue)
            await after_workers(client, ids)

    asyncio.run(main())
    assert r.hget(f"jobfleet:{{{queue}}}:stats", "submitted") == "20"


def test_async_dead_job_raises_job_failed(url: str, queue: str, workers: Workers) -> None:
    workers.start(queue)

    async def main() -> None:
        async with jobfleet.asyncio.Client(url) as client:
            job_id = await client.submit("fail", {"message": "no luck", "permanent": True}, queue=queue)
            with pytest.raises(jobfleet.JobFailed) as failed:
                await client.wait(job_id, queue=queue, timeout=20)
            assert failed.value.job.state == JobState.DEAD
            assert failed.value.job.error == "no luck"

    asyncio.run(main())


def test_async_sharded_queue(url: str, queue: str, workers: Workers, cli: Cli) -> None:
    cli.run("queue", "create", queue, "--shards", "3")
    workers.start(queue)

    async def main() -> None:
        async with jobfleet.asyncio.Client(url) as client:
            assert await client.shard_count(queue) == 3
            ids = await client.submit_many([("echo", {"i": i}) for i in range(30)], queue=queue)
            shards = sorted(jobfleet.shard_of(i, 3) for i in ids)
            assert shards == [0] * 10 + [1] * 10 + [2] * 10
            jobs = await asyncio.gather(*(client.wait(i, queue=queue, timeout=20) for i in ids))
            assert [job.result for job in jobs] == [{"i": i} for i in range(30)]

    asyncio.run(main())

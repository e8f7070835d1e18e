"""A worker killed while it runs a Python-submitted job: the fleet recovers
the job, and the Python wait, open all along, still sees it complete."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor

import redis

import jobfleet
from jobfleet import JobState

from support import Workers, wait_until


def test_a_worker_killed_mid_job_and_the_wait_still_returns_completed(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    first = workers.start(queue)
    job_id = client.submit("sleep", {"ms": 2500}, queue=queue)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(client.wait, job_id, queue=queue, timeout=60)

        def running_on_first() -> bool:
            job = client.status(job_id, queue=queue)
            return job is not None and job.state == JobState.ACTIVE and job.worker == first.id

        wait_until(running_on_first, "the first worker to run the job")
        os.kill(first.pid, signal.SIGKILL)
        first.process.wait(10)
        assert not waiting.done(), "the wait is still open when the worker dies"

        second = workers.start(queue, "--dead-after", "1s", "--heartbeat", "200ms")
        job = waiting.result(timeout=60)

    assert job.state == JobState.COMPLETED and job.result == {"slept_ms": 2500}
    assert job.worker == second.id, "the job ran again on the surviving worker"
    assert job.recoveries == 1 and job.attempts == 1
    assert r.hget(f"jobfleet:{{{queue}}}:stats", "recovered") == "1"
    assert r.zscore(f"jobfleet:{{{queue}}}:workers", first.id) is None, "the dead worker was removed"


def test_a_wait_rides_out_a_dropped_subscription(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    channel = f"jobfleet:{{{queue}}}:events"
    job_id = client.submit("echo", {"after": "reconnect"}, queue=queue)
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiting = pool.submit(client.wait, job_id, queue=queue, timeout=60)
        wait_until(lambda: dict(r.pubsub_numsub(channel)).get(channel), "the wait to subscribe")
        killed = r.client_kill_filter(_type="pubsub")
        assert killed >= 1
        wait_until(lambda: dict(r.pubsub_numsub(channel)).get(channel), "the wait to subscribe again")
        assert not waiting.done()
        workers.start(queue)
        job = waiting.result(timeout=60)
    assert job.state == JobState.COMPLETED and job.result == {"after": "reconnect"}

"""Submitting and waiting with the synchronous client, against real workers."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest
import redis

import jobfleet
from jobfleet import JobSpec, JobState

from support import Workers, state_of, wait_until


def test_submit_and_wait_for_an_echo(client: jobfleet.Client, queue: str, workers: Workers) -> None:
    workers.start(queue)
    payload = {"text": "hello / world", "list": [1, 2.5, None, True], "ünï": "cödé"}
    job_id = client.submit("echo", payload, queue=queue)
    assert uuid.UUID(job_id).version == 7
    job = client.wait(job_id, queue=queue, timeout=20)
    assert job.state == JobState.COMPLETED == "completed"
    assert job.result == payload
    assert (job.id, job.queue, job.task, job.attempts) == (job_id, queue, "echo", 1)
    assert job.payload == payload
    assert job.created_ms is not None and job.started_ms is not None and job.finished_ms is not None
    assert job.created_ms <= job.started_ms <= job.finished_ms
    assert job.worker and job.error is None and job.is_final


def test_a_batch_of_200_jobs_all_complete(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    workers.start(queue)
    ids = client.submit_many([JobSpec("echo", {"i": i}) for i in range(200)], queue=queue)
    assert len(ids) == 200 and len(set(ids)) == 200
    for i, job_id in enumerate(ids):
        job = client.wait(job_id, queue=queue, timeout=30)
        assert job.result == {"i": i}
    assert r.hget(f"jobfleet:{{{queue}}}:stats", "submitted") == "200"
    assert r.sismember("jobfleet:queues", queue)


def test_a_delayed_job_is_scheduled_then_runs_after_its_delay(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    workers.start(queue)
    job_id = client.submit("echo", {"later": True}, queue=queue, delay=timedelta(milliseconds=1200))
    job = client.status(job_id, queue=queue)
    assert job is not None and job.state == JobState.SCHEDULED
    assert job.created_ms is not None and job.run_at_ms == job.created_ms + 1200
    assert r.zscore(f"jobfleet:{{{queue}}}:scheduled", job_id) == job.run_at_ms
    assert r.lpos(f"jobfleet:{{{queue}}}:pending", job_id) is None

    done = client.wait(job_id, queue=queue, timeout=20)
    assert done.state == JobState.COMPLETED and done.result == {"later": True}
    assert done.started_ms is not None and done.started_ms >= job.run_at_ms, "it did not run before its time"
    assert done.run_at_ms == job.run_at_ms


def test_an_idempotency_key_gives_one_job(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    key = f"order-{uuid.uuid4()}"
    first = client.submit("echo", {"version": 1}, queue=queue, key=key)
    again = client.submit("echo", {"version": 2}, queue=queue, key=key)
    batch = client.submit_many([JobSpec("echo", {"version": 3}, key=key), ("echo", {"other": True})], queue=queue)
    assert first == again == batch[0] == key
    assert batch[1] != key
    assert r.hget(f"jobfleet:{{{queue}}}:stats", "submitted") == "2", "the key made one job, the other job one"
    assert r.llen(f"jobfleet:{{{queue}}}:pending") == 2
    job = client.status(key, queue=queue)
    assert job is not None and job.payload == {"version": 1}

    workers.start(queue)
    assert client.wait(key, queue=queue, timeout=20).result == {"version": 1}
    # While its record lives, the key still names that job.
    assert client.submit("echo", {"version": 4}, queue=queue, key=key) == key
    final = client.status(key, queue=queue)
    assert final is not None and final.state == JobState.COMPLETED and final.result == {"version": 1}
    assert r.hget(f"jobfleet:{{{queue}}}:stats", "submitted") == "2"


def test_a_failing_task_ends_dead_with_its_error(client: jobfleet.Client, queue: str, workers: Workers) -> None:
    workers.start(queue)
    job_id = client.submit("fail", {"message": "disk on fire", "permanent": True}, queue=queue)
    with pytest.raises(jobfleet.JobFailed) as failed:
        client.wait(job_id, queue=queue, timeout=20)
    job = failed.value.job
    assert (job.id, job.state, job.error, job.attempts) == (job_id, JobState.DEAD, "disk on fire", 1)
    assert "dead" in str(failed.value) and "disk on fire" in str(failed.value)
    status = client.status(job_id, queue=queue)
    assert status is not None and status.state == JobState.DEAD
    with pytest.raises(jobfleet.JobFailed):
        status.raise_for_state()


def test_a_retried_task_uses_its_attempts_then_dies(
    client: jobfleet.Client, queue: str, workers: Workers
) -> None:
    workers.start(queue, "--backoff", "50ms")
    job_id = client.submit("fail", {"message": "flaky"}, queue=queue, max_attempts=2)
    with pytest.raises(jobfleet.JobFailed) as failed:
        client.wait(job_id, queue=queue, timeout=20)
    assert failed.value.job.state == JobState.DEAD
    assert failed.value.job.attempts == 2
    assert failed.value.job.error == "flaky"


def test_wait_gives_up_after_its_timeout(client: jobfleet.Client, queue: str) -> None:
    job_id = client.submit("echo", {}, queue=queue)
    started = time.monotonic()
    with pytest.raises(jobfleet.WaitTimeout) as timed_out:
        client.wait(job_id, queue=queue, timeout=0.3)
    elapsed = time.monotonic() - started
    assert 0.3 <= elapsed < 3
    assert timed_out.value.id == job_id and timed_out.value.state == JobState.PENDING
    assert "keeps running" in str(timed_out.value)
    job = client.status(job_id, queue=queue)
    assert job is not None and job.state == JobState.PENDING


def test_waiting_for_an_unknown_job_says_so(client: jobfleet.Client, queue: str) -> None:
    with pytest.raises(jobfleet.JobNotFound) as missing:
        client.wait("no-such-job", queue=queue, timeout=5)
    assert missing.value.id == "no-such-job" and queue in str(missing.value)
    assert client.status("no-such-job", queue=queue) is None


def test_a_running_job_is_cancelled_through_its_worker(
    client: jobfleet.Client, queue: str, workers: Workers
) -> None:
    workers.start(queue)
    job_id = client.submit("sleep", {"ms": 20000}, queue=queue)
    wait_until(lambda: state_of(client, job_id, queue) == JobState.ACTIVE, "the job to start")
    assert client.cancel(job_id, queue=queue) == jobfleet.CancelOutcome.CANCELLING
    started = time.monotonic()
    with pytest.raises(jobfleet.JobFailed) as failed:
        client.wait(job_id, queue=queue, timeout=15)
    assert time.monotonic() - started < 10, "the worker stopped the task instead of letting it finish"
    assert failed.value.job.state == JobState.CANCELLED
    assert failed.value.job.error == "cancelled while running"


def test_a_custom_prefix_keeps_fleets_apart(url: str, queue: str, workers: Workers, r: "redis.Redis") -> None:
    prefix = f"pytest-{uuid.uuid4().hex[:8]}"
    workers.start(queue, prefix=prefix)
    with jobfleet.Client(url, prefix=prefix) as client:
        assert client.prefix == prefix
        job_id = client.submit("echo", {"fleet": prefix}, queue=queue)
        assert r.exists(f"{prefix}:{{{queue}}}:job:{job_id}") == 1
        assert r.exists(f"jobfleet:{{{queue}}}:job:{job_id}") == 0
        assert client.wait(job_id, queue=queue, timeout=20).result == {"fleet": prefix}
    assert r.sismember(f"{prefix}:queues", queue)
    with jobfleet.Client(url) as default_fleet:
        assert default_fleet.status(job_id, queue=queue) is None


def test_the_default_queue_is_used_when_none_is_named(url: str, queue: str, workers: Workers) -> None:
    workers.start(queue)
    with jobfleet.Client(url, queue=queue) as client:
        assert client.default_queue == queue
        job_id = client.submit("noop")
        job = client.wait(job_id, timeout=20)
        assert job.queue == queue and job.result is None and job.payload is None


def test_a_key_ttl_keeps_the_finished_record_past_a_short_retention(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    workers.start(queue, "--keep-completed", "2s")
    kept = client.submit("echo", {"kept": True}, queue=queue, key=f"kept-{uuid.uuid4()}", key_ttl=timedelta(hours=1))
    plain = client.submit("echo", {"kept": False}, queue=queue)
    for job_id in (plain, kept):  # plain first: its record expires 2 s after it completes
        client.wait(job_id, queue=queue, timeout=20)
    assert 3500 < r.ttl(f"jobfleet:{{{queue}}}:job:{kept}") <= 3600
    # The plain record lives the 2 s retention (it may be gone already).
    assert r.ttl(f"jobfleet:{{{queue}}}:job:{plain}") in (-2, 0, 1, 2)
    job = client.status(kept, queue=queue)
    assert job is not None and job.key_ttl_s == 3600

"""Cancelling jobs that wait (pending, scheduled) and unknown ones."""

from __future__ import annotations

import pytest
import redis

import jobfleet
from jobfleet import CancelOutcome, JobState

from support import Workers


def test_a_pending_job_is_cancelled_and_never_runs(
    client: jobfleet.Client, queue: str, workers: Workers, r: "redis.Redis"
) -> None:
    job_id = client.submit("echo", {"never": "runs"}, queue=queue)
    assert client.cancel(job_id, queue=queue) == CancelOutcome.CANCELLED
    job = client.status(job_id, queue=queue)
    assert job is not None and job.state == JobState.CANCELLED and job.finished_ms is not None
    assert r.hget(f"jobfleet:{{{queue}}}:job:{job_id}", "queued") == "1", "cancelled in place, O(1)"
    assert client.cancel(job_id, queue=queue) == CancelOutcome.ALREADY_FINAL
    with pytest.raises(jobfleet.JobFailed) as failed:
        client.wait(job_id, queue=queue, timeout=5)
    assert failed.value.job.state == JobState.CANCELLED

    # A worker skips the cancelled entry and runs the job submitted after it.
    workers.start(queue)
    later = client.submit("echo", {"runs": True}, queue=queue)
    assert client.wait(later, queue=queue, timeout=20).result == {"runs": True}
    job = client.status(job_id, queue=queue)
    assert job is not None and job.state == JobState.CANCELLED and job.attempts == 0 and job.result is None
    assert r.llen(f"jobfleet:{{{queue}}}:pending") == 0


def test_a_scheduled_job_is_cancelled(client: jobfleet.Client, queue: str, r: "redis.Redis") -> None:
    job_id = client.submit("echo", {}, queue=queue, delay=3600)
    assert client.cancel(job_id, queue=queue) == CancelOutcome.CANCELLED
    assert r.zscore(f"jobfleet:{{{queue}}}:scheduled", job_id) is None
    job = client.status(job_id, queue=queue)
    assert job is not None and job.state == JobState.CANCELLED
    ttl = r.ttl(f"jobfleet:{{{queue}}}:job:{job_id}")
    assert 3500 < ttl <= 3600, "a cancelled record is kept for the retention"


def test_cancelling_an_unknown_job(client: jobfleet.Client, queue: str) -> None:
    assert client.cancel("never-submitted", queue=queue) == CancelOutcome.NOT_FOUND

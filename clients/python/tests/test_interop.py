"""The Python client and the Rust CLI read each other's jobs."""

from __future__ import annotations

import uuid
from datetime import timedelta

import jobfleet
from jobfleet import JobState

from support import Cli, Workers


def test_the_rust_cli_reads_a_python_job(client: jobfleet.Client, queue: str, workers: Workers, cli: Cli) -> None:
    payload = {"from": "python", "path": "a/b", "n": 3}
    key = f"py-{uuid.uuid4()}"
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    job_id = client.submit(
        "echo",
        payload,
        queue=queue,
        key=key,
        max_attempts=5,
        timeout=timedelta(seconds=12.5),
        key_ttl=7200,
        traceparent=traceparent,
    )
    seen = cli.json("status", job_id, "--json", "-q", queue)
    assert seen["id"] == key and seen["queue"] == queue and seen["task"] == "echo"
    assert seen["state"] == "pending" and seen["payload"] == payload
    assert (seen["attempts"], seen["max_attempts"], seen["timeout_ms"]) == (0, 5, 12500)
    assert seen["key_ttl_s"] == 7200 and seen["traceparent"] == traceparent

    workers.start(queue)
    assert client.wait(job_id, queue=queue, timeout=20).result == payload
    seen = cli.json("status", job_id, "--json", "-q", queue)
    assert seen["state"] == "completed" and seen["result"] == payload and seen["attempts"] == 1
    assert cli.run("wait", job_id, "-q", queue, "--timeout", "10s").returncode == 0


def test_python_waits_on_a_job_the_rust_cli_submitted(client: jobfleet.Client, queue: str, workers: Workers, cli: Cli) -> None:
    workers.start(queue)
    job_id = cli.run("submit", "echo", '{"from": "rust"}', "-q", queue, "--delay", "1s").stdout.strip()
    before = client.status(job_id, queue=queue)
    assert before is not None and before.state == JobState.SCHEDULED and before.task == "echo"
    job = client.wait(job_id, queue=queue, timeout=20)
    assert job.state == JobState.COMPLETED and job.result == {"from": "rust"}
    assert job.id == job_id and job.max_attempts == 3 and job.timeout_ms == 30000

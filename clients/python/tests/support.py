"""Helpers for the tests: a private redis-server, real ``jobfleet-worker``
processes, the ``jobfleet`` CLI, bounded polling."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest
import redis

import jobfleet

CLIENT_DIR = Path(__file__).resolve().parent.parent


def bin_dir() -> Path:
    """Where the jobfleet binaries are: ``JOBFLEET_BIN_DIR``, else the
    workspace's ``target/debug``."""
    configured = os.environ.get("JOBFLEET_BIN_DIR")
    return Path(configured).resolve() if configured else (CLIENT_DIR / ".." / ".." / "target" / "debug").resolve()


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = 10.0, interval: float = 0.02) -> Any:
    """Polls ``predicate`` until it returns something truthy (bounded)."""
    end = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Binaries:
    jobfleet: Path
    worker: Path


class RedisServer:
    """A redis-server of our own on a free loopback port, with no persistence."""

    def __init__(self, directory: Path, *extra: str) -> None:
        server = shutil.which("redis-server")
        if server is None:
            pytest.fail("redis-server is not on PATH (Debian: apt-get install redis-server)", pytrace=False)
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "redis.log"
        last_error = ""
        for _ in range(5):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    server,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--dir", str(directory),
                    "--logfile", str(self.log),
                    *extra,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._ready():
                return
            last_error = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            self.stop()
        pytest.fail(f"redis-server did not start:\n{last_error}", pytrace=False)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def _ready(self) -> bool:
        conn = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1)
        end = time.monotonic() + 10
        try:
            while time.monotonic() < end:
                if self.process.poll() is not None:
                    return False
                try:
                    if conn.ping():
                        return True
                except redis.ConnectionError:
                    time.sleep(0.02)
            return False
        finally:
            conn.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Worker:
    """A running ``jobfleet-worker``."""

    process: "subprocess.Popen[bytes]"
    id: str
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@dataclass
class Workers:
    """Starts workers for a test and stops them after it."""

    binaries: Binaries
    url: str
    directory: Path
    started: List[Worker] = field(default_factory=list)

    def start(self, queue: str, *args: str, prefix: str = jobfleet.DEFAULT_PREFIX) -> Worker:
        """Starts a worker on ``queue`` and returns once it has registered."""
        conn = redis.Redis.from_url(self.url, decode_responses=True)
        members_key = f"{prefix}:{{{queue}}}:workers"
        before = {str(member) for member in conn.zrange(members_key, 0, -1)}
        log = self.directory / f"worker-{len(self.started)}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    str(self.binaries.worker),
                    "--redis", self.url,
                    "--prefix", prefix,
                    "--queue", queue,
                    "--concurrency", "8",
                    "--grace", "2s",
                    "--log-level", "warn",
                    *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        def registered() -> Optional[str]:
            if process.poll() is not None:
                raise AssertionError(f"the worker exited with {process.returncode}:\n{log.read_text(errors='replace')}")
            new = {str(member) for member in conn.zrange(members_key, 0, -1)} - before
            return next(iter(new), None)

        try:
            worker_id = wait_until(registered, f"a worker to register on {queue}")
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            conn.close()
        worker = Worker(process, worker_id, log)
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            worker.stop()


class Cli:
    """Runs the ``jobfleet`` CLI against the test Redis."""

    def __init__(self, binary: Path, url: str) -> None:
        self.binary = binary
        self.url = url

    def run(self, *args: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
        done = subprocess.run(
            [str(self.binary), "--redis", self.url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and done.returncode != 0:
            raise AssertionError(
                f"jobfleet {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def json(self, *args: str) -> Dict[str, Any]:
        return json.loads(self.run(*args).stdout)


def shard_key(queue: str, shard: int, job_id: str, prefix: str = jobfleet.DEFAULT_PREFIX) -> str:
    """A job HASH key, written out independently of the client."""
    tag = queue if shard == 0 else f"{queue}#{shard}"
    return f"{prefix}:{{{tag}}}:job:{job_id}"


def state_of(client: jobfleet.Client, job_id: str, queue: str) -> Optional[jobfleet.JobState]:
    """A job's state, or ``None`` when it has no record."""
    job = client.status(job_id, queue=queue)
    return None if job is None else job.state

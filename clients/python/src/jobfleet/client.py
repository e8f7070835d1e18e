"""The synchronous client, on redis-py's :class:`redis.Redis`."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Callable, Iterable, List, Mapping, Optional, Sequence, Tuple, Type, Union, cast

import redis.exceptions
from redis import Redis
from redis.client import Pipeline, PubSub
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from . import _protocol as p
from ._base import CONNECTION_ERRORS, FINAL, RESYNC, ClientBase, WaitProgress, classify
from .errors import InvalidArgument, JobNotFound, WaitTimeout
from .model import CancelOutcome, Duration, Job, JobSpec

__all__ = ["Client"]

#: A job for :meth:`Client.submit_many`: a spec, or a ``(task, payload)`` pair.
JobLike = Union[JobSpec, Tuple[str, Any]]


class Client(ClientBase):
    """A jobfleet producer on one Redis server.

    ``url`` is ``redis://[user:password@]host:port[/db]``, ``rediss://`` for
    TLS, or ``unix://``. Redis Cluster and Sentinel are not supported (a
    Cluster node is detected and refused with
    :class:`jobfleet.ClusterNotSupported`).

    ``prefix`` must match the workers' ``--prefix``; ``queue`` is the queue a
    call uses when it names none. ``max_payload_bytes`` should match the
    workers' ``--max-payload-bytes`` (0: no check here).
    ``cancelled_retention`` is how long the record of a scheduled job
    cancelled here is kept (the workers' ``--keep-completed``).
    ``command_timeout`` bounds each Redis reply, and a command whose
    connection broke is retried ``retries`` times with a short backoff.

    The client connects lazily and is safe to share between threads. Close
    it with :meth:`close` or use it as a context manager.
    """

    def __init__(
        self,
        url: str = p.DEFAULT_URL,
        *,
        prefix: str = p.DEFAULT_PREFIX,
        queue: str = p.DEFAULT_QUEUE,
        max_payload_bytes: int = p.DEFAULT_MAX_PAYLOAD_BYTES,
        cancelled_retention: Duration = p.DEFAULT_CANCELLED_RETENTION,
        connect_timeout: Duration = 5.0,
        command_timeout: Duration = 10.0,
        retries: int = 3,
    ) -> None:
        super().__init__(
            url,
            prefix=prefix,
            queue=queue,
            max_payload_bytes=max_payload_bytes,
            cancelled_retention=cancelled_retention,
            connect_timeout=connect_timeout,
            command_timeout=command_timeout,
            retries=retries,
        )
        try:
            self._redis: Redis = Redis.from_url(
                url,
                retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
                **self._connection_kwargs(),
            )
        except ValueError as e:
            raise InvalidArgument(f"invalid Redis URL {self._display!r}: {e}") from e

    @property
    def redis(self) -> Redis:
        """The underlying redis-py client (text replies)."""
        return self._redis

    def close(self) -> None:
        """Closes the connections."""
        self._redis.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    # -- submitting ------------------------------------------------------

    def submit(
        self,
        task: str,
        payload: Any = None,
        *,
        queue: Optional[str] = None,
        delay: Optional[Duration] = None,
        key: Optional[str] = None,
        max_attempts: int = 3,
        timeout: Optional[Duration] = 30.0,
        key_ttl: Optional[Duration] = None,
        traceparent: Optional[str] = None,
    ) -> str:
        """Submits one job and returns its id.

        ``payload`` is any JSON-serialisable value. ``delay`` (seconds or a
        ``timedelta``) makes it ``scheduled`` until then, on Redis' clock.
        ``key`` is an idempotency key used as the id: while a job with it
        exists, submitting it again returns the same id and changes nothing.
        ``timeout`` is the longest one attempt may run (``0``/``None``: no
        limit), enforced by the worker. ``key_ttl`` keeps the finished record
        (and so the key) at least that long, past a shorter retention;
        ``traceparent`` carries a W3C trace context to the worker.

        Raises :class:`jobfleet.InvalidArgument` before sending anything when
        an argument cannot be used."""
        spec = JobSpec(
            task,
            payload,
            key=key,
            delay=delay,
            max_attempts=max_attempts,
            timeout=timeout,
            key_ttl=key_ttl,
            traceparent=traceparent,
        )
        return self.submit_many([spec], queue=queue)[0]

    def submit_many(self, jobs: Iterable[JobLike], *, queue: Optional[str] = None) -> List[str]:
        """Submits a batch of jobs to one queue and returns their ids, in
        order: one script call per 1,000 jobs (per shard), pipelined. Every
        job is checked before anything is sent, so a bad one submits none."""
        name = self._queue(queue)
        prepared = p.prepare_all(list(jobs), self._max_payload_bytes)
        if not prepared:
            return []
        with self._errors():
            self._ready()
            shards = self._shard_count(name)
            keyed = [job.id for job in prepared if job.keyed]
            found = self._find_shards(name, keyed, shards) if shards > 1 and keyed else [None] * len(keyed)
            groups = self._place(name, prepared, shards, found)
            calls = [
                call for shard, group in groups.items() for call in p.submit_calls(self._keys(name, shard), group)
            ]
            register = self._needs_register(name)
            sha = self._script("submit.lua")[1]

            def build(pipe: Pipeline) -> None:
                if register:
                    pipe.sadd(p.queues_key(self._prefix), name)
                for keys, args in calls:
                    pipe.evalsha(sha, len(keys), *keys, *args)

            replies = self._pipeline(build)
            if register:
                replies = replies[1:]
                self._registered_queue(name)
            for (keys, _), reply in zip(calls, replies):
                p.check_submit_reply(reply, len(keys) - 4)
        return [job.id for job in prepared if job.id is not None]

    # -- reading ---------------------------------------------------------

    def status(self, job_id: str, *, queue: Optional[str] = None) -> Optional[Job]:
        """Reads a job, or ``None`` when the queue has no such job (never
        submitted, or its record expired)."""
        name = self._queue(queue)
        p.validate_job_id(job_id)
        with self._errors():
            self._ready()
            return self._read(name, job_id, self._shard_count(name))

    def shard_count(self, queue: Optional[str] = None) -> int:
        """How many shards a queue has (1 unless raised with ``jobfleet queue
        create Q --shards N``); read from Redis at most every 2 s."""
        name = self._queue(queue)
        with self._errors():
            self._ready()
            return self._shard_count(name)

    def cancel(self, job_id: str, *, queue: Optional[str] = None) -> CancelOutcome:
        """Cancels a job: at once when it is pending or scheduled, through its
        worker when it is running (it then ends ``cancelled``, unless it
        completes first)."""
        name = self._queue(queue)
        p.validate_job_id(job_id)
        with self._errors():
            self._ready()
            shards = self._shard_count(name)
            shard = 0
            if shards > 1:
                order = p.probe_order(job_id, shards)
                pipe = self._redis.pipeline(transaction=False)
                for s in order:
                    pipe.exists(self._keys(name, s).job(job_id))
                hits = [s for s, n in zip(order, pipe.execute()) if n]
                if not hits:
                    return CancelOutcome.NOT_FOUND
                shard = hits[0]
            keys, args = p.cancel_call(self._keys(name, shard), name, job_id, self._cancelled_retention_s)
            reply = self._eval("cancel.lua", keys, args)
            return self._cancel_outcome(reply)

    def wait(
        self,
        job_id: str,
        *,
        queue: Optional[str] = None,
        timeout: Optional[Duration] = None,
    ) -> Job:
        """Waits until a job is final and returns it when it ``completed``
        (its ``result`` is the task's output).

        Raises :class:`jobfleet.JobFailed` (with ``.job``) when it ended
        ``dead`` or ``cancelled``, :class:`jobfleet.WaitTimeout` when
        ``timeout`` (seconds or a ``timedelta``; ``None``: no limit) runs out
        first (the job keeps running), and :class:`jobfleet.JobNotFound` when
        the queue has no such job.

        It subscribes to the queue's events before reading the job's state,
        so no event slips between the two; after a reconnect it reads the
        state again. A lost connection is ridden out until the deadline (a
        minute without one)."""
        name = self._queue(queue)
        p.validate_job_id(job_id)
        progress = WaitProgress(job_id, p.seconds(timeout, "timeout"))
        with self._errors():
            self._ready()
            while True:
                try:
                    job = self._wait_subscribed(name, job_id, progress)
                    break
                except CONNECTION_ERRORS as e:
                    time.sleep(progress.retry_after(e))
        return job.raise_for_state()

    # -- internals -------------------------------------------------------

    def _ready(self) -> None:
        """Refuses a Redis Cluster node, once per client."""
        if self._server_checked:
            return
        try:
            info = self._redis.info("cluster")
        except redis.exceptions.ResponseError:
            info = {}
        self._check_cluster(info)

    def _shard_count(self, name: str) -> int:
        cached = self._cached_shards(name)
        if cached is not None:
            return cached
        return self._remember_shards(name, self._redis.hget(self._keys(name).meta, "shards"))

    def _pipeline(self, build: Callable[[Pipeline], None]) -> List[Any]:
        """Runs a pipeline whose scripts are sent by SHA; when Redis does not
        know one (a restart, a flush), loads them and sends it again (every
        command in it is safe to repeat)."""
        for attempt in (0, 1):
            pipe = self._redis.pipeline(transaction=False)
            build(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                self._load_scripts()
        raise AssertionError("unreachable")

    def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        source, sha = self._script(name)
        try:
            return self._redis.evalsha(sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            self._redis.script_load(source)
            return self._redis.evalsha(sha, len(keys), *keys, *args)

    def _load_scripts(self) -> None:
        for name in p.SCRIPT_NAMES:
            self._redis.script_load(self._script(name)[0])

    def _find_shards(self, name: str, ids: Sequence[Optional[str]], shards: int) -> List[Optional[int]]:
        """The shard that holds a job for each of ``ids``, if any: first in
        each id's own shard, then in the others."""
        texts = [i or "" for i in ids]
        found: List[Optional[int]] = [None] * len(texts)
        for round_ in (0, 1):
            plan = p.probe_plan(texts, shards, round_, [f is None for f in found])
            if not plan:
                continue
            pipe = self._redis.pipeline(transaction=False)
            asked = []
            for shard, idx in plan:
                for i in idx:
                    pipe.exists(self._keys(name, shard).job(texts[i]))
                    asked.append((shard, i))
            for (shard, i), n in zip(asked, pipe.execute()):
                if n and found[i] is None:
                    found[i] = shard
        return found

    def _read(self, name: str, job_id: str, shards: int) -> Optional[Job]:
        """The job's record: in its id's shard first, then the others, in one
        round trip."""
        if shards == 1:
            fields = cast(Mapping[str, str], self._redis.hgetall(self._keys(name).job(job_id)))
            return p.job_from_fields(job_id, name, fields)
        pipe = self._redis.pipeline(transaction=False)
        for s in p.probe_order(job_id, shards):
            pipe.hgetall(self._keys(name, s).job(job_id))
        return self._first_record(name, job_id, pipe.execute())

    def _wait_subscribed(self, name: str, job_id: str, progress: WaitProgress) -> Job:
        """One subscription's worth of waiting: subscribe, read, then wait for
        the job's final event."""
        shards = self._shard_count(name)
        channels = [self._keys(name, s).events for s in range(shards)]
        pubsub = self._redis.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(*channels)
            self._confirm(pubsub, channels)
            progress.subscribed()
            resync = True
            while True:
                if resync:
                    resync = False
                    job = self._read(name, job_id, shards)
                    if job is not None:
                        progress.last_state = job.state
                        if job.is_final:
                            return job
                    else:
                        # No record: it may have finished and been deleted
                        # just before the read; its event is then on its way.
                        grace_end = time.monotonic() + p.ABSENT_GRACE
                        while not resync:
                            grace = grace_end - time.monotonic()
                            if grace <= 0:
                                raise JobNotFound(job_id, name)
                            kind, event = classify(pubsub.get_message(timeout=grace), name, job_id)
                            if kind == FINAL and event is not None:
                                return p.final_job(self._read(name, job_id, shards), event)
                            resync = kind == RESYNC
                        continue
                left = progress.left()
                if left is not None and left <= 0:
                    raise WaitTimeout(job_id, progress.limit or 0.0, progress.last_state)
                # Bounded reads: a blocking read would run into the socket timeout.
                step = 5.0 if left is None else min(left, 5.0)
                kind, event = classify(pubsub.get_message(timeout=step), name, job_id)
                if kind == FINAL and event is not None:
                    return p.final_job(self._read(name, job_id, shards), event)
                resync = kind == RESYNC
        finally:
            pubsub.close()

    @staticmethod
    def _confirm(pubsub: PubSub, channels: Sequence[str]) -> None:
        """Waits until Redis has confirmed every subscription: only then is
        every event published afterwards delivered."""
        unconfirmed = set(channels)
        end = time.monotonic() + p.SUBSCRIBE_TIMEOUT
        while unconfirmed:
            left = end - time.monotonic()
            if left <= 0:
                raise redis.exceptions.TimeoutError("timed out waiting for Redis to confirm the subscription")
            message = pubsub.get_message(timeout=left)
            if message is not None and message.get("type") == "subscribe":
                unconfirmed.discard(message.get("channel"))

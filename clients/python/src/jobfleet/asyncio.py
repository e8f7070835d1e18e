"""The asyncio client, on redis-py's :mod:`redis.asyncio`: the same calls as
:class:`jobfleet.Client`, as coroutines.

.. code-block:: python

    import jobfleet.asyncio

    async def main() -> None:
        async with jobfleet.asyncio.Client("redis://127.0.0.1:6379") as client:
            job_id = await client.submit("echo", {"hello": "world"})
            job = await client.wait(job_id, timeout=30)
            print(job.result)
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Awaitable, Callable, Iterable, List, Mapping, Optional, Sequence, Type, cast

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from . import _protocol as p
from ._base import CONNECTION_ERRORS, FINAL, RESYNC, ClientBase, WaitProgress, classify
from .client import JobLike
from .errors import InvalidArgument, JobNotFound, WaitTimeout
from .model import CancelOutcome, Duration, Job, JobSpec

__all__ = ["Client"]


class Client(ClientBase):
    """A jobfleet producer on one Redis server, for asyncio.

    Takes the same arguments as :class:`jobfleet.Client`. It connects lazily;
    close it with :meth:`aclose` or use it as an async context manager."""

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
        """The underlying redis-py asyncio client (text replies)."""
        return self._redis

    async def aclose(self) -> None:
        """Closes the connections."""
        close = getattr(self._redis, "aclose", None) or self._redis.close
        await close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()

    # -- submitting ------------------------------------------------------

    async def submit(
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
        """Submits one job and returns its id (see :meth:`jobfleet.Client.submit`)."""
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
        return (await self.submit_many([spec], queue=queue))[0]

    async def submit_many(self, jobs: Iterable[JobLike], *, queue: Optional[str] = None) -> List[str]:
        """Submits a batch of jobs and returns their ids, in order (see
        :meth:`jobfleet.Client.submit_many`)."""
        name = self._queue(queue)
        prepared = p.prepare_all(list(jobs), self._max_payload_bytes)
        if not prepared:
            return []
        with self._errors():
            await self._ready()
            shards = await self._shard_count(name)
            keyed = [job.id for job in prepared if job.keyed]
            found = await self._find_shards(name, keyed, shards) if shards > 1 and keyed else [None] * len(keyed)
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

            replies = await self._pipeline(build)
            if register:
                replies = replies[1:]
                self._registered_queue(name)
            for (keys, _), reply in zip(calls, replies):
                p.check_submit_reply(reply, len(keys) - 4)
        return [job.id for job in prepared if job.id is not None]

    # -- reading ---------------------------------------------------------

    async def status(self, job_id: str, *, queue: Optional[str] = None) -> Optional[Job]:
        """Reads a job, or ``None`` when the queue has no such job."""
        name = self._queue(queue)
        p.validate_job_id(job_id)
        with self._errors():
            await self._ready()
            return await self._read(name, job_id, await self._shard_count(name))

    async def shard_count(self, queue: Optional[str] = None) -> int:
        """How many shards a queue has; read from Redis at most every 2 s."""
        name = self._queue(queue)
        with self._errors():
            await self._ready()
            return await self._shard_count(name)

    async def cancel(self, job_id: str, *, queue: Optional[str] = None) -> CancelOutcome:
        """Cancels a job (see :meth:`jobfleet.Client.cancel`)."""
        name = self._queue(queue)
        p.validate_job_id(job_id)
        with self._errors():
            await self._ready()
            shards = await self._shard_count(name)
            shard = 0
            if shards > 1:
                order = p.probe_order(job_id, shards)
                pipe = self._redis.pipeline(transaction=False)
                for s in order:
                    pipe.exists(self._keys(name, s).job(job_id))
                hits = [s for s, n in zip(order, await pipe.execute()) if n]
                if not hits:
                    return CancelOutcome.NOT_FOUND
                shard = hits[0]
            keys, args = p.cancel_call(self._keys(name, shard), name, job_id, self._cancelled_retention_s)
            reply = await self._eval("cancel.lua", keys, args)
            return self._cancel_outcome(reply)

    async def wait(
        self,
        job_id: str,
        *,
        queue: Optional[str] = None,
        timeout: Optional[Duration] = None,
    ) -> Job:
        """Waits until a job is final and returns it when it ``completed``;
        raises :class:`jobfleet.JobFailed`, :class:`jobfleet.WaitTimeout` or
        :class:`jobfleet.JobNotFound` otherwise (see
        :meth:`jobfleet.Client.wait`)."""
        name = self._queue(queue)
        p.validate_job_id(job_id)
        progress = WaitProgress(job_id, p.seconds(timeout, "timeout"))
        with self._errors():
            await self._ready()
            while True:
                try:
                    job = await self._wait_subscribed(name, job_id, progress)
                    break
                except CONNECTION_ERRORS as e:
                    await asyncio.sleep(progress.retry_after(e))
        return job.raise_for_state()

    # -- internals -------------------------------------------------------

    async def _ready(self) -> None:
        if self._server_checked:
            return
        try:
            info = await self._redis.info("cluster")
        except redis.exceptions.ResponseError:
            info = {}
        self._check_cluster(info)

    async def _shard_count(self, name: str) -> int:
        cached = self._cached_shards(name)
        if cached is not None:
            return cached
        return self._remember_shards(name, await self._redis.hget(self._keys(name).meta, "shards"))

    async def _pipeline(self, build: Callable[[Pipeline], None]) -> List[Any]:
        for attempt in (0, 1):
            pipe = self._redis.pipeline(transaction=False)
            build(pipe)
            try:
                return await pipe.execute()
            except redis.exceptions.NoScriptError:
                if attempt:
                    raise
                await self._load_scripts()
        raise AssertionError("unreachable")

    async def _eval(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        source, sha = self._script(name)
        call: Callable[[], Awaitable[Any]] = lambda: self._redis.evalsha(sha, len(keys), *keys, *args)  # noqa: E731
        try:
            return await call()
        except redis.exceptions.NoScriptError:
            await self._redis.script_load(source)
            return await call()

    async def _load_scripts(self) -> None:
        for name in p.SCRIPT_NAMES:
            await self._redis.script_load(self._script(name)[0])

    async def _find_shards(
        self, name: str, ids: Sequence[Optional[str]], shards: int
    ) -> List[Optional[int]]:
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
            for (shard, i), n in zip(asked, await pipe.execute()):
                if n and found[i] is None:
                    found[i] = shard
        return found

    async def _read(self, name: str, job_id: str, shards: int) -> Optional[Job]:
        if shards == 1:
            fields = cast(Mapping[str, str], await self._redis.hgetall(self._keys(name).job(job_id)))
            return p.job_from_fields(job_id, name, fields)
        pipe = self._redis.pipeline(transaction=False)
        for s in p.probe_order(job_id, shards):
            pipe.hgetall(self._keys(name, s).job(job_id))
        return self._first_record(name, job_id, await pipe.execute())

    async def _wait_subscribed(self, name: str, job_id: str, progress: WaitProgress) -> Job:
        shards = await self._shard_count(name)
        channels = [self._keys(name, s).events for s in range(shards)]
        pubsub = self._redis.pubsub()
        try:
            await pubsub.subscribe(*channels)
            await self._confirm(pubsub, channels)
            progress.subscribed()
            resync = True
            while True:
                if resync:
                    resync = False
                    job = await self._read(name, job_id, shards)
                    if job is not None:
                        progress.last_state = job.state
                        if job.is_final:
                            return job
                    else:
                        grace_end = time.monotonic() + p.ABSENT_GRACE
                        while not resync:
                            grace = grace_end - time.monotonic()
                            if grace <= 0:
                                raise JobNotFound(job_id, name)
                            kind, event = classify(await pubsub.get_message(timeout=grace), name, job_id)
                            if kind == FINAL and event is not None:
                                return p.final_job(await self._read(name, job_id, shards), event)
                            resync = kind == RESYNC
                        continue
                left = progress.left()
                if left is not None and left <= 0:
                    raise WaitTimeout(job_id, progress.limit or 0.0, progress.last_state)
                step = 5.0 if left is None else min(left, 5.0)
                kind, event = classify(await pubsub.get_message(timeout=step), name, job_id)
                if kind == FINAL and event is not None:
                    return p.final_job(await self._read(name, job_id, shards), event)
                resync = kind == RESYNC
        finally:
            close = getattr(pubsub, "aclose", None) or pubsub.reset
            await close()

    @staticmethod
    async def _confirm(pubsub: PubSub, channels: Sequence[str]) -> None:
        unconfirmed = set(channels)
        end = time.monotonic() + p.SUBSCRIBE_TIMEOUT
        while unconfirmed:
            left = end - time.monotonic()
            if left <= 0:
                raise redis.exceptions.TimeoutError("timed out waiting for Redis to confirm the subscription")
            message = await pubsub.get_message(timeout=left)
            if message is not None and message.get("type") == "subscribe":
                unconfirmed.discard(message.get("channel"))

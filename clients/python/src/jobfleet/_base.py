"""What the synchronous and asyncio clients share: settings, caches, shard
placement and the translation of redis-py errors."""

from __future__ import annotations

import hashlib
import itertools
import secrets
import threading
import time
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Set, Tuple

import redis.exceptions

from . import _protocol as p
from .errors import (
    ClusterNotSupported,
    ConnectionError,
    Error,
    InvalidArgument,
    ProtocolError,
    ServerError,
)
from .model import CancelOutcome, Duration, Job, JobState

#: The redis-py errors that mean "the connection is gone".
CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


class ClientBase:
    """Settings and state shared by :class:`jobfleet.Client` and
    :class:`jobfleet.asyncio.Client`."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        queue: str,
        max_payload_bytes: int,
        cancelled_retention: Duration,
        connect_timeout: Duration,
        command_timeout: Duration,
        retries: int,
    ) -> None:
        self._url = p.check_url(url)
        self._display = p.redact_url(url)
        self._prefix = p.validate_prefix(prefix)
        self._default_queue = p.validate_queue(queue)
        if (
            not isinstance(max_payload_bytes, int)
            or isinstance(max_payload_bytes, bool)
            or max_payload_bytes < 0
        ):
            raise InvalidArgument(
                f"max_payload_bytes must be a non-negative integer (0: no limit), not {max_payload_bytes!r}"
            )
        self._max_payload_bytes = max_payload_bytes
        self._cancelled_retention_s = p.duration_ms(cancelled_retention, "cancelled_retention") // 1000
        self._connect_timeout = p.positive_seconds(connect_timeout, "connect_timeout")
        self._command_timeout = p.positive_seconds(command_timeout, "command_timeout")
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise InvalidArgument(f"retries must be a non-negative integer, not {retries!r}")
        self._retries = retries
        self._scripts: Dict[str, Tuple[str, str]] = {
            name: (source, hashlib.sha1(source.encode("utf-8"), usedforsecurity=False).hexdigest())
            for name in p.SCRIPT_NAMES
            for source in (p.script_source(name),)
        }
        self._lock = threading.Lock()
        self._shards: Dict[str, Tuple[int, float]] = {}
        self._turns: Dict[str, "itertools.count[int]"] = {}
        self._registered: Set[str] = set()
        self._server_checked = False

    # -- settings --------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The key prefix."""
        return self._prefix

    @property
    def default_queue(self) -> str:
        """The queue used when a call names none."""
        return self._default_queue

    @property
    def url(self) -> str:
        """The Redis URL, with any password masked."""
        return self._display

    def __repr__(self) -> str:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}"
            f"({self._display!r}, prefix={self._prefix!r}, queue={self._default_queue!r})"
        )

    def _connection_kwargs(self) -> Dict[str, Any]:
        """redis-py connection settings shared by both clients: text replies
        and timeouts (each client adds its own retry policy)."""
        return {
            "decode_responses": True,
            "socket_connect_timeout": self._connect_timeout,
            "socket_timeout": self._command_timeout,
        }

    def _queue(self, queue: Optional[str]) -> str:
        return self._default_queue if queue is None else p.validate_queue(queue)

    def _keys(self, queue: str, shard: int = 0) -> p.ShardKeys:
        return p.ShardKeys.of(self._prefix, queue, shard)

    def _script(self, name: str) -> Tuple[str, str]:
        """A script's source and SHA1."""
        return self._scripts[name]

    # -- caches ----------------------------------------------------------

    def _cached_shards(self, queue: str) -> Optional[int]:
        with self._lock:
            known = self._shards.get(queue)
        if known is not None and time.monotonic() - known[1] < p.SHARDS_TTL:
            return known[0]
        return None

    def _remember_shards(self, queue: str, raw: object) -> int:
        n = p.parse_shards(raw)
        with self._lock:
            self._shards[queue] = (n, time.monotonic())
        return n

    def _needs_register(self, queue: str) -> bool:
        with self._lock:
            return queue not in self._registered

    def _registered_queue(self, queue: str) -> None:
        with self._lock:
            self._registered.add(queue)

    def _check_cluster(self, info: Mapping[str, Any]) -> None:
        if str(info.get("cluster_enabled", "0")) == "1":
            raise ClusterNotSupported(
                f"Redis at {self._display} is a Redis Cluster node (cluster_enabled:1); "
                "this client supports a single Redis server only"
            )
        self._server_checked = True

    # -- placement -------------------------------------------------------

    def _place(
        self,
        queue: str,
        jobs: Sequence[p.Prepared],
        shards: int,
        found: Sequence[Optional[int]],
    ) -> Dict[int, List[p.Prepared]]:
        """Gives every job without a key a fresh id (on a sharded queue, one
        that hashes to the next shard in turn) and groups the jobs by shard:
        a key that already names a job goes where that job is (``found``,
        indexed like the keyed jobs), any other id to ``shard_of(id)``."""
        groups: Dict[int, List[p.Prepared]] = {}
        keyed = iter(found)
        for job in jobs:
            if job.keyed:
                assert job.id is not None
                home = next(keyed)
                shard = p.shard_of(job.id, shards) if home is None else home
            elif shards == 1:
                job.id = p.new_job_id()
                shard = 0
            else:
                shard = self._next_turn(queue, shards)
                job.id = p.placed_job_id(shards, shard)
                shard = p.shard_of(job.id, shards)
            groups.setdefault(shard, []).append(job)
        return groups

    def _next_turn(self, queue: str, shards: int) -> int:
        with self._lock:
            turns = self._turns.get(queue)
            if turns is None:
                turns = self._turns[queue] = itertools.count(secrets.randbits(32))
            return next(turns) % shards

    # -- replies ---------------------------------------------------------

    @staticmethod
    def _cancel_outcome(reply: object) -> CancelOutcome:
        if reply == "cancelled":
            return CancelOutcome.CANCELLED
        if reply == "cancelling":
            return CancelOutcome.CANCELLING
        if reply == "missing":
            return CancelOutcome.NOT_FOUND
        if isinstance(reply, str) and reply.startswith("final:"):
            return CancelOutcome.ALREADY_FINAL
        raise ProtocolError(f"cancel replied {reply!r}")

    @staticmethod
    def _first_record(queue: str, job_id: str, rows: Sequence[Mapping[str, str]]) -> Optional[Job]:
        for row in rows:
            job = p.job_from_fields(job_id, queue, row)
            if job is not None:
                return job
        return None

    # -- errors ----------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turns redis-py's exceptions into jobfleet's."""
        try:
            yield
        except Error:
            raise
        except redis.exceptions.AuthenticationError as e:
            raise ConnectionError(
                f"Redis at {self._display} refused the credentials: {e}", self._display
            ) from e
        except CONNECTION_ERRORS as e:
            raise ConnectionError(f"cannot reach Redis at {self._display}: {e}", self._display) from e
        except redis.exceptions.ResponseError as e:
            text = str(e)
            if "jobfleet: invalid job" in text:
                raise InvalidArgument(text) from e
            raise ServerError(f"Redis at {self._display} refused a command: {text}") from e
        except redis.exceptions.RedisError as e:
            raise Error(f"Redis at {self._display}: {e}") from e


class WaitProgress:
    """What a wait has seen so far, kept across reconnections."""

    def __init__(self, job_id: str, limit: Optional[float]) -> None:
        self.job_id = job_id
        self.limit = limit
        self.deadline = None if limit is None else time.monotonic() + limit
        self.subscribed_once = False
        self.outage_since: Optional[float] = None
        self.backoff = 0.05
        self.last_state: Optional[JobState] = None

    def subscribed(self) -> None:
        """A subscription is confirmed: an outage, if any, is over."""
        self.subscribed_once = True
        self.outage_since = None
        self.backoff = 0.05

    def left(self) -> Optional[float]:
        """Seconds until the deadline (``None``: no deadline)."""
        return None if self.deadline is None else self.deadline - time.monotonic()

    def retry_after(self, error: BaseException) -> float:
        """How long to pause before subscribing again after ``error``; raises
        it when the first subscription never worked, or the outage has
        outlasted the deadline (or a minute without one)."""
        if not self.subscribed_once:
            raise error
        now = time.monotonic()
        if self.outage_since is None:
            self.outage_since = now
        give_up = self.deadline if self.deadline is not None else self.outage_since + p.OUTAGE_LIMIT
        if now + self.backoff >= give_up:
            raise error
        pause = self.backoff
        self.backoff = min(self.backoff * 2, 1.0)
        return pause


#: What one pub/sub message means to a waiter.
IGNORE, FINAL, RESYNC = "ignore", "final", "resync"


def classify(
    message: Optional[Mapping[str, Any]], queue: str, job_id: str
) -> Tuple[str, Optional[Dict[str, Any]]]:
    """Sorts a pub/sub message for a waiter: the job's final event, a sign
    that events may have been missed (a resubscription after a reconnect, or
    an event that cannot be read), or anything else."""
    if message is None:
        return IGNORE, None
    kind = message.get("type")
    if kind == "subscribe":
        return RESYNC, None
    if kind != "message":
        return IGNORE, None
    event = p.parse_event(message.get("data"))
    if event is None:
        return RESYNC, None
    if p.is_final_event(event, queue, job_id):
        return FINAL, event
    return IGNORE, None

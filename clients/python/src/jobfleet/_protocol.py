"""The wire protocol, without I/O: key names, validation, shard placement,
job ids, script arguments, and reading job records and events.

Everything here follows the jobfleet protocol document (``docs/PROTOCOL.md``
in the jobfleet repository); the synchronous and asyncio clients share it.
"""

from __future__ import annotations

import functools
import json
import math
import re
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple
from urllib.parse import urlsplit, urlunsplit

from .errors import InvalidArgument
from .model import Duration, Job, JobSpec, JobState

DEFAULT_PREFIX = "jobfleet"
"""The key prefix of a fleet that sets none."""
DEFAULT_QUEUE = "default"
"""The queue used when none is named."""
DEFAULT_URL = "redis://127.0.0.1:6379"
"""The Redis a client talks to when given no URL."""
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""The largest payload accepted, in bytes of JSON text (the workers' default)."""
DEFAULT_CANCELLED_RETENTION = 3600.0
"""How long a cancelled job's record is kept, in seconds (the workers' default)."""

MAX_DELAY_MS = 3_155_760_000_000
"""The longest delay or attempt timeout: 100 years, in ms."""
MAX_SHARDS = 1024
"""The most shards a queue may have."""
MAX_ATTEMPTS = 2**32 - 1
"""The most attempts a job may be given."""
SUBMIT_CHUNK = 1000
"""Jobs per submit script call."""
SHARDS_TTL = 2.0
"""How long a read shard count is trusted, in seconds."""
ABSENT_GRACE = 0.5
"""How long a waiter gives the event of a job found without a record
(finished and deleted at once) before calling it missing, in seconds."""
SUBSCRIBE_TIMEOUT = 10.0
"""How long a subscription may take to be confirmed, in seconds."""
OUTAGE_LIMIT = 60.0
"""How long a wait without a deadline rides out a lost connection, in seconds."""

FINAL_STATES = frozenset({"completed", "dead", "cancelled"})

SCRIPT_NAMES: Tuple[str, ...] = ("submit.lua", "cancel.lua")
"""The scripts this client runs, shipped in the package as sent to Redis."""

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_WHITESPACE = frozenset(b" \t\n\v\f\r")

FNV_BASIS = 0x811C9DC5
FNV_PRIME = 0x01000193


# -- scripts -----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def script_source(name: str) -> str:
    """The text of a shipped script (``common.lua`` followed by the
    transition), read from the installed package."""
    data = resources.files(__package__).joinpath("scripts").joinpath(name).read_bytes()
    return data.decode("utf-8")


# -- validation --------------------------------------------------------------


def validate_queue(name: object) -> str:
    """Checks a queue name: 1 to 64 characters from ``A-Z a-z 0-9 _ - . :``
    (it sits inside the ``{}`` hash tag of every key of the queue)."""
    if not isinstance(name, str) or not _QUEUE_NAME.fullmatch(name):
        raise InvalidArgument(
            f"invalid queue name {name!r}: use 1 to 64 characters from letters, "
            "digits, '_', '-', '.' and ':'"
        )
    return name


def validate_job_id(job_id: object) -> str:
    """Checks a job id (idempotency key): 1 to 200 bytes of UTF-8 without
    ASCII whitespace."""
    if isinstance(job_id, str):
        try:
            data = job_id.encode("utf-8")
        except UnicodeEncodeError:
            data = b""
        if 1 <= len(data) <= 200 and not _WHITESPACE.intersection(data):
            return job_id
    raise InvalidArgument(
        f"invalid job id {job_id!r}: use 1 to 200 bytes of UTF-8 without whitespace"
    )


def validate_task(task: object) -> str:
    """Checks a task name: 1 to 200 bytes of UTF-8."""
    if isinstance(task, str):
        try:
            size = len(task.encode("utf-8"))
        except UnicodeEncodeError:
            size = 0
        if 1 <= size <= 200:
            return task
    raise InvalidArgument(f"invalid task name {task!r}: use 1 to 200 characters")


def validate_prefix(prefix: object) -> str:
    """Checks a key prefix: not empty, no braces (they would change every
    key's hash tag), no whitespace."""
    if (
        not isinstance(prefix, str)
        or not prefix
        or any(c in "{}" or c.isspace() for c in prefix)
    ):
        raise InvalidArgument(
            f"invalid key prefix {prefix!r}: use a non-empty string without braces or whitespace"
        )
    return prefix


def duration_ms(value: Optional[Duration], what: str) -> int:
    """Converts a duration (seconds, or a ``timedelta``) to whole
    milliseconds, rounded to the nearest; ``None`` is 0. Refuses negative,
    non-finite and over-100-year values."""
    if value is None:
        return 0
    if isinstance(value, timedelta):
        ms = round(value / timedelta(milliseconds=1))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise InvalidArgument(f"the {what} must be a finite number of seconds, not {value!r}")
        ms = round(value * 1000)
    else:
        raise InvalidArgument(
            f"the {what} must be seconds (int or float) or a timedelta, not {value!r}"
        )
    if ms < 0:
        raise InvalidArgument(f"the {what} must not be negative, not {value!r}")
    if ms > MAX_DELAY_MS:
        raise InvalidArgument(f"the {what} {value!r} is too long: at most 100 years")
    return int(ms)


def seconds(value: Optional[Duration], what: str) -> Optional[float]:
    """A wait timeout in seconds (``None``: no limit)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        out = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    else:
        raise InvalidArgument(f"the {what} must be seconds or a timedelta, not {value!r}")
    if not out >= 0 or not math.isfinite(out):
        raise InvalidArgument(f"the {what} must be a non-negative, finite duration, not {value!r}")
    return out


def positive_seconds(value: Optional[Duration], what: str) -> Optional[float]:
    """A socket timeout in seconds: ``None`` (no limit) or more than 0."""
    out = seconds(value, what)
    if out is not None and out <= 0:
        raise InvalidArgument(f"the {what} must be more than 0 seconds, or None for no limit, not {value!r}")
    return out


def encode_payload(payload: Any, limit: int) -> str:
    """Serialises a payload to JSON text, refusing what JSON cannot carry
    (NaN and infinities included) and what is over ``limit`` bytes."""
    try:
        text = json.dumps(payload, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as e:
        raise InvalidArgument(f"payload is not JSON-serialisable: {e}") from e
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise InvalidArgument(f"payload is not valid UTF-8 text: {e}") from e
    if limit and size > limit:
        raise InvalidArgument(f"payload is {size} bytes, over the {limit} byte limit")
    return text


def validate_traceparent(value: object) -> Optional[str]:
    """Checks a W3C trace context: ``00-<32 hex trace id>-<16 hex parent
    id>-<2 hex flags>``, lower-case, ids not all zero."""
    if value is None:
        return None
    match = _TRACEPARENT.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(1) == "ff" or not int(match.group(2), 16) or not int(match.group(3), 16):
        raise InvalidArgument(
            f"invalid traceparent {value!r}: use the W3C form "
            "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>"
        )
    return match.group(0)


def validate_max_attempts(value: object) -> int:
    """Checks an attempt count: an integer from 1."""
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ATTEMPTS:
        return value
    raise InvalidArgument(f"max_attempts must be an integer from 1 to {MAX_ATTEMPTS}, not {value!r}")


@dataclass
class Prepared:
    """A validated job, ready for the submit script."""

    id: Optional[str]
    """The caller's key, or ``None`` until the client places a fresh id."""
    task: str
    payload: str
    max_attempts: int
    timeout_ms: int
    delay_ms: int
    keyed: bool
    key_ttl_s: int = 0
    traceparent: Optional[str] = None

    @property
    def has_extras(self) -> bool:
        """Whether the submit script needs the long (8 values) layout for it."""
        return self.key_ttl_s > 0 or self.traceparent is not None


def prepare(spec: JobSpec, max_payload_bytes: int) -> Prepared:
    """Validates one job spec."""
    key = None if spec.key is None else validate_job_id(spec.key)
    return Prepared(
        id=key,
        task=validate_task(spec.task),
        payload=encode_payload(spec.payload, max_payload_bytes),
        max_attempts=validate_max_attempts(spec.max_attempts),
        timeout_ms=duration_ms(spec.timeout, "timeout"),
        delay_ms=duration_ms(spec.delay, "delay"),
        keyed=key is not None,
        key_ttl_s=-(-duration_ms(spec.key_ttl, "key TTL") // 1000),
        traceparent=validate_traceparent(spec.traceparent),
    )


def prepare_all(specs: Sequence[object], max_payload_bytes: int) -> List[Prepared]:
    """Validates every spec of a batch before anything is sent; a refusal
    names the job's position."""
    out = []
    for i, spec in enumerate(specs):
        if isinstance(spec, tuple) and len(spec) == 2:
            spec = JobSpec(spec[0], spec[1])
        if not isinstance(spec, JobSpec):
            raise InvalidArgument(
                f"job #{i + 1}: expected a JobSpec or a (task, payload) tuple, not {spec!r}"
            )
        try:
            out.append(prepare(spec, max_payload_bytes))
        except InvalidArgument as e:
            if len(specs) == 1:
                raise
            raise InvalidArgument(f"job #{i + 1}: {e}") from e
    return out


# -- URLs --------------------------------------------------------------------


def check_url(url: object) -> str:
    """Checks that a URL names one Redis server this client can use."""
    if not isinstance(url, str):
        raise InvalidArgument(f"the Redis URL must be a string, not {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise InvalidArgument(
            f"unsupported Redis URL {redact_url(url)!r}: use redis://, rediss:// or unix:// "
            "(Sentinel and Cluster are not supported by this client)"
        )
    if "," in parts.netloc:
        raise InvalidArgument(
            f"the Redis URL {redact_url(url)!r} names several hosts: "
            "Redis Cluster is not supported by this client"
        )
    return url


def redact_url(url: str) -> str:
    """The URL with its password (and any password in the query) masked."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:***@{host}" if ":" in userinfo else f"{userinfo}@{host}"
        query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "<unparseable URL>"


# -- keys --------------------------------------------------------------------


@dataclass(frozen=True)
class ShardKeys:
    """The keys of one shard of a queue (shard 0 has the ``{Q}`` hash tag,
    shard ``i`` the ``{Q#i}`` tag)."""

    base: str

    @staticmethod
    def of(prefix: str, queue: str, shard: int = 0) -> "ShardKeys":
        tag = queue if shard == 0 else f"{queue}#{shard}"
        return ShardKeys(f"{prefix}:{{{tag}}}")

    @property
    def pending(self) -> str:
        return f"{self.base}:pending"

    @property
    def scheduled(self) -> str:
        return f"{self.base}:scheduled"

    @property
    def dead(self) -> str:
        return f"{self.base}:dead"

    @property
    def stats(self) -> str:
        return f"{self.base}:stats"

    @property
    def notify(self) -> str:
        return f"{self.base}:notify"

    @property
    def events(self) -> str:
        return f"{self.base}:events"

    @property
    def control(self) -> str:
        return f"{self.base}:control"

    @property
    def meta(self) -> str:
        """The queue's settings HASH (meaningful on shard 0 only)."""
        return f"{self.base}:meta"

    def job(self, job_id: str) -> str:
        return f"{self.base}:job:{job_id}"


def queues_key(prefix: str) -> str:
    """The SET of known queue names."""
    return f"{prefix}:queues"


# -- shards and ids ----------------------------------------------------------


def fnv1a32(data: bytes, state: int = FNV_BASIS) -> int:
    """FNV-1a, 32 bit, of ``data`` (continuing from ``state``)."""
    h = state
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & 0xFFFFFFFF
    return h


def shard_of(job_id: str, shards: int) -> int:
    """The shard a job id lives on among ``shards``: FNV-1a (32 bit) of its
    UTF-8 bytes, modulo the count."""
    return fnv1a32(job_id.encode("utf-8")) % max(1, shards)


def probe_order(job_id: str, shards: int) -> List[int]:
    """The shards to look for a job in: its id's own shard first, then the
    others (a key used before the count was raised may live elsewhere)."""
    home = shard_of(job_id, shards)
    return [home] + [s for s in range(shards) if s != home]


def probe_plan(
    ids: Sequence[str], shards: int, round_: int, missing: Sequence[bool]
) -> List[Tuple[int, List[int]]]:
    """Which shard to ask about which ids (indices into ``ids``, only those
    still ``missing``): in round 0 each id's own shard, in round 1 every
    other shard."""
    plan: Dict[int, List[int]] = {}
    for i, job_id in enumerate(ids):
        if not missing[i]:
            continue
        home = shard_of(job_id, shards)
        for shard in range(shards):
            if (round_ == 0) == (shard == home):
                plan.setdefault(shard, []).append(i)
    return sorted(plan.items())


def parse_shards(raw: object) -> int:
    """The shard count from ``P:{Q}:meta`` field ``shards`` (absent: 1)."""
    try:
        n = int(str(raw)) if raw is not None else 1
    except ValueError:
        n = 1
    return min(max(n, 1), MAX_SHARDS)


_uuid_lock = threading.Lock()
_uuid_last_ms = 0
_uuid_last_seq = 0


def new_job_id() -> str:
    """A fresh UUID v7 (RFC 9562): 48 bits of Unix ms, then a 12-bit counter
    that keeps ids made in the same millisecond in order, then 62 random
    bits."""
    global _uuid_last_ms, _uuid_last_seq
    with _uuid_lock:
        ms = time.time_ns() // 1_000_000
        if ms > _uuid_last_ms:
            seq = secrets.randbits(11)
        else:
            ms = _uuid_last_ms
            seq = _uuid_last_seq + 1
            if seq > 0xFFF:
                ms += 1
                seq = secrets.randbits(11)
        _uuid_last_ms, _uuid_last_seq = ms, seq
    value = (
        (ms & 0xFFFFFFFFFFFF) << 80
        | 0x7 << 76
        | seq << 64
        | 0b10 << 62
        | secrets.randbits(62)
    )
    return str(uuid.UUID(int=value))


_HEX = "0123456789abcdef"


def placed_job_id(shards: int, want: int) -> str:
    """A fresh UUID v7 whose last two hex digits (random bits) are chosen so
    that it lands on shard ``want``; with more shards than two digits reach,
    the hash alone spreads the ids."""
    job_id = new_job_id()
    if shards <= 1:
        return job_id
    for _ in range(8):
        head = job_id[:-2]
        state = fnv1a32(head.encode("ascii"))
        for pair in range(256):
            tail = _HEX[pair >> 4] + _HEX[pair & 15]
            if fnv1a32(tail.encode("ascii"), state) % shards == want:
                return head + tail
        job_id = new_job_id()
    return job_id


# -- scripts' arguments ------------------------------------------------------


def submit_calls(
    keys: ShardKeys, jobs: Sequence[Prepared]
) -> Iterator[Tuple[List[str], List[Any]]]:
    """The KEYS and ARGV of each ``submit.lua`` call for jobs of one shard,
    1,000 jobs per call: six values per job, or eight (adding key_ttl_s and
    traceparent) for every job of a call when one of them sets either. Every
    job must have its id."""
    for start in range(0, len(jobs), SUBMIT_CHUNK):
        chunk = jobs[start : start + SUBMIT_CHUNK]
        long = any(job.has_extras for job in chunk)
        call_keys = [keys.pending, keys.scheduled, keys.stats, keys.dead]
        args: List[Any] = [keys.notify]
        for job in chunk:
            assert job.id is not None
            call_keys.append(keys.job(job.id))
            args += [job.id, job.task, job.payload, job.max_attempts, job.timeout_ms, job.delay_ms]
            if long:
                args += [job.key_ttl_s, job.traceparent or ""]
        yield call_keys, args


def cancel_call(
    keys: ShardKeys, queue: str, job_id: str, retention_s: int
) -> Tuple[List[str], List[Any]]:
    """The KEYS and ARGV of a ``cancel.lua`` call."""
    return (
        [keys.pending, keys.scheduled, keys.stats, keys.job(job_id)],
        [job_id, keys.events, keys.control, queue, retention_s],
    )


def check_submit_reply(reply: object, expected: int) -> None:
    """Checks that ``submit.lua`` answered one integer per job."""
    from .errors import ProtocolError

    if not isinstance(reply, list) or len(reply) != expected:
        raise ProtocolError(f"submit replied {reply!r}, expected {expected} integers")


# -- reading records and events ----------------------------------------------


def lenient_json(text: Optional[str]) -> Any:
    """Parses JSON text; text that does not parse is returned as is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _int(value: object, default: Optional[int] = None) -> Optional[int]:
    if value is None or isinstance(value, bool):
        return default
    try:
        if isinstance(value, float):
            return int(value) if math.isfinite(value) else default
        return int(str(value))
    except ValueError:
        try:
            f = float(str(value))
        except ValueError:
            return default
        return int(f) if math.isfinite(f) else default


def parse_state(raw: object) -> JobState:
    """A stored state name; an unknown or absent one reads as ``pending``."""
    try:
        return JobState(raw)
    except ValueError:
        return JobState.PENDING


def job_from_fields(job_id: str, queue: str, fields: Mapping[str, str]) -> Optional[Job]:
    """Builds a :class:`Job` from its HASH fields; ``None`` for an empty
    HASH (no record)."""
    if not fields:
        return None
    worker = fields.get("worker") or None
    return Job(
        id=job_id,
        queue=queue,
        state=parse_state(fields.get("state")),
        task=fields.get("task", ""),
        payload=lenient_json(fields.get("payload")),
        result=lenient_json(fields.get("result")),
        error=fields.get("error"),
        attempts=_int(fields.get("attempts"), 0) or 0,
        max_attempts=_int(fields.get("max_attempts"), 1) or 1,
        timeout_ms=_int(fields.get("timeout_ms"), 0) or 0,
        created_ms=_int(fields.get("created_ms")),
        run_at_ms=_int(fields.get("run_at_ms")),
        started_ms=_int(fields.get("started_ms")),
        finished_ms=_int(fields.get("finished_ms")),
        worker=worker,
        recoveries=_int(fields.get("recoveries"), 0) or 0,
        key_ttl_s=_int(fields.get("key_ttl_s")),
        traceparent=fields.get("traceparent"),
    )


def parse_event(data: object) -> Optional[Dict[str, Any]]:
    """Reads one event (JSON object with at least ``id``, ``queue`` and
    ``state``); ``None`` when it cannot be read, which the caller treats as
    "something was missed"."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(data, str):
        return None
    try:
        event = json.loads(data)
    except ValueError:
        return None
    if (
        not isinstance(event, dict)
        or not isinstance(event.get("id"), str)
        or not isinstance(event.get("queue"), str)
        or not isinstance(event.get("state"), str)
    ):
        return None
    return event


def is_final_event(event: Mapping[str, Any], queue: str, job_id: str) -> bool:
    """Whether an event says this job reached a final state."""
    return event["id"] == job_id and event["queue"] == queue and event["state"] in FINAL_STATES


def job_from_event(event: Mapping[str, Any]) -> Job:
    """A :class:`Job` from its final event, for when its record is gone
    (retention 0 deletes it at the ack)."""
    error, task = event.get("error"), event.get("task")
    return Job(
        id=event["id"],
        queue=event["queue"],
        state=parse_state(event["state"]),
        task=task if isinstance(task, str) else "",
        result=event.get("result"),
        error=error if isinstance(error, str) else None,
        attempts=_int(event.get("attempt"), 0) or 0,
        finished_ms=_int(event.get("ms")),
        worker=event.get("worker") or None,
    )


def final_job(record: Optional[Job], event: Mapping[str, Any]) -> Job:
    """The job to report for a final event: its record when that is final
    too (it has every field), else what the event says."""
    if record is not None and record.is_final:
        return record
    return job_from_event(event)

"""The job model: what a producer submits (:class:`JobSpec`), what ``status``
and ``wait`` read (:class:`Job`), the states a job moves through
(:class:`JobState`) and what ``cancel`` did (:class:`CancelOutcome`)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional, Union

from .errors import JobFailed

__all__ = ["Duration", "JobState", "Job", "JobSpec", "CancelOutcome"]

#: A duration: seconds as an ``int`` or ``float``, or a :class:`datetime.timedelta`.
Duration = Union[int, float, timedelta]


class JobState(str, enum.Enum):
    """Where a job is in its lifecycle. ``completed``, ``dead`` and
    ``cancelled`` are final: every accepted job ends in exactly one of them.

    Members are strings, so ``job.state == "completed"`` works too."""

    PENDING = "pending"
    """Ready to be claimed by a worker."""
    SCHEDULED = "scheduled"
    """Waiting for its run-at time (a delay, or a retry's backoff)."""
    ACTIVE = "active"
    """Claimed: a worker runs it now."""
    COMPLETED = "completed"
    """Ran and succeeded."""
    DEAD = "dead"
    """Out of attempts, or failed with a permanent error."""
    CANCELLED = "cancelled"
    """Cancelled before it finished."""

    @property
    def is_final(self) -> bool:
        """True for ``completed``, ``dead`` and ``cancelled``."""
        return self in (JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED)

    def __str__(self) -> str:
        return self.value


class CancelOutcome(str, enum.Enum):
    """What :meth:`jobfleet.Client.cancel` did."""

    CANCELLED = "cancelled"
    """It was pending or scheduled: it is cancelled and will never run."""
    CANCELLING = "cancelling"
    """It is running: its worker was asked to stop it. It ends ``cancelled``
    (or ``completed``, if it finished first)."""
    ALREADY_FINAL = "already_final"
    """It had already ended (completed, dead or cancelled); nothing changed."""
    NOT_FOUND = "not_found"
    """No such job in the queue."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Job:
    """A job as Redis holds it (see the job HASH in the protocol).

    Times are Unix milliseconds on Redis' clock. ``payload`` and ``result`` are
    parsed JSON (the raw text when it does not parse)."""

    id: str
    """The job id."""
    queue: str
    """Its queue."""
    state: JobState
    """Its current (or final) state."""
    task: str = ""
    """The task name."""
    payload: Any = None
    """The task's input."""
    result: Any = None
    """The task's result, once completed."""
    error: Optional[str] = None
    """The last error: a failed attempt's message, why it was buried, or
    ``cancelled while running``. Kept even when a later attempt succeeded."""
    attempts: int = 0
    """Attempts started."""
    max_attempts: int = 1
    """Attempts allowed."""
    timeout_ms: int = 0
    """The longest one attempt may run (0: no limit)."""
    created_ms: Optional[int] = None
    """When it was submitted."""
    run_at_ms: Optional[int] = None
    """When it is (or was last) due, for a delayed job or a retry."""
    started_ms: Optional[int] = None
    """When its last attempt was claimed."""
    finished_ms: Optional[int] = None
    """When it reached a final state."""
    worker: Optional[str] = None
    """The worker of its last attempt."""
    recoveries: int = 0
    """How many times its worker died while running it."""
    key_ttl_s: Optional[int] = None
    """The least time, in seconds, its record is kept once it completed or
    was cancelled (see :attr:`JobSpec.key_ttl`)."""
    traceparent: Optional[str] = None
    """The W3C trace context given at submit."""

    @property
    def is_final(self) -> bool:
        """True once the job is ``completed``, ``dead`` or ``cancelled``."""
        return self.state.is_final

    def raise_for_state(self) -> "Job":
        """Raises :class:`jobfleet.JobFailed` if the job ended ``dead`` or
        ``cancelled``; returns the job otherwise (so calls chain)."""
        if self.state in (JobState.DEAD, JobState.CANCELLED):
            raise JobFailed(self)
        return self


@dataclass(frozen=True)
class JobSpec:
    """One job to submit with :meth:`jobfleet.Client.submit_many`.

    ``payload`` is any JSON-serialisable value. ``key`` is an idempotency key
    used as the job id: submitting it again returns the same id and creates
    nothing while the job's record lives. Without one, the client makes a
    UUID v7. ``delay``, ``timeout`` and ``key_ttl`` are seconds or a
    ``timedelta``."""

    task: str
    """The task name (what a worker registers)."""
    payload: Any = None
    """The task's input; ``None`` is sent as JSON ``null``."""
    key: Optional[str] = None
    """An idempotency key, used as the job id."""
    delay: Optional[Duration] = None
    """Run no earlier than this long after submission."""
    max_attempts: int = 3
    """How many times it may run before it is buried."""
    timeout: Optional[Duration] = 30.0
    """The longest one attempt may run; ``0`` or ``None`` means no limit."""
    key_ttl: Optional[Duration] = None
    """Keep the record at least this long once the job completed or was
    cancelled (rounded up to whole seconds), so its key holds that long even
    when the workers' retention (``--keep-completed``) is shorter."""
    traceparent: Optional[str] = None
    """A W3C trace context (``00-<32 hex>-<16 hex>-<2 hex>``): the worker's
    span for each attempt becomes its child."""

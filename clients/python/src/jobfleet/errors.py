"""The errors this client raises. Every one derives from :class:`Error`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .model import Job

__all__ = [
    "Error",
    "InvalidArgument",
    "ConnectionError",
    "ClusterNotSupported",
    "ServerError",
    "ProtocolError",
    "JobNotFound",
    "JobFailed",
    "WaitTimeout",
]


class Error(Exception):
    """Base class of every error raised by jobfleet."""


class InvalidArgument(Error, ValueError):
    """An argument the protocol cannot carry: a bad queue name, job id, task
    name, duration, or a payload that is not JSON-serialisable. Raised before
    anything is sent to Redis, so nothing was written."""


class ConnectionError(Error):  # noqa: A001 - deliberately mirrors the redis-py name
    """Redis could not be reached (refused, timed out, TLS or credentials
    trouble). The message names the server without its password; the
    original redis-py exception is chained as ``__cause__``."""

    def __init__(self, message: str, url: str) -> None:
        super().__init__(message)
        #: The Redis URL, with any password masked.
        self.url = url


class ClusterNotSupported(Error):
    """The URL names a Redis Cluster node; this client talks to a single
    Redis server only."""


class ServerError(Error):
    """Redis refused a command (an error reply). The redis-py exception is
    chained as ``__cause__``."""


class ProtocolError(Error):
    """Redis answered something the jobfleet protocol does not allow."""


class JobNotFound(Error, LookupError):
    """No job with this id in the queue: it was never submitted there, or its
    record expired."""

    def __init__(self, job_id: str, queue: str) -> None:
        super().__init__(
            f"no job with id {job_id} in queue {queue} "
            "(it may never have existed, or its record expired)"
        )
        #: The job id.
        self.id = job_id
        #: The queue that was searched.
        self.queue = queue


class JobFailed(Error):
    """A job waited on ended ``dead`` or ``cancelled``. :attr:`job` holds its
    final record (state, error, attempts, ...)."""

    def __init__(self, job: "Job") -> None:
        message = f"job {job.id} ended {job.state.value}"
        if job.error:
            message += f": {job.error}"
        super().__init__(message)
        #: The job as it ended.
        self.job = job


class WaitTimeout(Error):
    """The job was not final when the wait gave up. It keeps running; wait
    again to see it finish."""

    def __init__(self, job_id: str, timeout: float, state: Optional[str] = None) -> None:
        last = f" (last seen {state})" if state else ""
        super().__init__(
            f"job {job_id} is not finished after {timeout:g}s{last}; it keeps running"
        )
        #: The job id.
        self.id = job_id
        #: How long the wait lasted, in seconds.
        self.timeout = timeout
        #: The job's state when last read, if it was read.
        self.state = state

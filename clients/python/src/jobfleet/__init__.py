"""jobfleet: the Python producer client of the jobfleet job queue.

Submit jobs to a fleet of ``jobfleet-worker`` processes through Redis, wait
for their results, read their status and cancel them::

    import jobfleet

    with jobfleet.Client("redis://127.0.0.1:6379") as client:
        job_id = client.submit("echo", {"hello": "world"})
        job = client.wait(job_id, timeout=30)
        print(job.state, job.result)

:mod:`jobfleet.asyncio` has the same client for asyncio.
"""

from ._protocol import (
    DEFAULT_PREFIX,
    DEFAULT_QUEUE,
    fnv1a32,
    new_job_id,
    shard_of,
)
from .client import Client
from .errors import (
    ClusterNotSupported,
    ConnectionError,
    Error,
    InvalidArgument,
    JobFailed,
    JobNotFound,
    ProtocolError,
    ServerError,
    WaitTimeout,
)
from .model import CancelOutcome, Duration, Job, JobSpec, JobState

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Job",
    "JobSpec",
    "JobState",
    "CancelOutcome",
    "Duration",
    "Error",
    "InvalidArgument",
    "ConnectionError",
    "ClusterNotSupported",
    "ServerError",
    "ProtocolError",
    "JobNotFound",
    "JobFailed",
    "WaitTimeout",
    "DEFAULT_PREFIX",
    "DEFAULT_QUEUE",
    "new_job_id",
    "shard_of",
    "fnv1a32",
]

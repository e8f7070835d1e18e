/**
 * The errors this client throws. Every one derives from {@link JobfleetError},
 * so `err instanceof JobfleetError` tells jobfleet's errors from others.
 *
 * @module
 */

import type { Job, JobState } from "./job.js";

/** Base class of every error thrown by jobfleet. */
export class JobfleetError extends Error {
  /**
   * @param message - What went wrong, for people.
   * @param options - `cause`: the underlying error, if any.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * An argument the protocol cannot carry: a bad queue name, job id, task name,
 * duration or count, or a payload that is not JSON-serialisable or is over
 * the size limit. Thrown before anything is sent to Redis, so nothing was
 * written.
 */
export class InvalidArgumentError extends JobfleetError {}

/**
 * Redis could not be reached: the connection was refused or timed out, TLS
 * failed, the credentials were refused, or the connection broke and did not
 * come back. The message names the server without its password; the
 * underlying error is the `cause`.
 */
export class ConnectionError extends JobfleetError {
  /** The Redis URL, with any password masked. */
  readonly url: string;

  /**
   * @param message - What went wrong, naming the server.
   * @param url - The Redis URL, password masked.
   * @param options - `cause`: the underlying error.
   */
  constructor(message: string, url: string, options?: ErrorOptions) {
    super(message, options);
    this.url = url;
  }
}

/**
 * The URL names a Redis Cluster node (`INFO cluster` says
 * `cluster_enabled:1`). This client talks to a single Redis server only.
 */
export class ClusterNotSupportedError extends JobfleetError {
  /** The Redis URL, with any password masked. */
  readonly url: string;

  /** @param url - The Redis URL, password masked. */
  constructor(url: string) {
    super(
      `Redis at ${url} is a Redis Cluster node (cluster_enabled:1); ` +
        "this client supports a single Redis server only",
    );
    this.url = url;
  }
}

/** Redis refused a command (an error reply); the reply error is the `cause`. */
export class ServerError extends JobfleetError {}

/** Redis answered something the jobfleet protocol does not allow. */
export class ProtocolError extends JobfleetError {}

/**
 * No job with this id in the queue: it was never submitted there, or its
 * record expired (thrown by `wait`; `status` returns `null` instead).
 */
export class JobNotFoundError extends JobfleetError {
  /** The job id. */
  readonly id: string;
  /** The queue that was searched. */
  readonly queue: string;

  /**
   * @param id - The job id.
   * @param queue - The queue that was searched.
   */
  constructor(id: string, queue: string) {
    super(`no job with id ${id} in queue ${queue} (it may never have existed, or its record expired)`);
    this.id = id;
    this.queue = queue;
  }
}

/**
 * A job waited on ended `dead` (out of attempts, or a permanent error) or
 * `cancelled`. {@link JobFailedError.job} is its final record, with the
 * reason in `job.error`.
 */
export class JobFailedError extends JobfleetError {
  /** The job as it ended. */
  readonly job: Job;

  /** @param job - The job's final record. */
  constructor(job: Job) {
    super(`job ${job.id} ended ${job.state}${job.error === undefined ? "" : `: ${job.error}`}`);
    this.job = job;
  }
}

/**
 * The job was not final when `wait` gave up. The job itself is untouched and
 * keeps running; wait again to see it finish.
 */
export class WaitTimeoutError extends JobfleetError {
  /** The job id. */
  readonly id: string;
  /** How long the wait lasted, in milliseconds. */
  readonly timeout: number;
  /** The job's state when last read, if it was read. */
  readonly state: JobState | undefined;

  /**
   * @param id - The job id.
   * @param timeout - How long the wait lasted, in ms.
   * @param state - The state last read, if any.
   */
  constructor(id: string, timeout: number, state: JobState | undefined) {
    super(
      `job ${id} is not finished after ${timeout} ms${state === undefined ? "" : ` (last seen ${state})`}; ` +
        "it keeps running",
    );
    this.id = id;
    this.timeout = timeout;
    this.state = state;
  }
}

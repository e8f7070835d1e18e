/**
 * The Node.js producer client of jobfleet, a Redis-backed distributed job
 * queue: submit jobs (one or a batch, delayed, with an idempotency key), wait
 * for their results, read their status and cancel them. The jobs run on
 * `jobfleet-worker` processes anywhere that reach the same Redis.
 *
 * @packageDocumentation
 */

export { Client, type ClientOptions } from "./client.js";
export {
  ClusterNotSupportedError,
  ConnectionError,
  InvalidArgumentError,
  JobFailedError,
  JobfleetError,
  JobNotFoundError,
  ProtocolError,
  ServerError,
  WaitTimeoutError,
} from "./errors.js";
export {
  FINAL_STATES,
  JOB_STATES,
  isFinalState,
  type CancelOutcome,
  type Job,
  type JobOptions,
  type JobSpec,
  type JobState,
  type QueueOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./job.js";
export { DEFAULT_PREFIX, DEFAULT_QUEUE, DEFAULT_URL, fnv1a32, newJobId, shardOf } from "./protocol.js";
export { SCRIPT_NAMES, SCRIPTS_DIR, scriptPath, scriptSource, type ScriptName } from "./scripts.js";

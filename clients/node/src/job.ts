/**
 * The job model: what a producer submits, what `status` and `wait` return,
 * and the states a job moves through.
 *
 * @module
 */

/**
 * Where a job is in its lifecycle. `completed`, `dead` and `cancelled` are
 * final: every accepted job ends in exactly one of them.
 *
 * - `pending`: ready to be claimed by a worker.
 * - `scheduled`: waiting for its run-at time (a delay, or a retry's backoff).
 * - `active`: a worker runs it.
 * - `completed`: it ran and succeeded; `result` holds the task's output.
 * - `dead`: out of attempts, or failed with a permanent error; see `error`.
 * - `cancelled`: cancelled before it finished.
 */
export type JobState = "pending" | "scheduled" | "active" | "completed" | "dead" | "cancelled";

/** Every state, in lifecycle order. */
export const JOB_STATES: readonly JobState[] = ["pending", "scheduled", "active", "completed", "dead", "cancelled"];

/** The final states: a job in one of them never changes again. */
export const FINAL_STATES: readonly JobState[] = ["completed", "dead", "cancelled"];

/** Whether `state` is final (`completed`, `dead` or `cancelled`). */
export function isFinalState(state: JobState): boolean {
  return FINAL_STATES.includes(state);
}

/**
 * A job as its Redis record holds it. Times are Unix milliseconds on Redis'
 * clock; fields the record does not carry are `undefined`.
 */
export interface Job {
  /** The job id (the idempotency key, when one was given). */
  readonly id: string;
  /** The queue it belongs to. */
  readonly queue: string;
  /** Where it is in its lifecycle. */
  readonly state: JobState;
  /** The task that runs it. */
  readonly task: string;
  /** The task's input, parsed from its JSON text. */
  readonly payload: unknown;
  /** What the task returned (completed jobs), parsed from its JSON text. */
  readonly result?: unknown;
  /** The last error: a failed attempt's message, or why it was buried or cancelled. */
  readonly error?: string;
  /** Attempts started so far. */
  readonly attempts: number;
  /** Attempts allowed. */
  readonly maxAttempts: number;
  /** The longest one attempt may run, in ms (0: no limit). */
  readonly timeoutMs: number;
  /** When it was submitted. */
  readonly createdMs?: number;
  /** When it is (or was last) due to run: set by a delay and by a retry. */
  readonly runAtMs?: number;
  /** When its last attempt started. */
  readonly startedMs?: number;
  /** When it reached a final state. */
  readonly finishedMs?: number;
  /** The worker of its last attempt. */
  readonly worker?: string;
  /** How many times its worker died while running it. */
  readonly recoveries: number;
  /** The least time its finished record is kept, in seconds (see `keyTtl`). */
  readonly keyTtlS?: number;
  /** The W3C trace context given at submit. */
  readonly traceparent?: string;
}

/** Options naming the queue a call acts on. */
export interface QueueOptions {
  /** The queue (default: the client's `queue` option, itself `default` by default). */
  readonly queue?: string;
}

/** Options of one job. Durations are milliseconds. */
export interface JobOptions {
  /**
   * An idempotency key, used as the job id: while a job with this id exists
   * in the queue, submitting it again returns the same id and changes
   * nothing. Without one the job gets a fresh UUID v7.
   */
  readonly key?: string;
  /** Run no earlier than this many ms after submission, on Redis' clock (default 0). */
  readonly delay?: number;
  /** How many times it may run before it is buried (default 3). */
  readonly maxAttempts?: number;
  /** The longest one attempt may run, in ms, enforced by the worker (default 30000; 0: no limit). */
  readonly timeout?: number;
  /**
   * Keep the record at least this long (ms, rounded up to whole seconds)
   * once the job completed or was cancelled, so its key holds that long even
   * when the workers' retention is shorter.
   */
  readonly keyTtl?: number;
  /** A W3C trace context (`00-<trace id>-<parent id>-<flags>`) for the worker's span. */
  readonly traceparent?: string;
}

/** Options of {@link Client.submit}: one job's options and its queue. */
export interface SubmitOptions extends JobOptions, QueueOptions {}

/** One job of {@link Client.submitMany}. */
export interface JobSpec extends JobOptions {
  /** The task that runs it: 1 to 200 bytes. */
  readonly task: string;
  /** Its input: any JSON-serialisable value (omitted: `null`). */
  readonly payload?: unknown;
}

/** Options of {@link Client.wait}. */
export interface WaitOptions extends QueueOptions {
  /**
   * Give up after this many ms with a `WaitTimeoutError` (the job keeps
   * running). Omitted: wait for as long as it takes. 0: look once.
   */
  readonly timeout?: number;
}

/**
 * What {@link Client.cancel} did.
 *
 * - `cancelled`: it was pending or scheduled; it will never run.
 * - `cancelling`: it is running; its worker was told to stop it, and it ends
 *   `cancelled` (or `completed`, if it finished first).
 * - `already_final`: it had already ended; nothing changed.
 * - `not_found`: the queue has no such job.
 */
export type CancelOutcome = "cancelled" | "cancelling" | "already_final" | "not_found";

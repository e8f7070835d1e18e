/**
 * {@link Client}: a jobfleet producer on one Redis server.
 *
 * @module
 */

import { Redis, type RedisOptions } from "ioredis";

import {
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
import { EventHub, Inbox } from "./events.js";
import {
  isFinalState,
  type CancelOutcome,
  type Job,
  type JobSpec,
  type JobState,
  type QueueOptions,
  type SubmitOptions,
  type WaitOptions,
} from "./job.js";
import * as p from "./protocol.js";
import { script, type Script } from "./scripts.js";

/** Settings of a {@link Client}. Durations are milliseconds. */
export interface ClientOptions {
  /** The key prefix; must match the workers' `--prefix` (default `jobfleet`). */
  readonly prefix?: string;
  /** The queue a call uses when it names none (default `default`). */
  readonly queue?: string;
  /**
   * The largest payload accepted, in bytes of JSON text; should match the
   * workers' `--max-payload-bytes` (default 1 MiB; 0: no check here).
   */
  readonly maxPayloadBytes?: number;
  /**
   * How long the record of a scheduled job cancelled here is kept (default
   * 1 h, the workers' `--keep-completed`).
   */
  readonly cancelledRetention?: number;
  /** How long connecting may take before it fails (default 5000). */
  readonly connectTimeout?: number;
  /** How long one Redis reply may take before the command fails (default 10000). */
  readonly commandTimeout?: number;
  /**
   * The connection name Redis shows in `CLIENT LIST` (default `jobfleet-node`);
   * the events connection gets `<name>:events`.
   */
  readonly name?: string;
}

/** What a waiter's inbox receives. */
type Signal =
  { readonly kind: "final"; readonly event: p.JobEvent } | { readonly kind: "resync" } | { readonly kind: "closed" };

/** How long Redis may take to confirm a subscription, in ms. */
const SUBSCRIBE_TIMEOUT_MS = 10_000;
/** How long a wait without a deadline rides out a lost connection, in ms. */
const OUTAGE_LIMIT_MS = 60_000;
/** The longest single timer a wait sets (Node's timers overflow past 2^31 - 1 ms). */
const MAX_STEP_MS = 60_000;
/** Reconnect attempts a command waits through before it fails. */
const RETRIES_PER_COMMAND = 3;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Whether `e` is an error reply from Redis (as opposed to a connection problem). */
function isReplyError(e: unknown): e is Error {
  return e instanceof Error && e.name === "ReplyError";
}

/** Whether `e` means the connection is gone or not there yet (worth retrying). */
function isConnectionProblem(e: unknown): boolean {
  return !(e instanceof JobfleetError) && !isReplyError(e);
}

/**
 * A jobfleet producer: submits jobs to queues served by `jobfleet-worker`
 * processes anywhere that reach the same Redis, waits for their results,
 * reads their status and cancels them.
 *
 * `url` is `redis://[user:password@]host:port[/db]`, or `rediss://` for TLS.
 * It must name a single Redis server (7.0 or later): a Redis Cluster node is
 * refused with {@link ClusterNotSupportedError}, Sentinel is not supported.
 *
 * The client connects on first use and fails fast when Redis cannot be
 * reached ({@link ConnectionError}); once connected, a broken connection is
 * re-established in the background and a command waits through a few
 * reconnect attempts before it fails. Every call validates its arguments
 * before sending anything ({@link InvalidArgumentError}). Close the client
 * with {@link Client.close} when done.
 *
 * @example
 * ```ts
 * const client = new Client("redis://127.0.0.1:6379");
 * const id = await client.submit("echo", { hello: "world" });
 * const job = await client.wait(id, { timeout: 10_000 });
 * console.log(job.state, job.result); // completed { hello: 'world' }
 * await client.close();
 * ```
 */
export class Client {
  /** The Redis URL, with any password masked. */
  readonly url: string;
  /** The key prefix. */
  readonly prefix: string;
  /** The queue a call uses when it names none. */
  readonly defaultQueue: string;

  readonly #redis: Redis;
  readonly #hub: EventHub;
  readonly #maxPayloadBytes: number;
  readonly #cancelledRetentionS: number;
  readonly #shards = new Map<string, { readonly n: number; readonly at: number }>();
  readonly #turns = new Map<string, number>();
  readonly #registered = new Set<string>();
  /** The inboxes of the waits in progress, told when the client closes. */
  readonly #waits = new Set<Inbox<Signal>>();
  #ready: Promise<void> | undefined;
  #everReady = false;
  #lastError: Error | undefined;
  #closed = false;

  /**
   * Makes a client; nothing is sent until the first call.
   *
   * @param url - The Redis server (default `redis://127.0.0.1:6379`).
   * @param options - Prefix, default queue, limits and timeouts.
   * @throws {@link InvalidArgumentError} for a URL or option it cannot use.
   */
  constructor(url: string = p.DEFAULT_URL, options: ClientOptions = {}) {
    p.checkUrl(url);
    this.url = p.redactUrl(url);
    this.prefix = p.validatePrefix(options.prefix ?? p.DEFAULT_PREFIX);
    this.defaultQueue = p.validateQueue(options.queue ?? p.DEFAULT_QUEUE);
    const maxPayload = options.maxPayloadBytes ?? p.DEFAULT_MAX_PAYLOAD_BYTES;
    if (!Number.isSafeInteger(maxPayload) || maxPayload < 0) {
      throw new InvalidArgumentError(
        `maxPayloadBytes must be a non-negative integer (0: no limit), not ${String(maxPayload)}`,
      );
    }
    this.#maxPayloadBytes = maxPayload;
    this.#cancelledRetentionS = Math.floor(
      p.durationMs(options.cancelledRetention, "cancelledRetention", p.DEFAULT_CANCELLED_RETENTION_MS) / 1000,
    );
    const connectTimeout = positive(options.connectTimeout, "connectTimeout", 5000);
    const commandTimeout = positive(options.commandTimeout, "commandTimeout", 10_000);
    const name = options.name ?? "jobfleet-node";
    if (typeof name !== "string" || !/^[!-~]{1,100}$/.test(name)) {
      throw new InvalidArgumentError(
        `name must be 1 to 100 printable ASCII characters without spaces, not ${JSON.stringify(name)}`,
      );
    }

    const redisOptions: RedisOptions = {
      lazyConnect: true,
      connectionName: name,
      connectTimeout,
      commandTimeout,
      maxRetriesPerRequest: RETRIES_PER_COMMAND,
      // The first connection fails fast (a refused connection is reported at
      // once, not retried forever); one that worked and broke is re-made
      // with a capped backoff.
      retryStrategy: (times: number) => (this.#everReady ? Math.min(50 * 2 ** (times - 1), 1000) : null),
    };
    try {
      this.#redis = new Redis(url, redisOptions);
    } catch (e) {
      throw new InvalidArgumentError(`invalid Redis URL ${JSON.stringify(this.url)}`, { cause: e });
    }
    this.#redis.on("ready", () => {
      this.#everReady = true;
    });
    // Errors are reported by the calls that meet them; the listener keeps the
    // last one to explain a failed connect.
    this.#redis.on("error", (e: Error) => {
      this.#lastError = e;
    });
    this.#hub = new EventHub(() => {
      const subscriber = this.#redis.duplicate({
        lazyConnect: true,
        connectionName: `${name}:events`,
        commandTimeout: undefined,
        retryStrategy: (times: number) => Math.min(50 * 2 ** (times - 1), 1000),
      });
      subscriber.on("error", () => undefined);
      return subscriber;
    });
  }

  // -- submitting ---------------------------------------------------------------

  /**
   * Submits one job and returns its id.
   *
   * @param task - The task that runs it (built into `jobfleet-worker`:
   *   `noop`, `echo`, `sleep`, `fail`, `thumbnail`).
   * @param payload - Its input: any JSON-serialisable value (omitted: `null`).
   * @param options - Its queue, idempotency `key`, `delay`, `maxAttempts`,
   *   attempt `timeout`, `keyTtl` and `traceparent`.
   * @returns The job id: the `key` when one was given (also when a job with
   *   it already existed, which is then left alone), else a fresh UUID v7.
   * @throws {@link InvalidArgumentError} before sending anything, for an
   *   argument it cannot use; {@link ConnectionError} when Redis cannot be
   *   reached.
   */
  async submit(task: string, payload?: unknown, options: SubmitOptions = {}): Promise<string> {
    const { queue, ...job } = options;
    const [id] = await this.submitMany([{ ...job, task, payload }], { queue });
    if (id === undefined) throw new ProtocolError("submit returned no id");
    return id;
  }

  /**
   * Submits a batch of jobs to one queue and returns their ids, in order:
   * one script call per 1,000 jobs (and per shard), pipelined. Every job is
   * checked before anything is sent, so a bad one submits none.
   *
   * @param jobs - The jobs: `{ task, payload, key, delay, maxAttempts, timeout, keyTtl, traceparent }`.
   * @param options - The queue they go to.
   * @throws {@link InvalidArgumentError} naming the first bad job (`job #3: ...`).
   */
  async submitMany(jobs: Iterable<JobSpec>, options: QueueOptions = {}): Promise<string[]> {
    const queue = this.#queue(options.queue);
    const prepared = p.prepareAll([...jobs], this.#maxPayloadBytes);
    if (prepared.length === 0) return [];
    return this.#translate(async () => {
      await this.#connect();
      await this.#register(queue);
      const shards = await this.#shardCount(queue);
      const groups = await this.#place(queue, prepared, shards);
      const calls = [...groups].flatMap(([shard, group]) => p.submitCalls(this.#keys(queue, shard), group));
      const submit = script("submit.lua");
      const replies = await Promise.all(calls.map((call) => this.#eval(submit, call)));
      replies.forEach((reply, i) => {
        const expected = (calls[i]?.keys.length ?? 4) - 4;
        if (!Array.isArray(reply) || reply.length !== expected) {
          throw new ProtocolError(`submit replied ${JSON.stringify(reply)}, expected ${expected} integers`);
        }
      });
      return prepared.map((job) => {
        if (job.id === undefined) throw new ProtocolError("a job was submitted without an id");
        return job.id;
      });
    });
  }

  // -- reading ------------------------------------------------------------------

  /**
   * Reads a job.
   *
   * @returns The job, or `null` when the queue has no such job (never
   *   submitted there, or its record expired).
   */
  async status(id: string, options: QueueOptions = {}): Promise<Job | null> {
    const queue = this.#queue(options.queue);
    p.validateJobId(id);
    return this.#translate(async () => {
      await this.#connect();
      return (await this.#read(queue, id, await this.#shardCount(queue))) ?? null;
    });
  }

  /**
   * How many shards a queue has: 1 unless raised with `jobfleet queue create
   * Q --shards N`. Read from Redis at most every 2 s.
   */
  async shardCount(queue?: string): Promise<number> {
    const name = this.#queue(queue);
    return this.#translate(async () => {
      await this.#connect();
      return this.#shardCount(name);
    });
  }

  /**
   * Cancels a job: at once when it is pending or scheduled; through its
   * worker when it is running (it then ends `cancelled`, unless it completes
   * first).
   */
  async cancel(id: string, options: QueueOptions = {}): Promise<CancelOutcome> {
    const queue = this.#queue(options.queue);
    p.validateJobId(id);
    return this.#translate(async () => {
      await this.#connect();
      const shards = await this.#shardCount(queue);
      let shard = 0;
      if (shards > 1) {
        const order = p.probeOrder(id, shards);
        const pipeline = this.#redis.pipeline();
        for (const s of order) pipeline.exists(this.#keys(queue, s).job(id));
        const found = (await execPipeline(pipeline)).map(Number);
        const hit = order.find((_, i) => (found[i] ?? 0) > 0);
        if (hit === undefined) return "not_found";
        shard = hit;
      }
      const call = p.cancelCall(this.#keys(queue, shard), queue, id, this.#cancelledRetentionS);
      const reply = await this.#eval(script("cancel.lua"), call);
      if (reply === "cancelled" || reply === "cancelling") return reply;
      if (reply === "missing") return "not_found";
      if (typeof reply === "string" && reply.startsWith("final:")) return "already_final";
      throw new ProtocolError(`cancel replied ${JSON.stringify(reply)}`);
    });
  }

  /**
   * Waits until a job is final, and returns it when it **completed** (its
   * `result` is what the task returned).
   *
   * It subscribes to the queue's events first, then reads the job, so no
   * event can slip between the two; after a reconnect it reads the job
   * again, and it rides out a lost connection until its deadline (a minute
   * without one). Many waits share one subscriber connection.
   *
   * @param options - The queue, and a `timeout` in ms (omitted: no limit).
   * @throws {@link JobFailedError} when the job ended `dead` or `cancelled`
   *   (`err.job` is its final record, `err.job.error` the reason);
   *   {@link WaitTimeoutError} when the timeout ran out first (the job keeps
   *   running); {@link JobNotFoundError} when the queue has no such job.
   */
  async wait(id: string, options: WaitOptions = {}): Promise<Job> {
    const queue = this.#queue(options.queue);
    p.validateJobId(id);
    const limit = options.timeout === undefined ? undefined : p.durationMs(options.timeout, "timeout", 0);
    const deadline = limit === undefined ? undefined : performance.now() + limit;
    const job = await this.#translate(async () => {
      await this.#connect();
      return this.#waitFinal(queue, id, limit, deadline);
    });
    if (job.state !== "completed") throw new JobFailedError(job);
    return job;
  }

  /**
   * Closes the client's connections. Waits in progress reject with a
   * {@link ConnectionError}, and so do calls made afterwards.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const inbox of this.#waits) inbox.push({ kind: "closed" });
    await this.#hub.close();
    if (this.#redis.status === "ready") {
      try {
        await this.#redis.quit();
        return;
      } catch {
        // Closed below in any case.
      }
    }
    this.#redis.disconnect();
  }

  // -- internals ----------------------------------------------------------------

  #closedError(): ConnectionError {
    return new ConnectionError(`the client of ${this.url} is closed`, this.url);
  }

  #queue(queue: string | undefined): string {
    return queue === undefined ? this.defaultQueue : p.validateQueue(queue);
  }

  #keys(queue: string, shard = 0): p.ShardKeys {
    return new p.ShardKeys(this.prefix, queue, shard);
  }

  /**
   * Connects (once), and refuses a Redis Cluster node. A failed connect is
   * tried afresh by the next call.
   */
  async #connect(): Promise<void> {
    if (this.#closed) throw this.#closedError();
    this.#ready ??= this.#handshake().catch((e: unknown) => {
      this.#ready = undefined;
      throw e;
    });
    return this.#ready;
  }

  async #handshake(): Promise<void> {
    if (this.#redis.status === "wait" || this.#redis.status === "end") {
      this.#lastError = undefined;
      try {
        await this.#redis.connect();
      } catch (e) {
        const cause = this.#lastError ?? e;
        if (isReplyError(cause)) {
          throw new ConnectionError(`Redis at ${this.url} refused the connection: ${cause.message}`, this.url, {
            cause,
          });
        }
        throw new ConnectionError(`cannot reach Redis at ${this.url}: ${describe(cause)}`, this.url, { cause });
      }
    }
    let info = "";
    try {
      info = await this.#redis.info("cluster");
    } catch (e) {
      // A server that refuses INFO (some managed services) is not a cluster node.
      if (!isReplyError(e)) throw e;
    }
    if (/^cluster_enabled:1\s*$/m.test(info)) {
      this.#redis.disconnect();
      throw new ClusterNotSupportedError(this.url);
    }
  }

  /** Runs `body`, turning ioredis' errors into jobfleet's. */
  async #translate<T>(body: () => Promise<T>): Promise<T> {
    try {
      return await body();
    } catch (e) {
      throw this.#jobfleetError(e);
    }
  }

  #jobfleetError(e: unknown): JobfleetError {
    if (e instanceof JobfleetError) return e;
    if (isReplyError(e)) {
      if (e.message.includes("jobfleet: invalid job")) return new InvalidArgumentError(e.message, { cause: e });
      return new ServerError(`Redis at ${this.url} refused a command: ${e.message}`, { cause: e });
    }
    return new ConnectionError(`cannot reach Redis at ${this.url}: ${describe(e)}`, this.url, { cause: e });
  }

  /** Adds the queue to the set of known queues (once per client). */
  async #register(queue: string): Promise<void> {
    if (this.#registered.has(queue)) return;
    await this.#redis.sadd(p.queuesKey(this.prefix), queue);
    this.#registered.add(queue);
  }

  async #shardCount(queue: string): Promise<number> {
    const known = this.#shards.get(queue);
    if (known !== undefined && performance.now() - known.at < p.SHARDS_TTL_MS) return known.n;
    const n = p.parseShards(await this.#redis.hget(this.#keys(queue).meta, "shards"));
    this.#shards.set(queue, { n, at: performance.now() });
    return n;
  }

  /**
   * Gives every job without a key a fresh id and groups the jobs by shard. On
   * a sharded queue, an id made here hashes to the next shard in turn (round
   * robin), and a key that already names a job goes where that job is (it
   * may have been used before the shard count was raised); any other key
   * goes to its hash's shard.
   */
  async #place(queue: string, jobs: readonly p.PreparedJob[], shards: number): Promise<Map<number, p.PreparedJob[]>> {
    const keyed = jobs.flatMap((job) => (job.keyed && job.id !== undefined ? [job.id] : []));
    const found = shards > 1 && keyed.length > 0 ? await this.#findShards(queue, keyed, shards) : new Map();
    const groups = new Map<number, p.PreparedJob[]>();
    for (const job of jobs) {
      let shard: number;
      if (job.id !== undefined) {
        shard = found.get(job.id) ?? p.shardOf(job.id, shards);
      } else if (shards === 1) {
        job.id = p.newJobId();
        shard = 0;
      } else {
        job.id = p.placedJobId(shards, this.#nextTurn(queue, shards));
        shard = p.shardOf(job.id, shards);
      }
      let group = groups.get(shard);
      if (group === undefined) groups.set(shard, (group = []));
      group.push(job);
    }
    return groups;
  }

  #nextTurn(queue: string, shards: number): number {
    const turn = this.#turns.get(queue) ?? Math.floor(Math.random() * 2 ** 32);
    this.#turns.set(queue, turn + 1);
    return turn % shards;
  }

  /**
   * The shard that holds a job for each of `ids`, where one does: first each
   * id's own shard, then the others, a pipelined round trip each.
   */
  async #findShards(queue: string, ids: readonly string[], shards: number): Promise<Map<string, number>> {
    const found = new Map<string, number>();
    for (const round of [0, 1]) {
      const asked: Array<[string, number]> = [];
      for (const id of new Set(ids)) {
        if (found.has(id)) continue;
        const home = p.shardOf(id, shards);
        for (let shard = 0; shard < shards; shard++) {
          if ((round === 0) === (shard === home)) asked.push([id, shard]);
        }
      }
      if (asked.length === 0) break;
      const pipeline = this.#redis.pipeline();
      for (const [id, shard] of asked) pipeline.exists(this.#keys(queue, shard).job(id));
      const replies = await execPipeline(pipeline);
      asked.forEach(([id, shard], i) => {
        if (Number(replies[i]) > 0 && !found.has(id)) found.set(id, shard);
      });
    }
    return found;
  }

  /** The job's record: in its id's shard first, then the others, in one round trip. */
  async #read(queue: string, id: string, shards: number): Promise<Job | undefined> {
    if (shards === 1) {
      return p.jobFromFields(id, queue, await this.#redis.hgetall(this.#keys(queue).job(id)));
    }
    const pipeline = this.#redis.pipeline();
    for (const shard of p.probeOrder(id, shards)) pipeline.hgetall(this.#keys(queue, shard).job(id));
    for (const fields of await execPipeline(pipeline)) {
      const job = p.jobFromFields(id, queue, fields as Record<string, string>);
      if (job !== undefined) return job;
    }
    return undefined;
  }

  /** {@link Client.#read}, retried while Redis is unreachable, until `giveUp`. */
  async #readRetrying(queue: string, id: string, shards: number, giveUp: number): Promise<Job | undefined> {
    let backoff = 50;
    for (;;) {
      try {
        return await this.#read(queue, id, shards);
      } catch (e) {
        if (!isConnectionProblem(e) || this.#closed || performance.now() + backoff >= giveUp) throw e;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }

  /** Runs a shipped script by its SHA1, sending its text when Redis does not know it. */
  async #eval(s: Script, call: p.ScriptCall): Promise<unknown> {
    const n = call.keys.length;
    try {
      return await this.#redis.evalsha(s.sha, n, ...call.keys, ...call.args);
    } catch (e) {
      if (isReplyError(e) && e.message.startsWith("NOSCRIPT")) {
        return this.#redis.eval(s.source, n, ...call.keys, ...call.args);
      }
      throw e;
    }
  }

  /** The body of {@link Client.wait}: the job once final, whatever its final state. */
  async #waitFinal(queue: string, id: string, limit: number | undefined, deadline: number | undefined): Promise<Job> {
    const shards = await this.#shardCount(queue);
    const channels = Array.from({ length: shards }, (_, shard) => this.#keys(queue, shard).events);
    const inbox = new Inbox<Signal>();
    this.#waits.add(inbox);
    let unlisten: () => void;
    try {
      unlisten = await this.#hub.listen(
        channels,
        {
          message: (text) => {
            const event = p.parseEvent(text);
            // An event that cannot be read means something may have been missed.
            if (event === undefined) inbox.push({ kind: "resync" });
            else if (p.isFinalEvent(event, queue, id)) inbox.push({ kind: "final", event });
          },
          resync: () => inbox.push({ kind: "resync" }),
        },
        SUBSCRIBE_TIMEOUT_MS,
      );
    } catch (e) {
      this.#waits.delete(inbox);
      throw this.#closed ? this.#closedError() : e;
    }
    const giveUp = (): number => deadline ?? performance.now() + OUTAGE_LIMIT_MS;
    /** The job from its final event: its record when that is final too (it has every field). */
    const finished = async (event: p.JobEvent): Promise<Job> => {
      try {
        const record = await this.#read(queue, id, shards);
        if (record !== undefined && isFinalState(record.state)) return record;
      } catch {
        // The event says enough.
      }
      return p.jobFromEvent(event);
    };
    try {
      let lastState: JobState | undefined;
      let resync = true;
      for (;;) {
        if (resync) {
          resync = false;
          const job = await this.#readRetrying(queue, id, shards, giveUp());
          if (job !== undefined) {
            lastState = job.state;
            if (isFinalState(job.state)) return job;
          } else {
            // No record: it may have finished and been deleted at once just
            // before the read; its event is then on its way.
            const signal = await inbox.next(p.ABSENT_GRACE_MS);
            if (signal === undefined) throw new JobNotFoundError(id, queue);
            if (signal.kind === "closed") throw this.#closedError();
            if (signal.kind === "final") return await finished(signal.event);
            resync = true;
            continue;
          }
        }
        const left = deadline === undefined ? undefined : deadline - performance.now();
        if (left !== undefined && left <= 0) throw new WaitTimeoutError(id, limit ?? 0, lastState);
        const signal = await inbox.next(left === undefined ? undefined : Math.min(left, MAX_STEP_MS));
        if (signal === undefined) continue;
        if (signal.kind === "closed") throw this.#closedError();
        if (signal.kind === "final") return await finished(signal.event);
        resync = true;
      }
    } finally {
      this.#waits.delete(inbox);
      unlisten();
    }
  }
}

/** A positive duration option in ms, or `fallback`. */
function positive(value: number | undefined, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || value > 2 ** 31 - 1) {
    throw new InvalidArgumentError(`${what} must be a positive number of milliseconds, not ${String(value)}`);
  }
  return value;
}

/** An error's message, with its code when the message lacks it. */
function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" && !e.message.includes(code) ? `${e.message} (${code})` : e.message;
}

/** Runs a pipeline; the first failed command's error is thrown. */
async function execPipeline(pipeline: ReturnType<Redis["pipeline"]>): Promise<unknown[]> {
  const replies = await pipeline.exec();
  if (replies === null) throw new Error("the pipeline was discarded");
  return replies.map(([error, reply]) => {
    if (error !== null) throw error;
    return reply;
  });
}

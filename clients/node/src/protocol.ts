/**
 * The wire protocol without I/O: key names, validation, shard placement, job
 * ids, the scripts' arguments, and reading job records and events. Everything
 * here follows the jobfleet protocol document (`docs/PROTOCOL.md` in the
 * jobfleet repository).
 *
 * @module
 */

import { randomBytes, randomInt } from "node:crypto";

import { InvalidArgumentError } from "./errors.js";
import { JOB_STATES, type Job, type JobSpec, type JobState } from "./job.js";

/** The key prefix of a fleet that sets none. */
export const DEFAULT_PREFIX = "jobfleet";
/** The queue used when none is named. */
export const DEFAULT_QUEUE = "default";
/** The Redis a client talks to when given no URL. */
export const DEFAULT_URL = "redis://127.0.0.1:6379";
/** The largest payload accepted, in bytes of JSON text (the workers' default). */
export const DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** How long the record of a job cancelled while scheduled is kept, in ms (the workers' default). */
export const DEFAULT_CANCELLED_RETENTION_MS = 3_600_000;
/** Attempts a job gets unless told otherwise. */
export const DEFAULT_MAX_ATTEMPTS = 3;
/** The longest one attempt may run unless told otherwise, in ms. */
export const DEFAULT_TIMEOUT_MS = 30_000;
/** The longest delay, attempt timeout or key TTL: 100 years, in ms. */
export const MAX_DELAY_MS = 3_155_760_000_000;
/** The most attempts a job may be given. */
export const MAX_ATTEMPTS = 2 ** 32 - 1;
/** The most shards a queue may have. */
export const MAX_SHARDS = 1024;
/** Jobs per submit script call: the round trip amortised, Redis never blocked for long. */
export const SUBMIT_CHUNK = 1000;
/** How long a shard count read from Redis is trusted, in ms. */
export const SHARDS_TTL_MS = 2000;
/**
 * How long a waiter gives the event of a job found without a record
 * (finished and deleted at once) before calling it missing, in ms.
 */
export const ABSENT_GRACE_MS = 500;

// -- validation ---------------------------------------------------------------

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,64}$/;
const ASCII_WHITESPACE = /[ \t\n\v\f\r]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const HEX = (n: number): RegExp => new RegExp(`^[0-9a-f]{${n}}$`);
const HEX2 = HEX(2);
const HEX16 = HEX(16);
const HEX32 = HEX(32);

/** A value shown in an error message. */
function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  try {
    return String(value);
  } catch {
    return `<${typeof value}>`;
  }
}

/** The UTF-8 length of `text`, or `undefined` when it is not valid Unicode (a lone surrogate). */
function utf8Length(text: string): number | undefined {
  return LONE_SURROGATE.test(text) ? undefined : Buffer.byteLength(text, "utf8");
}

/**
 * Checks a queue name: 1 to 64 characters from `A-Z a-z 0-9 _ - . :`. The
 * name sits inside the `{}` hash tag of every key of the queue, so braces,
 * whitespace, `#` and glob characters are refused.
 */
export function validateQueue(name: unknown): string {
  if (typeof name !== "string" || !QUEUE_NAME.test(name)) {
    throw new InvalidArgumentError(
      `invalid queue name ${show(name)}: use 1 to 64 characters from letters, digits, '_', '-', '.' and ':'`,
    );
  }
  return name;
}

/** Checks a job id (idempotency key): 1 to 200 bytes of UTF-8 without ASCII whitespace. */
export function validateJobId(id: unknown): string {
  if (typeof id === "string") {
    const size = utf8Length(id);
    if (size !== undefined && size >= 1 && size <= 200 && !ASCII_WHITESPACE.test(id)) return id;
  }
  throw new InvalidArgumentError(`invalid job id ${show(id)}: use 1 to 200 bytes of UTF-8 without whitespace`);
}

/** Checks a task name: 1 to 200 bytes of UTF-8. */
export function validateTask(task: unknown): string {
  if (typeof task === "string") {
    const size = utf8Length(task);
    if (size !== undefined && size >= 1 && size <= 200) return task;
  }
  throw new InvalidArgumentError(`invalid task name ${show(task)}: use 1 to 200 bytes of UTF-8`);
}

/** Checks a key prefix: not empty, without braces (they would change every key's hash tag) or whitespace. */
export function validatePrefix(prefix: unknown): string {
  if (typeof prefix !== "string" || prefix === "" || /[{}\s]/.test(prefix)) {
    throw new InvalidArgumentError(
      `invalid key prefix ${show(prefix)}: use a non-empty string without braces or whitespace`,
    );
  }
  return prefix;
}

/**
 * A duration option in whole milliseconds (rounded to the nearest), or
 * `fallback` when it is `undefined`. Refuses negative, non-finite and
 * over-100-year values.
 */
export function durationMs(value: unknown, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
    throw new InvalidArgumentError(`${what} must be a non-negative, finite number of milliseconds, not ${show(value)}`);
  }
  const ms = Math.round(value);
  if (ms > MAX_DELAY_MS) {
    throw new InvalidArgumentError(`${what} of ${ms} ms is too long: at most 100 years`);
  }
  return ms;
}

/** Checks `maxAttempts`: an integer from 1 to 2^32 - 1. */
export function validateMaxAttempts(value: unknown): number {
  if (typeof value === "number" && Number.isInteger(value) && value >= 1 && value <= MAX_ATTEMPTS) return value;
  throw new InvalidArgumentError(`maxAttempts must be an integer from 1 to ${MAX_ATTEMPTS}, not ${show(value)}`);
}

/**
 * Checks a W3C trace context: `<version>-<32 hex trace id>-<16 hex parent
 * id>-<2 hex flags>`, lowercase, version not `ff`, ids not all zero.
 */
export function validateTraceparent(value: unknown): string {
  const parts = typeof value === "string" ? value.split("-") : [];
  const [version, trace, span, flags] = parts;
  const ok =
    parts.length === 4 &&
    version !== undefined &&
    HEX2.test(version) &&
    version !== "ff" &&
    trace !== undefined &&
    HEX32.test(trace) &&
    !/^0+$/.test(trace) &&
    span !== undefined &&
    HEX16.test(span) &&
    !/^0+$/.test(span) &&
    flags !== undefined &&
    HEX2.test(flags);
  if (!ok || typeof value !== "string") {
    throw new InvalidArgumentError(
      `invalid traceparent ${show(value)}: use the W3C form 00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`,
    );
  }
  return value;
}

/**
 * Serialises a payload to JSON text (`undefined`: `null`). Refuses what JSON
 * cannot carry instead of dropping or changing it silently: BigInts, NaN and
 * the infinities, functions, symbols and cycles. (Object properties whose
 * value is `undefined` are left out, as JSON.stringify always does.) A text
 * over `limit` bytes is refused too (0: no limit).
 */
export function encodePayload(payload: unknown, limit: number): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(payload === undefined ? null : payload, (key: string, value: unknown) => {
      const where = key === "" ? "" : ` (at key ${JSON.stringify(key)})`;
      if (typeof value === "bigint") throw new InvalidArgumentError(`a BigInt is not JSON${where}`);
      if (typeof value === "number" && !Number.isFinite(value)) {
        throw new InvalidArgumentError(`${value} is not a JSON number${where}`);
      }
      if (typeof value === "function" || typeof value === "symbol") {
        throw new InvalidArgumentError(`a ${typeof value} is not JSON${where}`);
      }
      return value;
    });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new InvalidArgumentError(`payload is not JSON-serialisable: ${why}`, { cause: e });
  }
  if (text === undefined) {
    throw new InvalidArgumentError(`payload is not JSON-serialisable: ${show(payload)}`);
  }
  const size = Buffer.byteLength(text, "utf8");
  if (limit > 0 && size > limit) {
    throw new InvalidArgumentError(`payload is ${size} bytes, over the ${limit} byte limit`);
  }
  return text;
}

// -- jobs to submit -----------------------------------------------------------

/** A job checked and encoded, ready for `submit.lua`. */
export interface PreparedJob {
  /** Its id: the caller's key, or one made at placement. */
  id: string | undefined;
  /** Whether the id is the caller's (an idempotency key). */
  readonly keyed: boolean;
  readonly task: string;
  /** JSON text. */
  readonly payload: string;
  readonly maxAttempts: number;
  readonly timeoutMs: number;
  readonly delayMs: number;
  /** Whole seconds, rounded up (0: none). */
  readonly keyTtlS: number;
  readonly traceparent: string | undefined;
}

/** Checks one job spec and encodes its payload (`limit`: the payload byte limit, 0: none). */
export function prepareJob(spec: JobSpec, limit: number): PreparedJob {
  if (typeof spec !== "object" || spec === null) {
    throw new InvalidArgumentError(`a job must be an object with a task, not ${show(spec)}`);
  }
  const task = validateTask(spec.task);
  const id = spec.key === undefined ? undefined : validateJobId(spec.key);
  const maxAttempts = spec.maxAttempts === undefined ? DEFAULT_MAX_ATTEMPTS : validateMaxAttempts(spec.maxAttempts);
  const timeoutMs = durationMs(spec.timeout, "timeout", DEFAULT_TIMEOUT_MS);
  const delayMs = durationMs(spec.delay, "delay", 0);
  const keyTtlS = Math.ceil(durationMs(spec.keyTtl, "keyTtl", 0) / 1000);
  const traceparent = spec.traceparent === undefined ? undefined : validateTraceparent(spec.traceparent);
  const payload = encodePayload(spec.payload, limit);
  return { id, keyed: id !== undefined, task, payload, maxAttempts, timeoutMs, delayMs, keyTtlS, traceparent };
}

/**
 * Checks every spec of a batch before anything is sent, so a bad one submits
 * none; the error of a batch names the job (`job #3: ...`, counted from 1).
 */
export function prepareAll(specs: readonly JobSpec[], limit: number): PreparedJob[] {
  return specs.map((spec, i) => {
    try {
      return prepareJob(spec, limit);
    } catch (e) {
      if (specs.length > 1 && e instanceof InvalidArgumentError) {
        throw new InvalidArgumentError(`job #${i + 1}: ${e.message}`, { cause: e });
      }
      throw e;
    }
  });
}

/** Whether a job needs `submit.lua`'s long (eight-value) layout. */
function hasExtras(job: PreparedJob): boolean {
  return job.keyTtlS > 0 || job.traceparent !== undefined;
}

/** The KEYS and ARGV of one script call. */
export interface ScriptCall {
  readonly keys: string[];
  readonly args: string[];
}

/**
 * The `submit.lua` calls for jobs of one shard, 1,000 jobs per call: KEYS
 * pending, scheduled, stats, dead, then each job's HASH; ARGV the notify
 * channel, then six values per job (id, task, payload, max_attempts,
 * timeout_ms, delay_ms), or eight for every job of a call where one sets a
 * key TTL or a traceparent (adding key_ttl_s and traceparent). Every job must
 * have its id.
 */
export function submitCalls(keys: ShardKeys, jobs: readonly PreparedJob[]): ScriptCall[] {
  const calls: ScriptCall[] = [];
  for (let start = 0; start < jobs.length; start += SUBMIT_CHUNK) {
    const chunk = jobs.slice(start, start + SUBMIT_CHUNK);
    const long = chunk.some(hasExtras);
    const callKeys = [keys.pending, keys.scheduled, keys.stats, keys.dead];
    const args = [keys.notify];
    for (const job of chunk) {
      if (job.id === undefined) throw new Error("a job without an id reached submitCalls");
      callKeys.push(keys.job(job.id));
      args.push(job.id, job.task, job.payload, String(job.maxAttempts), String(job.timeoutMs), String(job.delayMs));
      if (long) args.push(String(job.keyTtlS), job.traceparent ?? "");
    }
    calls.push({ keys: callKeys, args });
  }
  return calls;
}

/**
 * The `cancel.lua` call: KEYS pending, scheduled, stats, the job HASH; ARGV
 * id, events channel, control channel, queue name, retention (s).
 */
export function cancelCall(keys: ShardKeys, queue: string, id: string, retentionS: number): ScriptCall {
  return {
    keys: [keys.pending, keys.scheduled, keys.stats, keys.job(id)],
    args: [id, keys.events, keys.control, queue, String(retentionS)],
  };
}

// -- keys -----------------------------------------------------------------------

/**
 * The keys of one shard of a queue: shard 0 carries the hash tag `{Q}`,
 * shard `i` ≥ 1 the tag `{Q#i}`. The queue name must have been validated.
 */
export class ShardKeys {
  /** `P:{Q}` or `P:{Q#i}`. */
  readonly base: string;

  /**
   * @param prefix - The key prefix.
   * @param queue - The queue name.
   * @param shard - The shard, from 0.
   */
  constructor(prefix: string, queue: string, shard = 0) {
    this.base = shard === 0 ? `${prefix}:{${queue}}` : `${prefix}:{${queue}#${shard}}`;
  }

  /** LIST of ids ready to run. */
  get pending(): string {
    return `${this.base}:pending`;
  }

  /** ZSET id → run-at (ms). */
  get scheduled(): string {
    return `${this.base}:scheduled`;
  }

  /** ZSET id → when it was buried (ms). */
  get dead(): string {
    return `${this.base}:dead`;
  }

  /** HASH of counters. */
  get stats(): string {
    return `${this.base}:stats`;
  }

  /** Channel: "work is pending". */
  get notify(): string {
    return `${this.base}:notify`;
  }

  /** Channel: one JSON event per state change. */
  get events(): string {
    return `${this.base}:events`;
  }

  /** Channel: messages to workers (`cancel <id>`). */
  get control(): string {
    return `${this.base}:control`;
  }

  /** HASH of the queue's settings (`shards`); meaningful on shard 0 only. */
  get meta(): string {
    return `${this.base}:meta`;
  }

  /** HASH of one job. */
  job(id: string): string {
    return `${this.base}:job:${id}`;
  }
}

/** The SET of known queue names under `prefix`. */
export function queuesKey(prefix: string): string {
  return `${prefix}:queues`;
}

// -- shards and ids -------------------------------------------------------------

const FNV_BASIS = 0x811c9dc5;
const FNV_PRIME = 0x01000193;

/** FNV-1a, 32 bit, of `bytes`, continuing from `hash` (default: the offset basis). */
export function fnv1a32(bytes: Uint8Array | string, hash: number = FNV_BASIS): number {
  const data = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
  let h = hash >>> 0;
  for (const byte of data) {
    h = Math.imul(h ^ byte, FNV_PRIME) >>> 0;
  }
  return h;
}

/** The shard a job id lives on among `shards`: FNV-1a (32 bit) of its UTF-8 bytes, modulo the count. */
export function shardOf(id: string, shards: number): number {
  return fnv1a32(id) % Math.max(1, shards);
}

/**
 * The shards to look for a job in: its id's own shard first, then the
 * others (a key used before the shard count was raised may live elsewhere).
 */
export function probeOrder(id: string, shards: number): number[] {
  const home = shardOf(id, shards);
  const order = [home];
  for (let s = 0; s < shards; s++) if (s !== home) order.push(s);
  return order;
}

/** The shard count from `P:{Q}:meta` field `shards` (absent or unreadable: 1), within 1..1024. */
export function parseShards(raw: string | null | undefined): number {
  const n = raw === null || raw === undefined ? 1 : Number.parseInt(raw, 10);
  return Number.isFinite(n) ? Math.min(Math.max(n, 1), MAX_SHARDS) : 1;
}

let lastMs = 0;
let lastSeq = 0;

/**
 * A fresh UUID v7 (RFC 9562): 48 bits of Unix ms, the version, a 12-bit
 * counter that keeps ids made in the same millisecond in order, the variant,
 * then 62 random bits.
 */
export function newJobId(): string {
  let ms = Date.now();
  let seq: number;
  if (ms > lastMs) {
    seq = randomInt(0, 0x800);
  } else {
    ms = lastMs;
    seq = lastSeq + 1;
    if (seq > 0xfff) {
      ms += 1;
      seq = randomInt(0, 0x800);
    }
  }
  lastMs = ms;
  lastSeq = seq;
  const bytes = randomBytes(16);
  bytes.writeUIntBE(ms, 0, 6);
  bytes[6] = 0x70 | (seq >> 8);
  bytes[7] = seq & 0xff;
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  const hex = bytes.toString("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const HEX_DIGITS = "0123456789abcdef";

/**
 * A fresh UUID v7 that lands on shard `want` of `shards`: its last two hex
 * digits (random bits) are chosen so that its hash does. With more shards
 * than two digits can reach, the hash alone spreads the ids.
 */
export function placedJobId(shards: number, want: number): string {
  let id = newJobId();
  if (shards <= 1) return id;
  for (let round = 0; round < 8; round++) {
    const head = id.slice(0, -2);
    const state = fnv1a32(head);
    for (let pair = 0; pair < 256; pair++) {
      const tail = `${HEX_DIGITS[pair >> 4]}${HEX_DIGITS[pair & 15]}`;
      if (fnv1a32(tail, state) % shards === want) return head + tail;
    }
    id = newJobId();
  }
  return id;
}

// -- URLs -----------------------------------------------------------------------

/**
 * Checks that a URL names one Redis server this client can use: `redis://`
 * or `rediss://` (TLS), one host.
 */
export function checkUrl(url: unknown): string {
  if (typeof url !== "string") {
    throw new InvalidArgumentError(`the Redis URL must be a string, not ${show(url)}`);
  }
  const match = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)/.exec(url);
  const scheme = match?.[1]?.toLowerCase();
  if (match === null || (scheme !== "redis" && scheme !== "rediss")) {
    throw new InvalidArgumentError(
      `unsupported Redis URL ${JSON.stringify(redactUrl(url))}: use redis://[user:password@]host:port[/db] ` +
        "or rediss:// for TLS (Sentinel and Cluster are not supported by this client)",
    );
  }
  const host = (match[2] ?? "").split("@").pop() ?? "";
  if (host.includes(",")) {
    throw new InvalidArgumentError(
      `the Redis URL ${JSON.stringify(redactUrl(url))} names several hosts: Redis Cluster is not supported by this client`,
    );
  }
  try {
    new URL(url);
  } catch (e) {
    throw new InvalidArgumentError(`invalid Redis URL ${JSON.stringify(redactUrl(url))}`, { cause: e });
  }
  return url;
}

/** The URL with its password (in the user info, or a `password=` query parameter) masked. */
export function redactUrl(url: string): string {
  return url
    .replace(/^([A-Za-z][A-Za-z0-9+.-]*:\/\/)([^/?#@]*)@/, (_all, scheme: string, userinfo: string) => {
      const colon = userinfo.indexOf(":");
      return colon < 0 ? `${scheme}${userinfo}@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
    })
    .replace(/([?&]password=)[^&#]*/gi, "$1***");
}

// -- reading records and events -------------------------------------------------

/** Parses JSON text; text that does not parse is returned as is. */
export function lenientJson(text: string | undefined): unknown {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/** A decimal integer (a string or a number), or `undefined`. */
function integer(value: unknown): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? Math.trunc(value) : undefined;
  if (typeof value !== "string" || value === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? Math.trunc(n) : undefined;
}

/** A stored state name; an unknown or absent one reads as `pending`, as the Rust client reads it. */
export function parseState(raw: unknown): JobState {
  return JOB_STATES.find((s) => s === raw) ?? "pending";
}

/** Builds a {@link Job} from its HASH fields; `undefined` for an empty HASH (no record). */
export function jobFromFields(id: string, queue: string, fields: Readonly<Record<string, string>>): Job | undefined {
  if (Object.keys(fields).length === 0) return undefined;
  const get = (name: string): string | undefined => (Object.hasOwn(fields, name) ? fields[name] : undefined);
  const worker = get("worker");
  return {
    id,
    queue,
    state: parseState(get("state")),
    task: get("task") ?? "",
    payload: lenientJson(get("payload")) ?? null,
    result: lenientJson(get("result")),
    error: get("error"),
    attempts: integer(get("attempts")) ?? 0,
    maxAttempts: integer(get("max_attempts")) ?? 1,
    timeoutMs: integer(get("timeout_ms")) ?? 0,
    createdMs: integer(get("created_ms")),
    runAtMs: integer(get("run_at_ms")),
    startedMs: integer(get("started_ms")),
    finishedMs: integer(get("finished_ms")),
    worker: worker === "" ? undefined : worker,
    recoveries: integer(get("recoveries")) ?? 0,
    keyTtlS: integer(get("key_ttl_s")),
    traceparent: get("traceparent"),
  };
}

/** One event from a queue's events channel (`P:{Q}:events`). */
export interface JobEvent {
  readonly id: string;
  readonly queue: string;
  readonly task: string;
  /** `completed`, `failed`, `dead`, `cancelled` or `recovered`. */
  readonly state: string;
  readonly attempt: number;
  readonly worker: string;
  readonly ms: number | undefined;
  readonly durationMs: number | undefined;
  readonly result: unknown;
  readonly error: string | undefined;
  readonly runAtMs: number | undefined;
}

/**
 * Reads one event: a JSON object with at least string `id`, `queue` and
 * `state`; numbers are read leniently. `undefined` when it cannot be read,
 * which a waiter treats as "something was missed".
 */
export function parseEvent(text: string): JobEvent | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return undefined;
  const o = raw as Record<string, unknown>;
  if (typeof o["id"] !== "string" || typeof o["queue"] !== "string" || typeof o["state"] !== "string") {
    return undefined;
  }
  return {
    id: o["id"],
    queue: o["queue"],
    state: o["state"],
    task: typeof o["task"] === "string" ? o["task"] : "",
    attempt: integer(o["attempt"]) ?? 0,
    worker: typeof o["worker"] === "string" ? o["worker"] : "",
    ms: integer(o["ms"]),
    durationMs: integer(o["duration_ms"]),
    result: o["result"],
    error: typeof o["error"] === "string" ? o["error"] : undefined,
    runAtMs: integer(o["run_at_ms"]),
  };
}

/** Whether an event says that this job (by queue and id) reached a final state. */
export function isFinalEvent(event: JobEvent, queue: string, id: string): boolean {
  return (
    event.id === id &&
    event.queue === queue &&
    (event.state === "completed" || event.state === "dead" || event.state === "cancelled")
  );
}

/**
 * A {@link Job} from its final event, for when its record is gone (retention
 * 0 deletes it at the ack). Fields an event does not carry read as in a
 * record without them.
 */
export function jobFromEvent(event: JobEvent): Job {
  return {
    id: event.id,
    queue: event.queue,
    state: parseState(event.state),
    task: event.task,
    payload: null,
    result: event.result,
    error: event.error,
    attempts: event.attempt,
    maxAttempts: 1,
    timeoutMs: 0,
    finishedMs: event.ms,
    worker: event.worker === "" ? undefined : event.worker,
    recoveries: 0,
  };
}

/**
 * What the tests start: a private redis-server on a free loopback port, real
 * `jobfleet-worker` processes, the `jobfleet` CLI, and bounded polling.
 * Nothing is ever flushed: every test uses queues of its own.
 */

import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { accessSync, constants, mkdtempSync, openSync, closeSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { Redis } from "ioredis";

import { Client, DEFAULT_PREFIX, type ClientOptions } from "jobfleet";

/** The client's folder (the package root). Tests run from `build/test/`. */
export const CLIENT_DIR = fileURLToPath(new URL("../../", import.meta.url));

/** Where the jobfleet binaries are: `JOBFLEET_BIN_DIR`, else the workspace's `target/debug`. */
export function binDir(): string {
  return resolve(process.env["JOBFLEET_BIN_DIR"] ?? join(CLIENT_DIR, "..", "..", "target", "debug"));
}

/** The path of a jobfleet binary, checked to be executable. */
export function binary(name: "jobfleet" | "jobfleet-worker"): string {
  const path = join(binDir(), name);
  try {
    accessSync(path, constants.X_OK);
  } catch {
    throw new Error(`${path} is missing: build the workspace (cargo build) or set JOBFLEET_BIN_DIR`);
  }
  return path;
}

const children = new Set<ChildProcess>();
// Whatever happens to the test process, its servers and workers go with it.
process.on("exit", () => {
  for (const child of children) child.kill("SIGKILL");
});

function track(child: ChildProcess): ChildProcess {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Resolves once `child` has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Stops a child: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited(child);
  clearTimeout(timer);
}

/** A loopback port nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` until it returns something other than `undefined`, `null`
 * or `false` (bounded: fails after `timeoutMs`).
 */
export async function waitUntil<T>(
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  what: string,
  timeoutMs = 10_000,
  intervalMs = 20,
): Promise<T> {
  const end = performance.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== null && value !== false) return value;
    if (performance.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await pause(intervalMs);
  }
}

/** A queue name of the test's own. */
export function uniqueQueue(stem: string): string {
  return `node-${stem}-${randomBytes(4).toString("hex")}`;
}

/** A redis-server of our own on a free loopback port, without persistence. */
export class RedisServer {
  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly process: ChildProcess,
  ) {}

  /** The server's URL. */
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /**
   * Starts one and returns once it answers PING. `extra` arguments go to
   * redis-server; `fixedPort` is used instead of a free port of its own.
   */
  static async start(dir: string, extra: readonly string[] = [], fixedPort?: number): Promise<RedisServer> {
    let lastLog = "";
    for (let attempt = 0; attempt < (fixedPort === undefined ? 5 : 1); attempt++) {
      const port = fixedPort ?? (await freePort());
      const log = join(dir, `redis-${port}.log`);
      const child = track(
        spawn(
          "redis-server",
          [
            "--port",
            String(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir,
            "--logfile",
            log,
            ...extra,
          ],
          { stdio: "ignore" },
        ),
      );
      const started = await new Promise<boolean>((resolve) => {
        child.once("error", () => resolve(false));
        void ping(port, child).then(resolve);
      });
      if (started) return new RedisServer(port, dir, child);
      await stopChild(child);
      try {
        lastLog = readFileSync(log, "utf8").slice(-2000);
      } catch {
        lastLog = "(no log; is redis-server on PATH?)";
      }
    }
    throw new Error(`redis-server did not start:\n${lastLog}`);
  }

  /** Stops the server. */
  async stop(): Promise<void> {
    await stopChild(this.process);
  }
}

/** Whether a server on `port` answers PING within 10 s (false once `child` exits). */
async function ping(port: number, child: ChildProcess): Promise<boolean> {
  const end = performance.now() + 10_000;
  while (performance.now() < end && child.exitCode === null) {
    const answer = await new Promise<string>((resolve) => {
      const socket = connect({ port, host: "127.0.0.1" });
      let text = "";
      socket.setEncoding("utf8");
      socket.once("connect", () => socket.write("PING\r\n"));
      socket.on("data", (chunk: string) => {
        text += chunk;
        if (text.includes("\r\n")) socket.destroy();
      });
      socket.once("error", () => resolve(""));
      socket.once("close", () => resolve(text));
    });
    // +PONG, or -NOAUTH from a server that wants a password: both are answers.
    if (answer.startsWith("+PONG") || answer.startsWith("-NOAUTH")) return true;
    await pause(20);
  }
  return false;
}

/** A running `jobfleet-worker`. */
export class Worker {
  constructor(
    readonly process: ChildProcess,
    /** Its worker id, as registered in the queue's workers set. */
    readonly id: string,
    readonly log: string,
  ) {}

  /** Its process id. */
  get pid(): number {
    return this.process.pid ?? -1;
  }

  /** Stops it gracefully (SIGTERM). */
  stop(): Promise<void> {
    return stopChild(this.process);
  }

  /** Kills it at once (SIGKILL), as a crash would. */
  async kill(): Promise<void> {
    this.process.kill("SIGKILL");
    await exited(this.process);
  }
}

/** What one CLI run printed. */
export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * One test file's world: a private redis-server, a temporary folder, and
 * the workers, clients and connections its tests start (all stopped by
 * {@link TestEnv.stop}).
 */
export class TestEnv {
  readonly #workers: Worker[] = [];
  readonly #closers: Array<() => Promise<void> | void> = [];

  private constructor(
    readonly server: RedisServer,
    readonly dir: string,
    /** A plain ioredis connection, to look at what the client wrote. */
    readonly redis: Redis,
  ) {}

  /** Starts a private redis-server (extra arguments go to it). */
  static async start(...extra: string[]): Promise<TestEnv> {
    const dir = mkdtempSync(join(tmpdir(), "jobfleet-node-test-"));
    let server: RedisServer;
    try {
      server = await RedisServer.start(dir, extra);
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      throw e;
    }
    const redis = new Redis(server.url);
    redis.on("error", () => undefined);
    return new TestEnv(server, dir, redis);
  }

  /** The server's URL. */
  get url(): string {
    return this.server.url;
  }

  /** A client on the test server, closed with the env. */
  client(options: ClientOptions = {}): Client {
    const client = new Client(this.url, options);
    this.#closers.push(() => client.close());
    return client;
  }

  /** Runs `close` when the env stops. */
  onStop(close: () => Promise<void> | void): void {
    this.#closers.push(close);
  }

  /**
   * Starts a worker on `queue` (extra arguments go to it) and returns once
   * it has registered there.
   */
  async worker(queue: string, args: readonly string[] = [], prefix = DEFAULT_PREFIX): Promise<Worker> {
    const members = `${prefix}:{${queue}}:workers`;
    const before = new Set(await this.redis.zrange(members, "0", "-1"));
    const log = join(this.dir, `worker-${this.#workers.length}-${queue}.log`);
    const out = openSync(log, "w");
    const child = track(
      spawn(
        binary("jobfleet-worker"),
        [
          "--redis",
          this.url,
          "--prefix",
          prefix,
          "--queue",
          queue,
          "--concurrency",
          "8",
          "--grace",
          "2s",
          "--log-level",
          "warn",
          ...args,
        ],
        { stdio: ["ignore", out, out] },
      ),
    );
    closeSync(out);
    try {
      const id = await waitUntil(async () => {
        if (child.exitCode !== null) {
          throw new Error(`the worker exited with ${child.exitCode}:\n${readFileSync(log, "utf8")}`);
        }
        const now = await this.redis.zrange(members, "0", "-1");
        return now.find((member) => !before.has(member));
      }, `a worker to register on ${queue}`);
      const worker = new Worker(child, id, log);
      this.#workers.push(worker);
      return worker;
    } catch (e) {
      child.kill("SIGKILL");
      throw e;
    }
  }

  /** Runs the `jobfleet` CLI against the test server. */
  cli(args: readonly string[], input?: string): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = track(spawn(binary("jobfleet"), ["--redis", this.url, ...args], { stdio: "pipe" }));
      let stdout = "";
      let stderr = "";
      child.stdout?.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
      child.stderr?.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
      child.once("error", reject);
      child.once("close", (code) => resolve({ code, stdout, stderr }));
      child.stdin?.end(input ?? "");
    });
  }

  /** Runs the CLI and returns its stdout, failing when it exits other than 0. */
  async cliOk(args: readonly string[]): Promise<string> {
    const result = await this.cli(args);
    if (result.code !== 0) {
      throw new Error(`jobfleet ${args.join(" ")} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    }
    return result.stdout;
  }

  /** Stops every worker, client and connection, the server, and removes the folder. */
  async stop(): Promise<void> {
    await Promise.all(this.#workers.map((w) => w.stop()));
    for (const close of this.#closers.reverse()) await close();
    this.redis.disconnect();
    await this.server.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A job HASH key, written out here independently of the client. */
export function jobKey(queue: string, id: string, shard = 0, prefix = DEFAULT_PREFIX): string {
  return `${prefix}:{${shard === 0 ? queue : `${queue}#${shard}`}}:job:${id}`;
}

/** Whether anyone is subscribed to `channel` on the test server. */
export async function listening(env: TestEnv, channel: string): Promise<boolean> {
  const reply = (await env.redis.call("PUBSUB", "NUMSUB", channel)) as [string, number];
  return reply[1] > 0;
}

/** Typed errors: bad arguments, an unreachable Redis, a Redis Cluster node. */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import {
  Client,
  ClusterNotSupportedError,
  ConnectionError,
  InvalidArgumentError,
  JobfleetError,
  type JobSpec,
} from "jobfleet";

import { freePort, RedisServer, TestEnv, uniqueQueue } from "./support.js";

describe("invalid arguments", () => {
  let env: TestEnv;
  let client: Client;

  before(async () => {
    env = await TestEnv.start();
    client = env.client();
  });
  after(() => env.stop());

  const cycle: Record<string, unknown> = { a: 1 };
  cycle["self"] = cycle;
  const badPayloads: Array<[string, unknown, RegExp]> = [
    ["a BigInt", { n: 10n }, /BigInt/],
    ["a cycle", cycle, /circular/i],
    ["NaN", { x: Number.NaN }, /NaN is not a JSON number/],
    ["Infinity", [Number.POSITIVE_INFINITY], /Infinity/],
    ["a function", { f: () => 1 }, /function/],
    ["a symbol", Symbol("s"), /symbol/],
  ];
  for (const [what, payload, message] of badPayloads) {
    test(`a payload with ${what} is refused`, async () => {
      await assert.rejects(client.submit("echo", payload, { queue: uniqueQueue("payload") }), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError);
        assert.ok(e instanceof JobfleetError);
        assert.match(e.message, /payload is not JSON-serialisable/);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  test("bad queue names, ids, tasks and options are refused before anything is sent", async () => {
    const queue = uniqueQueue("args");
    const refused: Array<[string, () => Promise<unknown>, RegExp]> = [
      ["a queue with a space", () => client.submit("echo", {}, { queue: "bad queue" }), /invalid queue name/],
      ["a queue with braces", () => client.submit("echo", {}, { queue: "a{b}" }), /invalid queue name/],
      ["a queue with #", () => client.status("x", { queue: "q#1" }), /invalid queue name/],
      ["an empty queue", () => client.wait("x", { queue: "" }), /invalid queue name/],
      ["a 65-character queue", () => client.cancel("x", { queue: "q".repeat(65) }), /invalid queue name/],
      ["a key with whitespace", () => client.submit("echo", {}, { queue, key: "a b" }), /invalid job id/],
      ["a 201-byte key", () => client.submit("echo", {}, { queue, key: "é".repeat(101) }), /invalid job id/],
      ["a key with a lone surrogate", () => client.submit("echo", {}, { queue, key: "a\uD800" }), /invalid job id/],
      ["an empty task", () => client.submit("", {}, { queue }), /invalid task name/],
      ["zero attempts", () => client.submit("echo", {}, { queue, maxAttempts: 0 }), /maxAttempts/],
      ["fractional attempts", () => client.submit("echo", {}, { queue, maxAttempts: 1.5 }), /maxAttempts/],
      ["a negative delay", () => client.submit("echo", {}, { queue, delay: -1 }), /delay/],
      ["a delay over 100 years", () => client.submit("echo", {}, { queue, delay: 3.2e12 }), /100 years/],
      ["a NaN timeout", () => client.submit("echo", {}, { queue, timeout: Number.NaN }), /timeout/],
      ["a bad traceparent", () => client.submit("echo", {}, { queue, traceparent: "00-abc-def-01" }), /traceparent/],
      [
        "a payload over the limit",
        () => env.client({ maxPayloadBytes: 10 }).submit("echo", "x".repeat(20), { queue }),
        /over the 10 byte limit/,
      ],
      ["a bad wait timeout", () => client.wait("x", { queue, timeout: -5 }), /timeout/],
    ];
    for (const [what, call, message] of refused) {
      await assert.rejects(call(), (e: unknown) => {
        assert.ok(e instanceof InvalidArgumentError, `${what}: expected InvalidArgumentError, got ${String(e)}`);
        assert.match(e.message, message, what);
        return true;
      });
    }
    // One bad job in a batch submits none, and the error names it.
    const batch: JobSpec[] = [
      { task: "echo", payload: 1 },
      { task: "echo", payload: 2 },
      { task: "echo", payload: 3n },
    ];
    await assert.rejects(
      client.submitMany(batch, { queue }),
      /^InvalidArgumentError: job #3: payload is not JSON-serialisable/,
    );
    assert.equal(await env.redis.exists(`jobfleet:{${queue}}:pending`), 0);
    assert.equal(await env.redis.sismember("jobfleet:queues", queue), 0);
  });

  test("bad client settings are refused", () => {
    assert.throws(() => new Client("http://127.0.0.1:6379"), InvalidArgumentError);
    assert.throws(() => new Client("redis+sentinel://127.0.0.1:26379/main"), /Sentinel and Cluster are not supported/);
    assert.throws(() => new Client("redis://10.0.0.1:7000,10.0.0.2:7000"), /several hosts: Redis Cluster/);
    assert.throws(() => new Client(env.url, { prefix: "a{b}" }), /invalid key prefix/);
    assert.throws(() => new Client(env.url, { queue: "no spaces" }), /invalid queue name/);
    assert.throws(() => new Client(env.url, { maxPayloadBytes: -1 }), /maxPayloadBytes/);
  });
});

describe("connection errors", () => {
  test("a refused connection fails fast with a ConnectionError naming the server, not its password", async () => {
    const port = await freePort();
    const client = new Client(`redis://app:s3cret-pw@127.0.0.1:${port}/2`);
    try {
      assert.equal(client.url, `redis://app:***@127.0.0.1:${port}/2`);
      for (const call of [
        () => client.submit("echo", {}),
        () => client.status("some-id"),
        () => client.wait("some-id", { timeout: 60_000 }),
        () => client.cancel("some-id"),
      ]) {
        const started = performance.now();
        const error = await call().then(
          () => assert.fail("the call succeeded without a server"),
          (e: unknown) => e,
        );
        const took = performance.now() - started;
        assert.ok(error instanceof ConnectionError, `expected ConnectionError, got ${String(error)}`);
        assert.ok(error instanceof JobfleetError);
        assert.match(
          error.message,
          new RegExp(`cannot reach Redis at redis://app:\\*\\*\\*@127\\.0\\.0\\.1:${port}/2`),
        );
        assert.match(error.message, /ECONNREFUSED/);
        assert.doesNotMatch(error.message, /s3cret/);
        assert.equal(error.url, client.url);
        assert.ok(error.cause instanceof Error);
        assert.ok(took < 2000, `it took ${took} ms to fail`);
      }
    } finally {
      await client.close();
    }
  });

  /** Runs `body` with a redis-server of its own (extra arguments go to it; `port`: fixed), then removes it. */
  async function withServer(
    extra: readonly string[],
    body: (server: RedisServer | undefined, start: () => Promise<RedisServer>) => Promise<void>,
    port?: number,
  ): Promise<void> {
    const dir = mkdtempSync(join(tmpdir(), "jobfleet-node-server-"));
    let server: RedisServer | undefined;
    const start = async (): Promise<RedisServer> => (server = await RedisServer.start(dir, extra, port));
    try {
      await body(port === undefined ? await start() : undefined, start);
    } finally {
      await server?.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  }

  test("refused credentials are a ConnectionError that does not show the password", () =>
    withServer(["--requirepass", "right-pw"], async (server) => {
      const port = server?.port ?? 0;
      const wrong = new Client(`redis://:wrong-pw@127.0.0.1:${port}`);
      const right = new Client(`redis://:right-pw@127.0.0.1:${port}`);
      try {
        await assert.rejects(wrong.submit("echo", {}), (e: unknown) => {
          assert.ok(e instanceof ConnectionError, `expected ConnectionError, got ${String(e)}`);
          assert.match(e.message, /WRONGPASS/);
          assert.match(e.message, new RegExp(`redis://:\\*\\*\\*@127\\.0\\.0\\.1:${port}`));
          assert.doesNotMatch(e.message, /wrong-pw|right-pw/);
          return true;
        });
        assert.equal(await right.shardCount("q"), 1);
      } finally {
        await wrong.close();
        await right.close();
      }
    }));

  test("a client works once the server it could not reach is up", async () => {
    const port = await freePort();
    await withServer(
      [],
      async (_none, start) => {
        const client = new Client(`redis://127.0.0.1:${port}`);
        try {
          await assert.rejects(client.shardCount("q"), ConnectionError);
          await start();
          assert.equal(await client.shardCount("q"), 1);
        } finally {
          await client.close();
        }
      },
      port,
    );
  });

  test("a Redis Cluster node is refused with ClusterNotSupportedError", () =>
    withServer(["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"], async (server) => {
      const url = server?.url ?? "";
      const client = new Client(url);
      try {
        await assert.rejects(client.submit("echo", {}), (e: unknown) => {
          assert.ok(e instanceof ClusterNotSupportedError, `expected ClusterNotSupportedError, got ${String(e)}`);
          assert.match(e.message, /Redis Cluster node \(cluster_enabled:1\)/);
          assert.ok(e.message.includes(url));
          return true;
        });
      } finally {
        await client.close();
      }
    }));
});

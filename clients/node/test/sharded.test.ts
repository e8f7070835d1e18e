/** Sharded queues: placement by FNV-1a, keys across a raised shard count, status and wait on the right shard. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client, fnv1a32, shardOf } from "jobfleet";

import { jobKey, TestEnv, uniqueQueue } from "./support.js";

/** FNV-1a (32 bit) written out again here, with BigInt, to check the client's. */
function referenceFnv(text: string): number {
  let hash = 0x811c9dc5n;
  for (const byte of Buffer.from(text, "utf8")) {
    hash = ((hash ^ BigInt(byte)) * 0x01000193n) & 0xffffffffn;
  }
  return Number(hash);
}

describe("sharded queues", () => {
  let env: TestEnv;

  before(async () => {
    env = await TestEnv.start();
  });
  after(() => env.stop());

  test("FNV-1a matches its published test vectors and the reference", () => {
    assert.equal(fnv1a32(""), 0x811c9dc5);
    assert.equal(fnv1a32("a"), 0xe40c292c);
    assert.equal(fnv1a32("foobar"), 0xbf9cf968);
    for (const id of ["invoice-42", "0193a5c2-7b1e-7cc0-9d1a-3f5e2b8c4d6e", "ünïcødé-🦀"]) {
      assert.equal(fnv1a32(id), referenceFnv(id));
      assert.equal(shardOf(id, 4), referenceFnv(id) % 4);
    }
  });

  test("jobs spread evenly over the shards, each on its id's shard, and all complete", async () => {
    const queue = uniqueQueue("spread");
    await env.cliOk(["queue", "create", queue, "--shards", "4"]);
    const client = env.client();
    assert.equal(await client.shardCount(queue), 4);
    const ids = await client.submitMany(
      Array.from({ length: 40 }, (_, i) => ({ task: "echo", payload: { i } })),
      { queue },
    );
    const perShard = [0, 0, 0, 0];
    for (const id of ids) {
      const shard = referenceFnv(id) % 4;
      perShard[shard] = (perShard[shard] ?? 0) + 1;
      assert.equal(await env.redis.exists(jobKey(queue, id, shard)), 1, `job ${id} on shard ${shard}`);
    }
    // Ids made by the client take the shards in turn.
    assert.deepEqual(perShard, [10, 10, 10, 10]);
    for (let shard = 1; shard < 4; shard++) {
      assert.equal(await env.redis.llen(`jobfleet:{${queue}#${shard}}:pending`), 10);
    }
    await env.worker(queue);
    const jobs = await Promise.all(ids.map((id) => client.wait(id, { queue, timeout: 30_000 })));
    jobs.forEach((job, i) => {
      assert.equal(job.state, "completed");
      assert.deepEqual(job.result, { i });
    });
    const sample = ids[7] ?? "";
    assert.equal((await client.status(sample, { queue }))?.state, "completed");
  });

  test("a key goes to its hash's shard, as the Rust CLI places it", async () => {
    const queue = uniqueQueue("keys");
    await env.cliOk(["queue", "create", queue, "--shards", "4"]);
    const client = env.client();
    const keys = ["order-1", "order-2", "order-3", "order-4", "order-5", "order-6"];
    for (const key of keys) assert.equal(await client.submit("echo", { key }, { queue, key }), key);
    for (const key of keys) assert.equal(await env.redis.exists(jobKey(queue, key, referenceFnv(key) % 4)), 1);
    const cliKey = "from-the-cli";
    const out = await env.cliOk(["submit", "--queue", queue, "--key", cliKey, "echo", '{"cli":true}']);
    assert.equal(out.trim(), cliKey);
    assert.equal(await env.redis.exists(jobKey(queue, cliKey, shardOf(cliKey, 4))), 1);
    assert.deepEqual((await client.status(cliKey, { queue }))?.payload, { cli: true });
    // Submitting the CLI's key again from Node finds its job: nothing new.
    assert.equal(await client.submit("echo", { other: true }, { queue, key: cliKey }), cliKey);
    assert.deepEqual((await client.status(cliKey, { queue }))?.payload, { cli: true });
  });

  test("a key used before the shard count was raised still finds its job", async () => {
    const queue = uniqueQueue("raised");
    // A key whose hash, among 4 shards, is not shard 0.
    const key = ["k-1", "k-2", "k-3", "k-4", "k-5"].find((k) => referenceFnv(k) % 4 !== 0) ?? "";
    const before = env.client();
    assert.equal(await before.submit("echo", { first: true }, { queue, key }), key);
    assert.equal(await env.redis.exists(jobKey(queue, key, 0)), 1);
    await env.cliOk(["queue", "create", queue, "--shards", "4"]);
    const after: Client = env.client(); // reads the new count at once
    assert.equal(await after.shardCount(queue), 4);
    assert.equal(await after.submit("echo", { second: true }, { queue, key }), key);
    assert.equal(await env.redis.exists(jobKey(queue, key, referenceFnv(key) % 4)), 0);
    assert.equal(await env.redis.llen(`jobfleet:{${queue}}:pending`), 1);
    const job = await after.status(key, { queue });
    assert.deepEqual(job?.payload, { first: true });
    assert.equal(await after.cancel(key, { queue }), "cancelled");
    assert.equal(await env.redis.hget(jobKey(queue, key, 0), "state"), "cancelled");
  });
});

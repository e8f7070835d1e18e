/** Cancelling jobs: waiting ones at once, running ones through their worker. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client, JobFailedError } from "jobfleet";

import { jobKey, TestEnv, uniqueQueue, waitUntil } from "./support.js";

describe("cancel", () => {
  let env: TestEnv;
  let client: Client;

  before(async () => {
    env = await TestEnv.start();
    client = env.client();
  });
  after(() => env.stop());

  test("a pending job (no worker) is cancelled, and its waiter told", async () => {
    const queue = uniqueQueue("pending");
    const id = await client.submit("echo", { never: "runs" }, { queue });
    assert.equal(await client.cancel(id, { queue }), "cancelled");
    const job = await client.status(id, { queue });
    assert.equal(job?.state, "cancelled");
    assert.ok(job?.finishedMs !== undefined);
    // Cancelled in place: the id stays in pending until a claim skips it.
    assert.equal(await env.redis.hget(jobKey(queue, id), "queued"), "1");
    await assert.rejects(client.wait(id, { queue, timeout: 5000 }), (e: unknown) => {
      assert.ok(e instanceof JobFailedError);
      assert.equal(e.job.state, "cancelled");
      assert.match(e.message, /ended cancelled/);
      return true;
    });
    assert.equal(await client.cancel(id, { queue }), "already_final");
    assert.equal(await client.cancel("no-such-job", { queue }), "not_found");
    assert.equal(await env.redis.hget(`jobfleet:{${queue}}:stats`, "cancelled"), "1");

    // A worker started now skips it and runs what came after.
    await env.worker(queue);
    const next = await client.submit("echo", { runs: true }, { queue });
    assert.equal((await client.wait(next, { queue, timeout: 20_000 })).state, "completed");
    const after = await client.status(id, { queue });
    assert.equal(after?.state, "cancelled");
    assert.equal(after?.attempts, 0);
  });

  test("a scheduled job is cancelled and leaves the schedule", async () => {
    const queue = uniqueQueue("scheduled");
    const id = await client.submit("echo", {}, { queue, delay: 60_000 });
    assert.equal((await client.status(id, { queue }))?.state, "scheduled");
    const waiting = client.wait(id, { queue, timeout: 10_000 }).catch((e: unknown) => e);
    assert.equal(await client.cancel(id, { queue }), "cancelled");
    assert.equal(await env.redis.zscore(`jobfleet:{${queue}}:scheduled`, id), null);
    const outcome = await waiting;
    assert.ok(outcome instanceof JobFailedError);
    assert.equal(outcome.job.state, "cancelled");
  });

  test("a running job is stopped by its worker and ends cancelled", async () => {
    const queue = uniqueQueue("running");
    await env.worker(queue);
    const id = await client.submit("sleep", { ms: 30_000 }, { queue });
    await waitUntil(async () => (await client.status(id, { queue }))?.state === "active", "the job to start");
    const waiting = client.wait(id, { queue, timeout: 20_000 }).catch((e: unknown) => e);
    assert.equal(await client.cancel(id, { queue }), "cancelling");
    const outcome = await waiting;
    assert.ok(outcome instanceof JobFailedError, `expected JobFailedError, got ${String(outcome)}`);
    assert.equal(outcome.job.state, "cancelled");
    assert.equal(outcome.job.error, "cancelled while running");
  });
});

/** Faults: a worker killed while it runs a Node-submitted job. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client } from "jobfleet";

import { listening, TestEnv, uniqueQueue, waitUntil } from "./support.js";

describe("faults", () => {
  let env: TestEnv;
  let client: Client;

  before(async () => {
    env = await TestEnv.start();
    client = env.client();
  });
  after(() => env.stop());

  test("a worker killed -9 mid-job: another recovers it, and wait still returns completed", async () => {
    const queue = uniqueQueue("kill9");
    const first = await env.worker(queue);
    const id = await client.submit("sleep", { ms: 1500 }, { queue });
    const running = await waitUntil(async () => {
      const job = await client.status(id, { queue });
      return job?.state === "active" ? job : undefined;
    }, "the job to start");
    assert.equal(running.worker, first.id);
    const waiting = client.wait(id, { queue, timeout: 30_000 });
    await waitUntil(() => listening(env, `jobfleet:{${queue}}:events`), "the wait to subscribe");

    await first.kill();
    // A worker that declares a silent peer dead after 2 s takes the job over.
    const second = await env.worker(queue, ["--dead-after", "2s", "--heartbeat", "500ms"]);
    const job = await waiting;
    assert.equal(job.state, "completed");
    assert.deepEqual(job.result, { slept_ms: 1500 });
    assert.equal(job.worker, second.id);
    assert.equal(job.recoveries, 1);
    // The attempt its first worker died in is not counted.
    assert.equal(job.attempts, 1);
    assert.equal(await env.redis.hget(`jobfleet:{${queue}}:stats`, "recovered"), "1");
  });
});

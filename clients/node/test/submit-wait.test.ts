/** Submitting and waiting against real workers: results, batches, delays, idempotency, failures, timeouts. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client, ConnectionError, JobFailedError, JobNotFoundError, WaitTimeoutError, type Job } from "jobfleet";

import { jobKey, listening, TestEnv, uniqueQueue, waitUntil } from "./support.js";

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe("submit and wait", () => {
  let env: TestEnv;
  let client: Client;

  before(async () => {
    env = await TestEnv.start();
    client = env.client();
  });
  after(() => env.stop());

  test("an echo job completes with its payload as the result", async () => {
    const queue = uniqueQueue("echo");
    await env.worker(queue);
    const payload = { text: "héllo / wörld", n: 42, nested: [1, { ok: true }], none: null };
    const id = await client.submit("echo", payload, { queue });
    assert.match(id, UUID_V7);
    const job = await client.wait(id, { queue, timeout: 20_000 });
    assert.equal(job.state, "completed");
    assert.deepEqual(job.result, payload);
    assert.deepEqual(job.payload, payload);
    assert.equal(job.error, undefined);
    assert.equal(job.attempts, 1);
    assert.equal(job.task, "echo");
    assert.ok(job.worker !== undefined && job.worker.length > 0);
    assert.ok(job.finishedMs !== undefined && job.createdMs !== undefined && job.finishedMs >= job.createdMs);
    // A wait on a job that is already final returns it at once.
    assert.deepEqual(await client.wait(id, { queue, timeout: 0 }), job);
  });

  test("a batch of 200 jobs gets 200 distinct ordered ids and all complete", async () => {
    const queue = uniqueQueue("batch");
    await env.worker(queue);
    const ids = await client.submitMany(
      Array.from({ length: 200 }, (_, i) => ({ task: "echo", payload: { i } })),
      { queue },
    );
    assert.equal(ids.length, 200);
    assert.equal(new Set(ids).size, 200);
    for (const id of ids) assert.match(id, UUID_V7);
    // UUID v7 ids made by one producer sort in the order they were made.
    assert.deepEqual([...ids].sort(), ids);
    const jobs = await Promise.all(ids.map((id) => client.wait(id, { queue, timeout: 30_000 })));
    jobs.forEach((job, i) => {
      assert.equal(job.state, "completed");
      assert.deepEqual(job.result, { i });
    });
    assert.equal(await env.redis.hget(`jobfleet:{${queue}}:stats`, "submitted"), "200");
    assert.equal(await env.redis.sismember("jobfleet:queues", queue), 1);
  });

  test("a delayed job is scheduled, then runs when its time comes", async () => {
    const queue = uniqueQueue("delay");
    await env.worker(queue);
    const id = await client.submit("echo", { later: true }, { queue, delay: 1500 });
    const scheduled = await client.status(id, { queue });
    assert.ok(scheduled !== null);
    // The worker's promote loop moves it only once due (Redis' clock).
    assert.equal(scheduled.state, "scheduled");
    assert.ok(scheduled.createdMs !== undefined);
    assert.equal(scheduled.runAtMs, scheduled.createdMs + 1500);
    assert.notEqual(await env.redis.zscore(`jobfleet:{${queue}}:scheduled`, id), null);
    const job = await client.wait(id, { queue, timeout: 20_000 });
    assert.equal(job.state, "completed");
    assert.deepEqual(job.result, { later: true });
    assert.ok(job.startedMs !== undefined && job.startedMs >= scheduled.runAtMs);
  });

  test("an idempotency key returns the same id and creates one job", async () => {
    const queue = uniqueQueue("key"); // no worker: the job stays pending
    const key = `invoice-${Date.now()}`;
    const first = await client.submit("echo", { version: 1 }, { queue, key });
    const second = await client.submit("echo", { version: 2 }, { queue, key });
    const [third] = await client.submitMany([{ task: "echo", payload: { version: 3 }, key }], { queue });
    assert.equal(first, key);
    assert.equal(second, key);
    assert.equal(third, key);
    assert.equal(await env.redis.llen(`jobfleet:{${queue}}:pending`), 1);
    assert.equal(await env.redis.hget(`jobfleet:{${queue}}:stats`, "submitted"), "1");
    const job = await client.status(key, { queue });
    assert.deepEqual(job?.payload, { version: 1 });
    assert.equal(job?.state, "pending");
  });

  test("a job's options land in its record", async () => {
    const queue = uniqueQueue("options"); // no worker
    const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    const id = await client.submit("noop", undefined, {
      queue,
      maxAttempts: 7,
      timeout: 1234,
      keyTtl: 1500,
      traceparent,
    });
    const fields = await env.redis.hgetall(jobKey(queue, id));
    assert.equal(fields["max_attempts"], "7");
    assert.equal(fields["timeout_ms"], "1234");
    assert.equal(fields["key_ttl_s"], "2"); // rounded up to whole seconds
    assert.equal(fields["traceparent"], traceparent);
    assert.equal(fields["payload"], "null");
    const job = await client.status(id, { queue });
    assert.equal(job?.maxAttempts, 7);
    assert.equal(job?.timeoutMs, 1234);
    assert.equal(job?.keyTtlS, 2);
    assert.equal(job?.traceparent, traceparent);
  });

  test("a failing task ends dead, and wait throws JobFailedError with its error", async () => {
    const queue = uniqueQueue("fail");
    await env.worker(queue, ["--backoff", "50ms"]);
    const permanent = await client.submit("fail", { message: "no such invoice", permanent: true }, { queue });
    const retried = await client.submit("fail", { message: "flaky upstream" }, { queue, maxAttempts: 2 });
    const failed = async (id: string): Promise<Job> => {
      const error = await client.wait(id, { queue, timeout: 20_000 }).then(
        () => assert.fail("wait resolved for a dead job"),
        (e: unknown) => e,
      );
      assert.ok(error instanceof JobFailedError, `expected JobFailedError, got ${String(error)}`);
      assert.match(error.message, /ended dead/);
      return error.job;
    };
    const dead = await failed(permanent);
    assert.equal(dead.state, "dead");
    assert.equal(dead.error, "no such invoice");
    assert.equal(dead.attempts, 1);
    const exhausted = await failed(retried);
    assert.equal(exhausted.error, "flaky upstream");
    assert.equal(exhausted.attempts, 2);
    assert.equal((await client.status(permanent, { queue }))?.state, "dead");
  });

  test("a task no worker runs is not claimed: it waits, parked for a worker that runs it", async () => {
    const queue = uniqueQueue("unknown");
    await env.worker(queue);
    const id = await client.submit("no-such-task", {}, { queue });
    const parked = `jobfleet:{${queue}}:parked:no-such-task`;
    await waitUntil(async () => (await env.redis.lrange(parked, 0, -1)).includes(id), "the job to be parked");
    await assert.rejects(client.wait(id, { queue, timeout: 300 }), (e: unknown) => {
      assert.ok(e instanceof WaitTimeoutError);
      return true;
    });
    const job = await client.status(id, { queue });
    assert.equal(job?.state, "pending");
    assert.equal(job?.attempts, 0);
  });

  test("wait gives up with WaitTimeoutError, and the job is untouched", async () => {
    const queue = uniqueQueue("timeout"); // no worker
    const id = await client.submit("echo", {}, { queue });
    const started = performance.now();
    await assert.rejects(client.wait(id, { queue, timeout: 300 }), (e: unknown) => {
      assert.ok(e instanceof WaitTimeoutError);
      assert.equal(e.id, id);
      assert.equal(e.timeout, 300);
      assert.equal(e.state, "pending");
      return true;
    });
    const took = performance.now() - started;
    assert.ok(took >= 290 && took < 5000, `the wait took ${took} ms`);
    assert.equal((await client.status(id, { queue }))?.state, "pending");
  });

  test("an unknown id: status is null and wait throws JobNotFoundError", async () => {
    const queue = uniqueQueue("missing");
    assert.equal(await client.status("never-submitted", { queue }), null);
    await assert.rejects(client.wait("never-submitted", { queue, timeout: 5000 }), JobNotFoundError);
  });

  test("a job completed and deleted at once (retention 0) is still seen by its waiter", async () => {
    const queue = uniqueQueue("retention0");
    const ids = await client.submitMany(
      Array.from({ length: 20 }, (_, i) => ({ task: "echo", payload: { i } })),
      { queue },
    );
    const waits = Promise.all(ids.map((id) => client.wait(id, { queue, timeout: 20_000 })));
    await waitUntil(() => listening(env, `jobfleet:{${queue}}:events`), "the waits to subscribe");
    // Each record is deleted as its job completes: the event is all there is.
    await env.worker(queue, ["--keep-completed", "0s"]);
    const jobs = await waits;
    jobs.forEach((job, i) => {
      assert.equal(job.state, "completed");
      assert.deepEqual(job.result, { i });
    });
    assert.equal(await env.redis.exists(jobKey(queue, ids[0] ?? "")), 0);
  });

  test("closing the client ends the waits in progress", async () => {
    const queue = uniqueQueue("close"); // no worker
    const own = env.client();
    const id = await own.submit("echo", {}, { queue });
    const waiting = own.wait(id, { queue }).catch((e: unknown) => e);
    await waitUntil(() => listening(env, `jobfleet:{${queue}}:events`), "the wait to subscribe");
    await own.close();
    const outcome = await waiting;
    assert.ok(outcome instanceof ConnectionError, `expected ConnectionError, got ${String(outcome)}`);
    assert.match(outcome.message, /is closed/);
    await assert.rejects(own.status(id, { queue }), ConnectionError);
  });

  test("a wait survives its events connection being killed and reads the state again", async () => {
    const queue = uniqueQueue("resubscribe"); // no worker
    const name = `resubscribe-${process.pid}`;
    const own = env.client({ name });
    const id = await own.submit("echo", {}, { queue });
    const waiting = own.wait(id, { queue, timeout: 10_000 }).then(
      () => "completed",
      (e: unknown) => e,
    );
    await waitUntil(() => listening(env, `jobfleet:{${queue}}:events`), "the wait to subscribe");
    // Kill the client's events connection, then publish the job's final
    // event before it can have resubscribed: only a re-read finds it.
    const clients = String(await env.redis.client("LIST")).split("\n");
    const line = clients.find((l) => l.includes(` name=${name}:events `));
    const clientId = /^id=(\d+)/.exec(line ?? "")?.[1];
    assert.ok(clientId !== undefined, "the events connection is named in CLIENT LIST");
    assert.equal(await env.redis.client("KILL", "ID", clientId), 1);
    assert.equal(await own.cancel(id, { queue }), "cancelled");
    const outcome = await waiting;
    assert.ok(outcome instanceof JobFailedError, `expected JobFailedError, got ${String(outcome)}`);
    assert.equal(outcome.job.state, "cancelled");
  });
});

/** Interoperability with the Rust side: the CLI reads and waits on Node jobs, Node waits on CLI jobs. */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Client, JobFailedError } from "jobfleet";

import { TestEnv, uniqueQueue } from "./support.js";

/** What `jobfleet status ID --json` prints. */
interface CliJob {
  id: string;
  queue: string;
  task: string;
  state: string;
  payload: unknown;
  attempts: number;
  max_attempts: number;
  timeout_ms: number;
  created_ms: number;
  result?: unknown;
  error?: string;
}

describe("interop with the Rust CLI", () => {
  let env: TestEnv;
  let client: Client;

  before(async () => {
    env = await TestEnv.start();
    client = env.client();
  });
  after(() => env.stop());

  test("the CLI reads a Node-submitted job, before and after it ran", async () => {
    const queue = uniqueQueue("cli-reads");
    const payload = { text: "from node", list: [1, 2, 3] };
    const id = await client.submit("echo", payload, { queue, maxAttempts: 5, timeout: 7000 });
    const pending = JSON.parse(await env.cliOk(["status", id, "--queue", queue, "--json"])) as CliJob;
    const mine = await client.status(id, { queue });
    assert.equal(pending.id, id);
    assert.equal(pending.queue, queue);
    assert.equal(pending.task, "echo");
    assert.equal(pending.state, "pending");
    assert.deepEqual(pending.payload, payload);
    assert.equal(pending.max_attempts, 5);
    assert.equal(pending.timeout_ms, 7000);
    assert.equal(pending.created_ms, mine?.createdMs);
    // Without --queue the CLI finds it among the known queues.
    assert.equal((JSON.parse(await env.cliOk(["status", id, "--json"])) as CliJob).queue, queue);

    await env.worker(queue);
    // The Rust CLI waits on it too.
    const waited = await env.cli(["wait", id, "--queue", queue, "--timeout", "20s"]);
    assert.equal(waited.code, 0, waited.stderr);
    const done = JSON.parse(await env.cliOk(["status", id, "--queue", queue, "--json"])) as CliJob;
    assert.equal(done.state, "completed");
    assert.deepEqual(done.result, payload);
    assert.deepEqual((await client.wait(id, { queue, timeout: 5000 })).result, done.result);
  });

  test("Node waits on a job the CLI submitted", async () => {
    const queue = uniqueQueue("node-waits");
    await env.worker(queue);
    const id = (await env.cliOk(["submit", "--queue", queue, "echo", '{"from":"rust","n":7}'])).trim();
    const job = await client.wait(id, { queue, timeout: 20_000 });
    assert.equal(job.state, "completed");
    assert.deepEqual(job.result, { from: "rust", n: 7 });
    assert.equal(job.task, "echo");

    const delayed = (await env.cliOk(["submit", "--queue", queue, "--delay", "1s", "echo", '{"later":1}'])).trim();
    assert.equal((await client.status(delayed, { queue }))?.state, "scheduled");
    assert.deepEqual((await client.wait(delayed, { queue, timeout: 20_000 })).result, { later: 1 });
  });

  test("a CLI cancel reaches a Node waiter, and a Node cancel the CLI", async () => {
    const queue = uniqueQueue("cancels"); // no worker
    const fromNode = await client.submit("echo", {}, { queue });
    const waiting = client.wait(fromNode, { queue, timeout: 20_000 }).catch((e: unknown) => e);
    await env.cliOk(["cancel", fromNode, "--queue", queue]);
    const outcome = await waiting;
    assert.ok(outcome instanceof JobFailedError);
    assert.equal(outcome.job.state, "cancelled");

    const fromCli = (await env.cliOk(["submit", "--queue", queue, "echo", "{}"])).trim();
    assert.equal(await client.cancel(fromCli, { queue }), "cancelled");
    const shown = await env.cli(["wait", fromCli, "--queue", queue, "--timeout", "5s"]);
    assert.equal(shown.code, 1, "the CLI's wait reports a cancelled job as failed");
    assert.equal(
      (JSON.parse(await env.cliOk(["status", fromCli, "--queue", queue, "--json"])) as CliJob).state,
      "cancelled",
    );
  });
});

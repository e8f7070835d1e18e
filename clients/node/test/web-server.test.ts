/**
 * The web-server example, run as a real process against a real worker: a
 * POST submits a thumbnail job, and the browser's Server-Sent Events stream
 * delivers its completion.
 */

import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { get, type IncomingMessage } from "node:http";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { CLIENT_DIR, stopChild, TestEnv, uniqueQueue, waitUntil } from "./support.js";
import { gradientPng } from "./png.js";

/** One `job` event of the stream. */
interface JobEvent {
  id: string;
  state: string;
  result?: {
    input: { width: number; height: number; format: string };
    outputs: Array<{ path: string; width: number; height: number }>;
  };
  error?: string;
}

/** A browser's view of `GET /events`: the `job` events received so far. */
class EventStream {
  readonly events: JobEvent[] = [];
  #buffer = "";

  private constructor(private readonly response: IncomingMessage) {
    response.setEncoding("utf8");
    response.on("data", (text: string) => {
      this.#buffer += text;
      let end: number;
      while ((end = this.#buffer.indexOf("\n\n")) >= 0) {
        const frame = this.#buffer.slice(0, end);
        this.#buffer = this.#buffer.slice(end + 2);
        const lines = frame.split("\n");
        if (lines.includes("event: job")) {
          const data = lines.find((l) => l.startsWith("data: "));
          if (data !== undefined) this.events.push(JSON.parse(data.slice(6)) as JobEvent);
        }
      }
    });
  }

  /** Opens the stream and returns once the server has accepted it. */
  static open(url: string): Promise<EventStream> {
    return new Promise((resolve, reject) => {
      get(url, (response) => {
        assert.equal(response.statusCode, 200);
        assert.match(String(response.headers["content-type"]), /^text\/event-stream/);
        const stream = new EventStream(response);
        response.once("data", () => resolve(stream));
      }).once("error", reject);
    });
  }

  /** The event of job `id`, once it arrives. */
  eventOf(id: string): Promise<JobEvent> {
    return waitUntil(() => this.events.find((e) => e.id === id), `the event of job ${id}`, 30_000);
  }

  close(): void {
    this.response.destroy();
  }
}

describe("the web-server example", () => {
  let env: TestEnv;
  let server: ChildProcess;
  let base: string;
  let images: string;
  let thumbs: string;
  const queue = uniqueQueue("web");

  before(async () => {
    env = await TestEnv.start();
    images = join(env.dir, "images");
    thumbs = join(env.dir, "thumbs");
    mkdirSync(images);
    await env.worker(queue, ["--allow-dir", env.dir]);
    server = spawn(process.execPath, [join(CLIENT_DIR, "build", "examples", "web-server.js")], {
      env: { ...process.env, JOBFLEET_REDIS: env.url, JOBFLEET_QUEUE: queue, THUMBNAIL_OUTPUT_DIR: thumbs, PORT: "0" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    base = await new Promise<string>((resolve, reject) => {
      let out = "";
      server.stdout?.setEncoding("utf8").on("data", (text: string) => {
        out += text;
        const match = /listening on (http:\/\/\S+)/.exec(out);
        if (match?.[1] !== undefined) resolve(match[1]);
      });
      server.once("exit", (code) => reject(new Error(`the example exited with ${code}: ${out}`)));
    });
  });
  after(async () => {
    await stopChild(server);
    await env.stop();
  });

  const post = (body: string, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(`${base}/thumbnails`, { method: "POST", body, headers: { "content-type": "application/json", ...headers } });

  test("a POST submits a thumbnail job, and its completion arrives over SSE", async () => {
    const input = join(images, "cat.png");
    writeFileSync(input, gradientPng(64, 48));
    const stream = await EventStream.open(`${base}/events`);
    try {
      const response = await post(JSON.stringify({ input, sizes: [32, 16], format: "png" }));
      assert.equal(response.status, 202);
      const { id } = (await response.json()) as { id: string; queue: string };
      const event = await stream.eventOf(id);
      assert.equal(event.state, "completed", event.error);
      assert.deepEqual(event.result?.input, { width: 64, height: 48, format: "png" });
      const outputs = event.result?.outputs ?? [];
      assert.deepEqual(
        outputs.map((o) => [o.width, o.height]),
        [
          [32, 24],
          [16, 12],
        ],
      );
      for (const output of outputs) {
        assert.ok(output.path.startsWith(thumbs), output.path);
        assert.ok(existsSync(output.path), `${output.path} was written`);
        assert.ok(readFileSync(output.path).subarray(1, 4).equals(Buffer.from("PNG")));
      }
      const shown = await fetch(`${base}/thumbnails/${id}`);
      assert.equal(shown.status, 200);
      assert.equal(((await shown.json()) as { state: string }).state, "completed");
    } finally {
      stream.close();
    }
  });

  test("a job that cannot run reaches the browsers as dead, with the worker's error", async () => {
    const stream = await EventStream.open(`${base}/events`);
    try {
      const response = await post(JSON.stringify({ input: join(images, "missing.png") }));
      assert.equal(response.status, 202);
      const { id } = (await response.json()) as { id: string };
      const event = await stream.eventOf(id);
      assert.equal(event.state, "dead");
      assert.match(event.error ?? "", /does not exist/);
    } finally {
      stream.close();
    }
  });

  test("an Idempotency-Key makes a retried POST the same job", async () => {
    const input = join(images, "dog.png");
    writeFileSync(input, gradientPng(20, 40));
    const key = `upload-${Date.now()}`;
    const submitted = Number(await env.redis.hget(`jobfleet:{${queue}}:stats`, "submitted"));
    const first = (await (await post(JSON.stringify({ input }), { "idempotency-key": key })).json()) as { id: string };
    const again = (await (await post(JSON.stringify({ input }), { "idempotency-key": key })).json()) as { id: string };
    assert.equal(first.id, key);
    assert.equal(again.id, key);
    assert.equal(Number(await env.redis.hget(`jobfleet:{${queue}}:stats`, "submitted")), submitted + 1);
  });

  test("bad requests are refused without submitting anything", async () => {
    const submitted = await env.redis.hget(`jobfleet:{${queue}}:stats`, "submitted");
    for (const body of [
      "not json",
      JSON.stringify({ input: "relative/path.png" }),
      JSON.stringify({ input: "/a.png", sizes: [0] }),
    ]) {
      const response = await post(body);
      assert.equal(response.status, 400, body);
      assert.ok(((await response.json()) as { error: string }).error.length > 0);
    }
    assert.equal(await env.redis.hget(`jobfleet:{${queue}}:stats`, "submitted"), submitted);
    assert.equal((await fetch(`${base}/nowhere`)).status, 404);
  });
});

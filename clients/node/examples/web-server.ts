/**
 * A web server that turns uploads into thumbnails with jobfleet: it submits a
 * `thumbnail` job per request, and pushes each job's outcome to its browsers
 * over Server-Sent Events. The work runs on `jobfleet-worker` processes
 * anywhere that reach the same Redis; their completion events come back over
 * Redis pub/sub.
 *
 *   POST /thumbnails       {"input": "/data/cat.jpg", "sizes": [256, 1024], "format": "webp"}
 *                          -> 202 {"id": "...", "queue": "default"}
 *                          (an Idempotency-Key header makes a retried POST the same job)
 *   GET  /thumbnails/:id   the job as it is now
 *   GET  /events           text/event-stream: one `job` event per finished job
 *   GET  /                 a page that submits and shows the events
 *
 * Settings, from the environment: JOBFLEET_REDIS (redis://127.0.0.1:6379),
 * JOBFLEET_PREFIX (jobfleet), JOBFLEET_QUEUE (default), THUMBNAIL_OUTPUT_DIR
 * (default: a `thumbs` folder next to each input), HOST (127.0.0.1), PORT
 * (8080; 0 picks a free one). Run a worker that may read and write the
 * images: `jobfleet-worker --redis URL --allow-dir /data`.
 */

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { dirname, isAbsolute, join } from "node:path";

import { Client, InvalidArgumentError, JobFailedError, WaitTimeoutError } from "jobfleet";

const redisUrl = process.env["JOBFLEET_REDIS"] ?? "redis://127.0.0.1:6379";
const queue = process.env["JOBFLEET_QUEUE"] ?? "default";
const outputDir = process.env["THUMBNAIL_OUTPUT_DIR"];
const host = process.env["HOST"] ?? "127.0.0.1";
const port = Number(process.env["PORT"] ?? 8080);

const client = new Client(redisUrl, { prefix: process.env["JOBFLEET_PREFIX"] ?? "jobfleet", queue });

/** The browsers listening on /events. */
const browsers = new Set<ServerResponse>();

/** What a browser is told when a job finishes. */
interface Outcome {
  readonly id: string;
  readonly state: string;
  readonly result?: unknown;
  readonly error?: string;
}

/** Sends one SSE event to every browser. */
function broadcast(outcome: Outcome): void {
  const frame = `event: job\nid: ${outcome.id}\ndata: ${JSON.stringify(outcome)}\n\n`;
  for (const browser of browsers) browser.write(frame);
}

/** Waits for a job's outcome, then tells the browsers. */
async function follow(id: string): Promise<void> {
  try {
    const job = await client.wait(id, { timeout: 10 * 60_000 });
    broadcast({ id, state: job.state, result: job.result });
  } catch (e) {
    if (e instanceof JobFailedError) {
      broadcast({ id, state: e.job.state, error: e.job.error ?? "" });
    } else if (e instanceof WaitTimeoutError) {
      broadcast({ id, state: "unfinished", error: e.message });
    } else {
      console.error(`following job ${id}:`, e);
      broadcast({ id, state: "unknown", error: e instanceof Error ? e.message : String(e) });
    }
  }
}

/** The `thumbnail` task's payload for a request body, or why it cannot be one. */
function thumbnailPayload(body: unknown): Record<string, unknown> | string {
  if (typeof body !== "object" || body === null) return "the body must be a JSON object";
  const { input, sizes, format, quality } = body as Record<string, unknown>;
  if (typeof input !== "string" || !isAbsolute(input)) return "input must be an absolute path";
  const payload: Record<string, unknown> = { input, output_dir: outputDir ?? join(dirname(input), "thumbs") };
  if (sizes !== undefined) {
    if (!Array.isArray(sizes) || sizes.length === 0 || !sizes.every((s) => Number.isInteger(s) && s > 0)) {
      return "sizes must be a list of positive integers";
    }
    payload["sizes"] = sizes;
  }
  if (format !== undefined) {
    if (format !== "jpeg" && format !== "png" && format !== "webp") return "format must be jpeg, png or webp";
    payload["format"] = format;
  }
  if (quality !== undefined) {
    if (!Number.isInteger(quality) || (quality as number) < 1 || (quality as number) > 100) {
      return "quality must be an integer from 1 to 100";
    }
    payload["quality"] = quality;
  }
  return payload;
}

/** Reads a request body of at most 64 KiB as JSON. */
async function readJson(request: IncomingMessage): Promise<unknown> {
  let text = "";
  for await (const chunk of request) {
    text += String(chunk);
    if (text.length > 64 * 1024) throw new SyntaxError("the body is over 64 KiB");
  }
  return JSON.parse(text) as unknown;
}

function reply(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
}

async function submit(request: IncomingMessage, response: ServerResponse): Promise<void> {
  let body: unknown;
  try {
    body = await readJson(request);
  } catch (e) {
    return reply(response, 400, { error: `invalid JSON: ${e instanceof Error ? e.message : String(e)}` });
  }
  const payload = thumbnailPayload(body);
  if (typeof payload === "string") return reply(response, 400, { error: payload });
  const key = request.headers["idempotency-key"];
  try {
    const id = await client.submit("thumbnail", payload, { key: typeof key === "string" ? key : undefined });
    reply(response, 202, { id, queue });
    void follow(id);
  } catch (e) {
    if (e instanceof InvalidArgumentError) return reply(response, 400, { error: e.message });
    throw e;
  }
}

async function show(id: string, response: ServerResponse): Promise<void> {
  try {
    const job = await client.status(id);
    if (job === null) return reply(response, 404, { error: `no job ${id}` });
    reply(response, 200, job);
  } catch (e) {
    if (e instanceof InvalidArgumentError) return reply(response, 404, { error: e.message });
    throw e;
  }
}

function events(request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(200, {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    connection: "keep-alive",
  });
  response.write("retry: 2000\n: connected\n\n");
  browsers.add(response);
  const keepAlive = setInterval(() => response.write(": keep-alive\n\n"), 15_000);
  request.once("close", () => {
    clearInterval(keepAlive);
    browsers.delete(response);
  });
}

const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>Thumbnails</title>
<form id="f"><input id="input" size="50" placeholder="/data/cat.jpg"> <button>Thumbnail it</button></form>
<ul id="jobs"></ul>
<script>
  const jobs = document.getElementById("jobs");
  const line = (text) => { const li = document.createElement("li"); li.textContent = text; jobs.prepend(li); };
  new EventSource("/events").addEventListener("job", (e) => {
    const job = JSON.parse(e.data);
    line(job.id + ": " + job.state + " " + JSON.stringify(job.result ?? job.error));
  });
  document.getElementById("f").addEventListener("submit", async (e) => {
    e.preventDefault();
    const input = document.getElementById("input").value;
    const r = await fetch("/thumbnails", { method: "POST", body: JSON.stringify({ input, sizes: [256] }) });
    const body = await r.json();
    line(r.ok ? body.id + ": submitted" : "refused: " + body.error);
  });
</script>
`;

/** Routes one request. */
async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const { pathname } = new URL(request.url ?? "/", "http://localhost");
  if (request.method === "POST" && pathname === "/thumbnails") return submit(request, response);
  if (request.method === "GET" && pathname.startsWith("/thumbnails/")) {
    return show(decodeURIComponent(pathname.slice("/thumbnails/".length)), response);
  }
  if (request.method === "GET" && pathname === "/events") return events(request, response);
  if (request.method === "GET" && pathname === "/") {
    response.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(PAGE);
    return;
  }
  reply(response, 404, { error: "not found" });
}

const server = createServer((request, response) => {
  handle(request, response).catch((e: unknown) => {
    console.error(`${request.method ?? "?"} ${request.url ?? "?"}:`, e);
    if (!response.headersSent) reply(response, 503, { error: "the job queue is unavailable" });
    else response.end();
  });
});

server.listen(port, host, () => {
  const address = server.address();
  const bound = typeof address === "object" && address !== null ? address.port : port;
  console.log(`listening on http://${host}:${bound}`);
});

async function shutdown(): Promise<void> {
  for (const browser of browsers) browser.end();
  server.close();
  await client.close();
}
process.once("SIGTERM", () => void shutdown());
process.once("SIGINT", () => void shutdown());

// BullMQ latency reference for scripts/bench.sh (BENCH_BULLMQ=1). Prints one JSON line.
//
//   REDIS_URL=redis://127.0.0.1:PORT node bullmq_latency.mjs worker      # until SIGTERM
//   REDIS_URL=redis://127.0.0.1:PORT node bullmq_latency.mjs probe 1000  # p50/p99
//
// The probe mirrors `jobfleet-bench latency`: a QueueEvents listener opened
// once, then one no-op job at a time: add it, wait for its "completed"
// event, pause 2 ms (so the worker is idle when the next one comes).
// NODE_PATH must reach a folder where bullmq is installed.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { Queue, QueueEvents, Worker } = require("bullmq");
const url = new URL(process.env.REDIS_URL ?? "redis://127.0.0.1:6379");
const connection = { host: url.hostname, port: Number(url.port || 6379), maxRetriesPerRequest: null };
const [mode, n = "1000"] = process.argv.slice(2);
const name = "bench";

if (mode === "worker") {
  const worker = new Worker(name, async () => null, { connection, concurrency: 64 });
  await worker.waitUntilReady();
  // The probe is over when this is stopped: exit at once rather than wait
  // out the blocking fetch (worker.close() takes seconds).
  process.on("SIGTERM", () => process.exit(0));
  process.on("SIGINT", () => process.exit(0));
} else if (mode === "probe") {
  const jobs = Number(n), warmup = 50;
  const queue = new Queue(name, { connection });
  const events = new QueueEvents(name, { connection });
  await events.waitUntilReady();
  const waiting = new Map();
  events.on("completed", ({ jobId }) => waiting.get(jobId)?.());
  const samples = [];
  for (let i = 0; i < warmup + jobs; i++) {
    await new Promise((r) => setTimeout(r, 2));
    const start = process.hrtime.bigint();
    let done;
    const completed = new Promise((r) => (done = r));
    const job = await queue.add("noop", {}, { removeOnComplete: true });
    waiting.set(job.id, done);
    await completed;
    waiting.delete(job.id);
    if (i >= warmup) samples.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  samples.sort((a, b) => a - b);
  const rank = (p) => samples[Math.min(samples.length, Math.max(1, Math.ceil(p * samples.length))) - 1];
  const r3 = (x) => Math.round(x * 1000) / 1000;
  const version = require("bullmq/package.json").version;
  console.log(JSON.stringify({ bullmq: version, jobs, p50_ms: r3(rank(0.5)), p99_ms: r3(rank(0.99)), max_ms: r3(rank(1)) }));
  await queue.close();
  await events.close();
  process.exit(0);
} else {
  console.error("usage: bullmq_latency.mjs worker | probe N");
  process.exit(2);
}

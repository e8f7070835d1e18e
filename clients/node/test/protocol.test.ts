/**
 * The wire contract: the shipped scripts are byte for byte what jobfleet
 * sends, the package ships them, and a Node job's record is what a Rust
 * producer writes.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";

import { Client, newJobId, SCRIPT_NAMES, scriptPath, scriptSource } from "jobfleet";

import { CLIENT_DIR, jobKey, TestEnv, uniqueQueue } from "./support.js";

describe("the protocol", () => {
  let env: TestEnv;
  let client: Client;
  let cliScripts: string;

  before(async () => {
    env = await TestEnv.start();
    client = env.client();
    cliScripts = join(env.dir, "cli-scripts");
    await env.cliOk(["protocol", "scripts", "--out", cliScripts]);
  });
  after(() => env.stop());

  test("the package's scripts are byte for byte what `jobfleet protocol scripts` writes", () => {
    const packageRoot = dirname(dirname(fileURLToPath(import.meta.resolve("jobfleet"))));
    for (const name of SCRIPT_NAMES) {
      const fromCli = readFileSync(join(cliScripts, name));
      // Loaded from the installed package (relative to its compiled module) ...
      assert.equal(scriptPath(name), join(packageRoot, "scripts", name));
      assert.ok(readFileSync(scriptPath(name)).equals(fromCli), `${name} differs from the CLI's: run sync-scripts.sh`);
      // ... and sent exactly so.
      assert.ok(Buffer.from(scriptSource(name), "utf8").equals(fromCli), `${name} as sent differs from the CLI's`);
      assert.ok(fromCli.toString("utf8").startsWith("local PUBLISH = 'PUBLISH'\n"), "common.lua comes first");
    }
  });

  test("Redis runs the scripts the CLI writes: their SHA1s are the ones the client sent", async () => {
    const queue = uniqueQueue("sha");
    const id = await client.submit("echo", {}, { queue });
    assert.equal(await client.cancel(id, { queue }), "cancelled");
    const shas = SCRIPT_NAMES.map((name) =>
      createHash("sha1")
        .update(readFileSync(join(cliScripts, name)))
        .digest("hex"),
    );
    assert.deepEqual(
      await env.redis.script("EXISTS", ...shas),
      shas.map(() => 1),
    );
  });

  test("a script Redis forgot (SCRIPT FLUSH) is sent again", async () => {
    const queue = uniqueQueue("flush");
    await env.redis.script("FLUSH");
    const id = await client.submit("echo", { again: true }, { queue });
    assert.equal((await client.status(id, { queue }))?.state, "pending");
  });

  test("the package ships the scripts, the compiled module and its types", async () => {
    const run = promisify(execFile);
    const npm = process.platform === "win32" ? "npm.cmd" : "npm";
    const { stdout } = await run(npm, ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: CLIENT_DIR });
    const [pack] = JSON.parse(stdout) as Array<{ name: string; version: string; files: Array<{ path: string }> }>;
    assert.ok(pack !== undefined);
    assert.equal(pack.name, "jobfleet");
    assert.equal(pack.version, "0.1.0");
    const files = new Set(pack.files.map((f) => f.path));
    for (const path of [
      "package.json",
      "README.md",
      "dist/index.js",
      "dist/index.d.ts",
      "dist/client.js",
      ...SCRIPT_NAMES.map((n) => `scripts/${n}`),
    ]) {
      assert.ok(files.has(path), `the package lacks ${path}`);
    }
    assert.ok(
      ![...files].some((path) => path.startsWith("test/") || path.startsWith("build/")),
      "tests are not shipped",
    );
  });

  test("a Node job's record has exactly the fields a Rust producer writes", async () => {
    const queue = uniqueQueue("fields"); // no worker
    const fromNode = await client.submit("echo", { a: [1, "two"] }, { queue });
    const fromCli = (await env.cliOk(["submit", "--queue", queue, "echo", '{"a":[1,"two"]}'])).trim();
    const node = await env.redis.hgetall(jobKey(queue, fromNode));
    const rust = await env.redis.hgetall(jobKey(queue, fromCli));
    assert.deepEqual(Object.keys(node).sort(), [
      "created_ms",
      "max_attempts",
      "payload",
      "state",
      "task",
      "timeout_ms",
    ]);
    assert.deepEqual(Object.keys(node).sort(), Object.keys(rust).sort());
    for (const field of ["task", "payload", "state", "max_attempts", "timeout_ms"]) {
      assert.equal(node[field], rust[field], field);
    }
    // Both ids went onto pending, newest on the left.
    assert.deepEqual(await env.redis.lrange(`jobfleet:{${queue}}:pending`, 0, -1), [fromCli, fromNode]);

    const delayed = await client.submit("echo", {}, { queue, delay: 60_000 });
    const fields = await env.redis.hgetall(jobKey(queue, delayed));
    assert.equal(fields["state"], "scheduled");
    assert.equal(Number(fields["run_at_ms"]), Number(fields["created_ms"]) + 60_000);
    assert.equal(Number(await env.redis.zscore(`jobfleet:{${queue}}:scheduled`, delayed)), Number(fields["run_at_ms"]));
  });

  test("job ids are time-ordered UUID v7 on the client's clock", () => {
    const before = Date.now();
    const ids = Array.from({ length: 5000 }, () => newJobId());
    const after = Date.now();
    assert.equal(new Set(ids).size, ids.length);
    assert.deepEqual([...ids].sort(), ids, "ids made in a row sort in order");
    for (const id of [ids[0] ?? "", ids[4999] ?? ""]) {
      assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      const ms = Number.parseInt(id.replace(/-/g, "").slice(0, 12), 16);
      assert.ok(ms >= before && ms <= after + 2, `timestamp ${ms} outside ${before}..${after}`);
    }
  });
});

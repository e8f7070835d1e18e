/**
 * The README's way in: the package packed into a tarball, installed into a
 * fresh application, and the README's program run there against a real
 * worker. What an application gets is the packed files, not this folder.
 */

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";

import { CLIENT_DIR, TestEnv } from "./support.js";

const run = promisify(execFile);

/** The first ```js block of the repository README after `marker`. */
function readmeProgram(marker: string): string {
  const readme = readFileSync(join(CLIENT_DIR, "..", "..", "README.md"), "utf8");
  const from = readme.indexOf(marker);
  assert.ok(from >= 0, `README has no "${marker}"`);
  const start = readme.indexOf("```js\n", from);
  assert.ok(start >= 0, "README has no js block after the install step");
  const end = readme.indexOf("```", start + 6);
  return readme.slice(start + 6, end);
}

describe("installed from the packed tarball, as the README says", () => {
  let env: TestEnv;
  before(async () => {
    env = await TestEnv.start();
  });
  after(() => env.stop());

  test("the README's program submits and waits in a fresh application", async () => {
    const packed = join(env.dir, "packed");
    const app = join(env.dir, "app");
    mkdirSync(packed);
    mkdirSync(app);
    // dist/ is already built by run-tests.sh; building it again here would
    // rewrite files the other test files are importing.
    await run("npm", ["pack", "--ignore-scripts", "--silent", "--pack-destination", packed], { cwd: CLIENT_DIR });
    const tarballs = readdirSync(packed).filter((f) => f.endsWith(".tgz"));
    assert.deepEqual(tarballs, ["jobfleet-0.1.0.tgz"]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true, type: "module" }));
    await run(
      "npm",
      ["install", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error", join(packed, tarballs[0] ?? "")],
      { cwd: app },
    );
    const installed = readdirSync(join(app, "node_modules", "jobfleet")).sort();
    assert.deepEqual(installed, ["README.md", "dist", "package.json", "scripts"]);

    const program = readmeProgram("npm install ./clients/node/jobfleet-0.1.0.tgz");
    assert.match(program, /redis:\/\/127\.0\.0\.1:6379/);
    writeFileSync(join(app, "main.mjs"), program.replace("redis://127.0.0.1:6379", env.url));
    await env.worker("default");
    const { stdout } = await run("node", ["main.mjs"], { cwd: app, timeout: 60_000 });
    assert.equal(stdout.trim(), "completed { hello: 'world' }");
  });
});

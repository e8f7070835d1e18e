/**
 * The Lua scripts this client runs, shipped in the package (`scripts/*.lua`)
 * exactly as jobfleet sends them to Redis: `common.lua` followed by the
 * transition, as `jobfleet protocol scripts --out DIR` writes them. They are
 * read from the installed package, next to the compiled module, never from a
 * copy that could drift.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The scripts this client runs. */
export const SCRIPT_NAMES = ["submit.lua", "cancel.lua"] as const;

/** The name of one shipped script. */
export type ScriptName = (typeof SCRIPT_NAMES)[number];

/** One script: its text as sent to Redis, and its SHA1 (for `EVALSHA`). */
export interface Script {
  readonly name: ScriptName;
  readonly source: string;
  readonly sha: string;
}

const loaded = new Map<ScriptName, Script>();

/** The folder of the shipped scripts: `scripts/` at the package root. */
export const SCRIPTS_DIR: string = fileURLToPath(new URL("../scripts/", import.meta.url));

/** The absolute path of a shipped script. */
export function scriptPath(name: ScriptName): string {
  return fileURLToPath(new URL(`../scripts/${name}`, import.meta.url));
}

/** A shipped script, read once from the package. */
export function script(name: ScriptName): Script {
  let found = loaded.get(name);
  if (found === undefined) {
    const source = readFileSync(scriptPath(name), "utf8");
    found = { name, source, sha: createHash("sha1").update(source, "utf8").digest("hex") };
    loaded.set(name, found);
  }
  return found;
}

/** The text of a shipped script, exactly as this client sends it to Redis. */
export function scriptSource(name: ScriptName): string {
  return script(name).source;
}

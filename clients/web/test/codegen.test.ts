import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { packageRoot } from "./vectors.js";

const root = fileURLToPath(packageRoot);

/** Every file under `dir`, by path relative to it. */
function files(dir: string): Map<string, string> {
  const entries = readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
  return new Map(entries.map((e) => [relative(dir, join(e.parentPath, e.name)), readFileSync(join(e.parentPath, e.name), "utf8")]));
}

test("src/gen is what `npm run gen` generates from proto/tickrelay/v1/tickrelay.proto", { timeout: 120_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), "tickrelay-gen-"));
  try {
    const bin = join(root, "node_modules", ".bin");
    execFileSync(join(bin, "buf"), ["generate", "--output", out], {
      cwd: root,
      env: { ...process.env, PATH: `${bin}${delimiter}${process.env.PATH ?? ""}` },
      stdio: ["ignore", "ignore", "inherit"],
    });
    const fresh = files(join(out, "src", "gen"));
    const checkedIn = files(join(root, "src", "gen"));
    assert.ok(fresh.size > 0);
    assert.deepEqual([...checkedIn.keys()].sort(), [...fresh.keys()].sort(), "src/gen is stale: run `npm run gen`");
    for (const [path, text] of fresh) {
      assert.ok(checkedIn.get(path) === text, `src/gen/${path} is stale: run \`npm run gen\``);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

test("demo/demo.js is what `npm run demo` bundles (the relay serves it with --demo)", { timeout: 120_000 }, () => {
  const out = mkdtempSync(join(tmpdir(), "tickrelay-demo-"));
  try {
    const bin = join(root, "node_modules", ".bin");
    const script = JSON.parse(readFileSync(join(root, "package.json"), "utf8")).scripts.demo as string;
    const args = script.split(" ").slice(1).map((a) => (a.startsWith("--outfile=") ? `--outfile=${join(out, "demo.js")}` : a));
    execFileSync(join(bin, "esbuild"), args, { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
    const fresh = readFileSync(join(out, "demo.js"), "utf8");
    assert.ok(readFileSync(join(root, "demo", "demo.js"), "utf8") === fresh, "demo/demo.js is stale: run `npm run demo`");
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
});

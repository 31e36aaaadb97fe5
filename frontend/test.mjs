// Bundles tests/*.test.ts (esbuild) and runs them with node's own test runner.
import { build } from "esbuild";
import { spawnSync } from "node:child_process";
import { readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const out = join(root, "node_modules", ".cache", "tests");
await rm(out, { recursive: true, force: true });
const entries = (await readdir(join(root, "tests"))).filter((name) => name.endsWith(".test.ts"));
await build({
  entryPoints: entries.map((name) => join(root, "tests", name)),
  bundle: true,
  platform: "node",
  format: "esm",
  outdir: out,
  outExtension: { ".js": ".mjs" },
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".css": "empty" },
  logLevel: "warning",
});
const files = (await readdir(out)).map((name) => join(out, name));
const run = spawnSync(process.execPath, ["--test", ...files], { stdio: "inherit" });
process.exit(run.status ?? 1);

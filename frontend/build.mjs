// Builds dist/: the page (index.html, app.js, app.css) and the API reference page (docs/), all served by the
// gateway from its static folder. Nothing in dist/ refers to another origin.
import { build } from "esbuild";
import { copyFile, mkdir, readdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, "dist");
const swagger = join(root, "node_modules", "swagger-ui-dist");

await rm(dist, { recursive: true, force: true });
await mkdir(join(dist, "docs"), { recursive: true });

await build({
  entryPoints: { app: join(root, "src", "main.tsx") },
  bundle: true,
  format: "esm",
  target: ["es2022"],
  minify: true,
  sourcemap: false,
  legalComments: "linked",
  outdir: dist,
  jsx: "automatic",
  jsxImportSource: "preact",
  loader: { ".css": "css" },
  logLevel: "warning",
});

for (const name of await readdir(join(root, "static"))) {
  if (name !== "docs") await copyFile(join(root, "static", name), join(dist, name));
}
for (const name of await readdir(join(root, "static", "docs"))) {
  await copyFile(join(root, "static", "docs", name), join(dist, "docs", name));
}
// The API reference page: Swagger UI's prebuilt bundle from npm, started by our own script (no inline script, so the
// gateway's Content-Security-Policy holds).
for (const name of ["swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"]) {
  await copyFile(join(swagger, name), join(dist, "docs", name));
}

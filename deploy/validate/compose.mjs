// Project rules for compose.yaml (dclint checks it against the compose
// specification's schema and its own rules; this adds ours):
//   node compose.mjs --version 0.1.0 deploy/compose.yaml
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { composeRules } from "./rules.mjs";

const argv = process.argv.slice(2);
const vi = argv.indexOf("--version");
const version = vi >= 0 ? argv[vi + 1] : undefined;
const files = argv.filter((a, i) => a !== "--version" && i !== vi + 1);
if (!version || files.length === 0) {
  console.error("usage: node compose.mjs --version X compose.yaml...");
  process.exit(2);
}
let failed = false;
for (const file of files) {
  let problems;
  try {
    problems = composeRules(parse(readFileSync(file, "utf8"), { merge: true }), { version });
  } catch (e) {
    problems = [e.message];
  }
  for (const p of problems) console.log(`${file}: ${p}`);
  if (problems.length) failed = true;
  else console.log(`${file}: project rules pass`);
}
process.exit(failed ? 1 : 0);

// Project rules for compose.yaml (dclint checks it against the compose
// specification's schema and its own rules; this adds ours):
//   node compose.mjs --version 0.1.0 --binary build/vid2mp3 deploy/compose.yaml
import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { composeRules, makeConfigFor } from "./rules.mjs";

const argv = process.argv.slice(2);
const opt = (n) => (argv.indexOf(n) >= 0 ? argv[argv.indexOf(n) + 1] : undefined);
const version = opt("--version");
const binary = opt("--binary");
const files = argv.filter((a, i) => !a.startsWith("--") && !argv[i - 1]?.startsWith("--"));
if (!version || !binary || files.length === 0) {
  console.error("usage: node compose.mjs --version X --binary VID2MP3 compose.yaml...");
  process.exit(2);
}
let failed = false;
for (const file of files) {
  let problems;
  try {
    problems = composeRules(parse(readFileSync(file, "utf8"), { merge: true }), { version, configFor: makeConfigFor(binary) });
  } catch (e) {
    problems = [e.message];
  }
  for (const p of problems) console.log(`${file}: ${p}`);
  if (problems.length) failed = true;
  else console.log(`${file}: project rules pass`);
}
process.exit(failed ? 1 : 0);

// Project rules for the Dockerfile (the linters check its syntax and
// habits; this checks it builds what CI tests):
//   node dockerfile.mjs --runtime-packages FILE --shell-out FILE deploy/Dockerfile
// - every FROM is one pinned debian:bookworm* tag, the same in every stage;
// - the build stage installs with `scripts/install-deps.sh --build` and
//   builds with CMake; no stage installs packages any other way, except
//   the last stage's one `apt-get install`, whose list must equal
//   `scripts/install-deps.sh --list runtime` (FILE, one per line);
// - the last stage runs as a numeric non-root USER, with
//   ENTRYPOINT ["vid2mp3"], CMD ["all"] and a HEALTHCHECK;
// - what COPY takes from the context is not excluded by .dockerignore.
// The RUN commands are written to --shell-out for shellcheck.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { dockerignore, excluded, instructions, stages as stagesOf } from "./dockerfile-lib.mjs";

const argv = process.argv.slice(2);
const opt = (n) => {
  const i = argv.indexOf(n);
  return i >= 0 ? argv[i + 1] : undefined;
};
const runtimeFile = opt("--runtime-packages");
const shellOut = opt("--shell-out");
const context = opt("--context") ?? ".";
const file = argv[argv.length - 1];
if (!runtimeFile || !shellOut || !file || file.startsWith("--")) {
  console.error("usage: node dockerfile.mjs --runtime-packages FILE --shell-out FILE [--context DIR] Dockerfile");
  process.exit(2);
}

const problems = [];
const ins = instructions(readFileSync(file, "utf8"));
const stages = stagesOf(ins, problems);
if (stages.length < 2) problems.push(`${stages.length} stage(s): want a build stage and a runtime stage`);

const bases = new Set();
for (const s of stages) {
  const image = s.from.split(/\s+/)[0];
  bases.add(image);
  if (!/^debian:bookworm[\w.-]*$/.test(image)) problems.push(`FROM ${image}: want a pinned debian:bookworm tag`);
}
if (bases.size > 1) problems.push(`the stages start from different images: ${[...bases].join(", ")}`);

const runs = ins.filter((i) => i.op === "RUN").map((i) => i.args);
writeFileSync(shellOut, `#!/bin/sh\n# RUN lines of ${file}\n${runs.map((r) => `${r}\n`).join("")}`);

const apt = (cmd) => /\bapt(-get)?\s+(-\S+\s+)*install\b/.test(cmd);
const build = stages[0]?.ins ?? [];
const last = stages[stages.length - 1]?.ins ?? [];
if (!build.some((i) => i.op === "RUN" && /(^|[\s;&])scripts\/install-deps\.sh --build(\s|$|&)/.test(i.args)))
  problems.push("the build stage does not run scripts/install-deps.sh --build");
if (!build.some((i) => i.op === "RUN" && /\bcmake -S \. -B build\b/.test(i.args) && /\bcmake --build build\b/.test(i.args)))
  problems.push("the build stage does not build with cmake -S . -B build / cmake --build build");
for (const s of stages.slice(0, -1))
  for (const i of s.ins) if (i.op === "RUN" && apt(i.args)) problems.push(`a build stage installs packages itself: RUN ${i.args.slice(0, 60)}...`);

const installs = last.filter((i) => i.op === "RUN" && apt(i.args));
if (installs.length !== 1) problems.push(`the runtime stage has ${installs.length} apt-get install commands, want 1`);
else {
  const after = installs[0].args.replace(/^.*?\bapt(-get)?\s+(-\S+\s+)*install\b/, "");
  const pkgs = [];
  for (const w of after.split(/\s+/)) {
    if (w === "&&" || w === ";" || w === "||") break;
    if (w !== "" && !w.startsWith("-")) pkgs.push(w);
  }
  const want = readFileSync(runtimeFile, "utf8").split("\n").filter(Boolean);
  const missing = want.filter((p) => !pkgs.includes(p));
  const extra = pkgs.filter((p) => !want.includes(p));
  if (missing.length) problems.push(`the runtime stage lacks packages install-deps.sh lists: ${missing.join(" ")}`);
  if (extra.length) problems.push(`the runtime stage installs packages install-deps.sh does not list: ${extra.join(" ")}`);
  if (!/--no-install-recommends/.test(installs[0].args)) problems.push("the runtime install lacks --no-install-recommends");
}

const lastOf = (op) => [...last].reverse().find((i) => i.op === op);
const user = lastOf("USER")?.args ?? "";
if (!/^[1-9]\d*(:\d+)?$/.test(user)) problems.push(`the runtime stage's USER is "${user}": want a numeric non-root uid`);
if (lastOf("ENTRYPOINT")?.args.replace(/\s/g, "") !== '["vid2mp3"]') problems.push('ENTRYPOINT is not ["vid2mp3"]');
if (lastOf("CMD")?.args.replace(/\s/g, "") !== '["all"]') problems.push('CMD is not ["all"]');
if (!lastOf("HEALTHCHECK") || /^NONE\b/i.test(lastOf("HEALTHCHECK").args)) problems.push("no HEALTHCHECK");

// What COPY takes from the context must be let in by .dockerignore.
const rules = dockerignore(context);
if (!rules) problems.push(".dockerignore is missing");
else {
  for (const i of ins.filter((x) => x.op === "COPY" && !/--from=/.test(x.args))) {
    const parts = i.args.split(/\s+/).filter((w) => !w.startsWith("--"));
    for (const src of parts.slice(0, -1)) {
      const p = src.replace(/\/$/, "").replace(/^\.\//, "");
      if (excluded(rules, p)) problems.push(`COPY ${src}: excluded by .dockerignore`);
      if (!existsSync(join(context, p))) problems.push(`COPY ${src}: not in the build context`);
    }
  }
}

for (const p of problems) console.log(`${file}: ${p}`);
if (!problems.length) console.log(`${file}: project rules pass (${stages.length} stages, ${runs.length} RUN lines)`);
process.exit(problems.length ? 1 : 0);

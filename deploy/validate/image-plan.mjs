// The plan image.sh carries out to build a Dockerfile without Docker:
//   node image-plan.mjs --context DIR Dockerfile
// prints one step per line, fields separated by tabs:
//   FILE path                 a file of the context `docker build` sends
//                             (.dockerignore applied), relative to DIR
//   FROM image name           a new stage (name: its AS name, or its number)
//   ENV key value             WORKDIR /abs    USER uid[:gid]    VOLUME /abs
//   COPY stage|- dest src...  dest absolute; "-" copies from the context
//   RUN command               shell form, run by /bin/sh -c
//   ENTRYPOINT json | CMD json | HEALTHCHECK json   exec form, as JSON
// Instructions deploy/Dockerfile does not use (ADD, ONBUILD, COPY --chown,
// RUN --mount, wildcards, ...) are refused with exit 1 and a message, so
// the build never silently differs from Docker's. EXPOSE, LABEL,
// STOPSIGNAL SIGTERM and ARG without a use are metadata and pass.
import { readFileSync } from "node:fs";
import { posix } from "node:path";
import { contextFiles, instructions, stages as stagesOf } from "./dockerfile-lib.mjs";

const argv = process.argv.slice(2);
const ci = argv.indexOf("--context");
const context = ci >= 0 ? argv[ci + 1] : ".";
const file = argv[argv.length - 1];
if (!file || file.startsWith("--") || (ci >= 0 && ci + 1 >= argv.length - 1)) {
  console.error("usage: node image-plan.mjs --context DIR Dockerfile");
  process.exit(2);
}

const problems = [];
const out = [];
const emit = (...fields) => {
  for (const f of fields)
    if (/[\t\n]/.test(f)) problems.push(`a tab or newline in "${f.slice(0, 40)}": cannot be planned`);
  out.push(fields.join("\t"));
};

// Words of a shell-like argument list: whitespace-separated, "..." and '...'
// quoted, backslash escapes inside double quotes.
function words(s) {
  const w = [];
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g;
  let m;
  while ((m = re.exec(s))) w.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, "$1") : (m[2] ?? m[3]));
  return w;
}
// Exec form (a JSON array of strings) or shell form, as an exec-form array.
function execForm(args, what) {
  if (args.trim().startsWith("[")) {
    try {
      const a = JSON.parse(args);
      if (Array.isArray(a) && a.length && a.every((x) => typeof x === "string")) return a;
    } catch {
      /* reported below */
    }
    problems.push(`${what} ${args}: not a JSON array of strings`);
    return [];
  }
  return ["/bin/sh", "-c", args];
}

for (const f of contextFiles(context)) emit("FILE", f);

const ins = instructions(readFileSync(file, "utf8"));
const stages = stagesOf(ins, problems);
const names = [];
stages.forEach((s, n) => {
  const [image, as, name, ...rest] = s.from.split(/\s+/);
  if ((as && as.toUpperCase() !== "AS") || (as && !name) || rest.length || image.startsWith("--"))
    problems.push(`FROM ${s.from}: only "FROM image [AS name]" is understood`);
  names.push(name ?? String(n));
  emit("FROM", image, name ?? String(n));
  let workdir = "/";
  for (const { op, args } of s.ins) {
    switch (op) {
      case "ENV": {
        const w = words(args);
        if (w.length === 2 && !w[0].includes("=")) emit("ENV", w[0], w[1]);
        else
          for (const kv of w) {
            const eq = kv.indexOf("=");
            if (eq <= 0) problems.push(`ENV ${args}: "${kv}" is not key=value`);
            else emit("ENV", kv.slice(0, eq), kv.slice(eq + 1));
          }
        break;
      }
      case "WORKDIR":
        workdir = posix.resolve(workdir, args.trim());
        emit("WORKDIR", workdir);
        break;
      case "USER":
        if (!/^\d+(:\d+)?$/.test(args.trim())) problems.push(`USER ${args}: only a numeric uid[:gid] is understood`);
        emit("USER", args.trim());
        break;
      case "VOLUME":
        for (const v of args.trim().startsWith("[") ? execForm(args, "VOLUME") : words(args))
          emit("VOLUME", posix.resolve(workdir, v));
        break;
      case "COPY": {
        const w = words(args);
        let from = "-";
        while (w.length && w[0].startsWith("--")) {
          const flag = w.shift();
          if (flag.startsWith("--from=")) from = flag.slice(7);
          else problems.push(`COPY ${flag}: not understood`);
        }
        if (from !== "-" && !names.slice(0, n).includes(from))
          problems.push(`COPY --from=${from}: no earlier stage of that name`);
        if (w.length < 2) problems.push(`COPY ${args}: want a source and a destination`);
        const dest = w.pop();
        for (const src of w)
          if (/[*?[]/.test(src) || src.split("/").includes("..")) problems.push(`COPY ${src}: wildcards and .. are not understood`);
        // a destination ending in "/" stays a directory
        const abs = posix.resolve(workdir, dest) + (dest.endsWith("/") && dest !== "/" ? "/" : "");
        emit("COPY", from, abs, ...w.map((x) => x.replace(/^\.\//, "")));
        break;
      }
      case "RUN":
        if (args.trim().startsWith("[") || args.trim().startsWith("--"))
          problems.push(`RUN ${args.slice(0, 40)}: only the shell form without flags is understood`);
        emit("RUN", args);
        break;
      case "ENTRYPOINT":
      case "CMD":
        emit(op, JSON.stringify(execForm(args, op)));
        break;
      case "HEALTHCHECK": {
        const m = args.match(/^((?:--\S+\s+)*)CMD\s+(.*)$/);
        if (!m) problems.push(`HEALTHCHECK ${args}: want [--option ...] CMD ...`);
        else emit("HEALTHCHECK", JSON.stringify(execForm(m[2], "HEALTHCHECK")));
        break;
      }
      case "STOPSIGNAL":
        if (args.trim() !== "SIGTERM") problems.push(`STOPSIGNAL ${args}: only SIGTERM is understood`);
        break;
      case "EXPOSE":
      case "LABEL":
        break;
      default:
        problems.push(`${op}: not understood by the offline build`);
    }
  }
});

if (problems.length) {
  for (const p of problems) console.error(`${file}: ${p}`);
  process.exit(1);
}
console.log(out.join("\n"));

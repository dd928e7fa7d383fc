// Reading a Dockerfile and its .dockerignore the way `docker build` does,
// for the validators (dockerfile.mjs) and the offline image build
// (image-plan.mjs). Only what deploy/Dockerfile needs is understood; the
// callers refuse the rest rather than guess.
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

// Instructions with continuation lines joined and comments dropped:
// [{ op: "RUN", args: "..." }], op upper-case.
export function instructions(text) {
  const out = [];
  let cur = null;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/\r$/, "");
    if (cur === null && (/^\s*#/.test(line) || line.trim() === "")) continue;
    if (cur !== null && /^\s*#/.test(line)) continue;
    const piece = line.replace(/\\\s*$/, "");
    cur = cur === null ? piece.trim() : `${cur} ${piece.trim()}`;
    if (!/\\\s*$/.test(line)) {
      const m = cur.match(/^(\S+)\s*(.*)$/);
      out.push({ op: m[1].toUpperCase(), args: m[2] });
      cur = null;
    }
  }
  return out;
}

// Stages: [{ from: "image [AS name]", ins: [...] }]; `problems` collects
// instructions before the first FROM (other than ARG).
export function stages(ins, problems) {
  const out = [];
  for (const i of ins) {
    if (i.op === "FROM") out.push({ from: i.args, ins: [] });
    else if (out.length) out[out.length - 1].ins.push(i);
    else if (i.op !== "ARG") problems.push(`${i.op} before the first FROM`);
  }
  return out;
}

// A .dockerignore pattern as a RegExp over slash-separated paths relative to
// the context: `**` any run of directories, `*` and `?` within one name.
function patternRegExp(pat) {
  let re = "";
  for (let i = 0; i < pat.length; i++) {
    const c = pat[i];
    if (c === "*" && pat[i + 1] === "*") {
      re += ".*";
      i++;
      if (pat[i + 1] === "/") i++;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else if (c === "[") {
      const end = pat.indexOf("]", i);
      if (end < 0) re += "\\[";
      else {
        re += pat.slice(i, end + 1).replace(/^\[!/, "[^");
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

// The rules of DIR/.dockerignore, or null when there is none. A path is
// excluded when the last rule matching it, or one of its parent
// directories, is not a "!" exception (moby's patternmatcher).
export function dockerignore(dir) {
  const file = join(dir, ".dockerignore");
  if (!existsSync(file)) return null;
  return readFileSync(file, "utf8")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => {
      const neg = l.startsWith("!");
      const pat = (neg ? l.slice(1) : l).trim().replace(/^\/+/, "").replace(/\/+$/, "");
      return { neg, pat, re: patternRegExp(pat) };
    });
}

export function excluded(rules, path) {
  if (!rules) return false;
  const parts = path.split("/");
  let out = false;
  for (const r of rules) {
    for (let n = 1; n <= parts.length; n++) {
      if (r.re.test(parts.slice(0, n).join("/"))) {
        out = !r.neg;
        break;
      }
    }
  }
  return out;
}

// Every file (and symlink) of the context that `docker build` sends, as
// paths relative to DIR. An excluded directory is skipped unless an
// exception could re-include something under it.
export function contextFiles(dir) {
  const rules = dockerignore(dir);
  const reopens = (d) => (rules ?? []).some((r) => r.neg && (r.pat.startsWith(`${d}/`) || /[*?[]/.test(r.pat)));
  const out = [];
  const walk = (rel) => {
    for (const e of readdirSync(join(dir, rel), { withFileTypes: true })) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory()) {
        if (!excluded(rules, p) || reopens(p)) walk(p);
      } else if (!excluded(rules, p)) out.push(p);
    }
  };
  walk("");
  return out.sort();
}

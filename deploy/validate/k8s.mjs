// Validates rendered Kubernetes manifests (`kubectl kustomize` output):
//   node k8s.mjs --version 0.1.0 --secret-example ../k8s/secret.example.yaml \
//       --binary build/vid2mp3 RENDERED.yaml
// 1. schema: every object against kubernetes-models (KEDA objects against
//    @kubernetes-models/keda); an unknown apiVersion/kind is an error.
// 2. strict: no field the schema does not define (a typo such as
//    `livenesProbe` passes the schema, which allows unknown fields).
// 3. project rules (rules.mjs), among them each service's environment as
//    it resolves (ConfigMaps, literals, Secrets) run through
//    `vid2mp3 config`, which must accept it.
// Prints one line per problem and exits 1 when there is any.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";
import { k8sRules, makeConfigFor } from "./rules.mjs";

const require = createRequire(import.meta.url);

function modelFor(apiVersion, kind) {
  const paths = [
    `kubernetes-models/${apiVersion}/${kind}`,
    `@kubernetes-models/keda/${apiVersion}/${kind}`,
  ];
  for (const p of paths) {
    try {
      return require(p)[kind];
    } catch (e) {
      if (e.code !== "MODULE_NOT_FOUND" && e.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw e;
    }
  }
  return null;
}

// Wraps an object so that every property the schema's validator reads is
// recorded. Ajv's generated code reads each property the schema defines
// (`data.foo === undefined || ...`) and enumerates maps it allows any key
// in; so after validation, a key never read in an object whose other keys
// were read is a key the schema does not know.
function tracked(root) {
  const seen = new Map(); // object -> { path, read: Set, enumerated }
  const proxies = new WeakMap();
  function wrap(obj, path) {
    if (obj === null || typeof obj !== "object") return obj;
    if (proxies.has(obj)) return proxies.get(obj);
    const info = { path, read: new Set(), enumerated: false, obj };
    seen.set(obj, info);
    const p = new Proxy(obj, {
      get(t, key, recv) {
        if (typeof key === "string") info.read.add(key);
        const v = Reflect.get(t, key, recv);
        if (typeof key === "string" && Object.prototype.hasOwnProperty.call(t, key))
          return wrap(v, Array.isArray(t) ? `${path}[${key}]` : `${path}.${key}`);
        return v;
      },
      has(t, key) {
        if (typeof key === "string") info.read.add(key);
        return Reflect.has(t, key);
      },
      ownKeys(t) {
        info.enumerated = true;
        return Reflect.ownKeys(t);
      },
    });
    proxies.set(obj, p);
    return p;
  }
  return { proxy: wrap(root, ""), seen };
}

function unknownFields(seen) {
  const out = [];
  for (const info of seen.values()) {
    if (Array.isArray(info.obj) || info.enumerated) continue;
    const keys = Object.keys(info.obj);
    // an object whose schema names no property at all is free-form
    if (info.read.size === 0) continue;
    for (const k of keys) if (!info.read.has(k)) out.push(`${info.path}.${k}`.replace(/^\./, ""));
  }
  return out;
}

function describe(obj) {
  return `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
}

export function validateObjects(objects) {
  const problems = [];
  for (const obj of objects) {
    const where = describe(obj);
    if (!obj || typeof obj !== "object" || !obj.apiVersion || !obj.kind) {
      problems.push(`${where}: not a Kubernetes object (apiVersion and kind required)`);
      continue;
    }
    const Model = modelFor(obj.apiVersion, obj.kind);
    if (!Model) {
      problems.push(`${where}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`);
      continue;
    }
    // kustomize wraps long base64 values over lines; the API server's
    // decoder skips the line breaks, so the schema's "byte" check should too
    if (obj.kind === "Secret" && obj.data)
      for (const k of Object.keys(obj.data))
        if (typeof obj.data[k] === "string") obj.data[k] = obj.data[k].replace(/\s+/g, "");
    const model = new Model(obj);
    try {
      model.validate();
    } catch (e) {
      const details = (e.errors ?? []).map(
        (x) => `${x.instancePath || "/"} ${x.message}${x.params?.missingProperty ? ` (${x.params.missingProperty})` : ""}`,
      );
      problems.push(`${where}: schema: ${details.length ? details.join("; ") : e.message}`);
      continue;
    }
    const { proxy, seen } = tracked(model);
    Model.prototype.validate.call(proxy);
    for (const f of unknownFields(seen)) problems.push(`${where}: unknown field ${f}`);
  }
  return problems;
}

function parseArgs(argv) {
  const a = { files: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === "--version") a.version = argv[++i];
    else if (argv[i] === "--secret-example") a.secretExample = argv[++i];
    else if (argv[i] === "--binary") a.binary = argv[++i];
    else a.files.push(argv[i]);
  }
  if (!a.version || !a.secretExample || !a.binary || a.files.length === 0) {
    console.error("usage: node k8s.mjs --version X --secret-example FILE --binary VID2MP3 RENDERED.yaml...");
    process.exit(2);
  }
  return a;
}

export function loadYaml(file) {
  const docs = parseAllDocuments(readFileSync(file, "utf8"), { merge: true });
  const out = [];
  for (const d of docs) {
    if (d.errors.length) throw new Error(`${file}: ${d.errors[0].message}`);
    const v = d.toJS();
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = parseArgs(process.argv.slice(2));
  const secretExample = loadYaml(args.secretExample)[0];
  let failed = false;
  for (const file of args.files) {
    let objects;
    try {
      objects = loadYaml(file);
    } catch (e) {
      console.log(`${file}: ${e.message}`);
      failed = true;
      continue;
    }
    const problems = [
      ...validateObjects(objects),
      ...k8sRules(objects, { version: args.version, secretExample, configFor: makeConfigFor(args.binary) }),
    ];
    for (const p of problems) console.log(`${file}: ${p}`);
    if (problems.length) failed = true;
    else console.log(`${file}: ${objects.length} objects valid`);
  }
  process.exit(failed ? 1 : 0);
}

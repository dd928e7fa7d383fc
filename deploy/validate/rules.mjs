// The project's own rules for deployment files: what a schema cannot say.
// Each function returns a list of problems, one line each.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

// A function that runs `BINARY config` with exactly env (in an empty
// directory) and returns { ok, settings, error }: the settings vid2mp3
// would run with, or the one line it refuses them with.
export function makeConfigFor(binary) {
  return (env) => {
    const dir = mkdtempSync(join(tmpdir(), "vid2mp3-config-"));
    try {
      const r = spawnSync(binary, ["config"], {
        cwd: dir,
        env: { DATA_DIR: dir, ...env, PATH: process.env.PATH },
        encoding: "utf8",
        timeout: 10000,
      });
      if (r.status !== 0) return { ok: false, error: (r.stderr || r.error?.message || `exit ${r.status}`).trim() };
      const settings = {};
      for (const line of r.stdout.split("\n")) {
        const i = line.indexOf("=");
        if (i > 0) settings[line.slice(0, i)] = line.slice(i + 1);
      }
      return { ok: true, settings };
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const SERVICES = ["auth", "gateway", "converter", "notifier"];
const DEFAULT_GRACE = 25; // SHUTDOWN_GRACE_SECONDS' default (src/core/config.c)
const MARGIN = 5; // seconds the orchestrator's grace must exceed the drain by

const SERVING = ["Deployment", "StatefulSet", "DaemonSet"]; // run until stopped
const WORKLOADS = [...SERVING, "Job", "CronJob"];
const TASKS = ["gc", "migrate"]; // vid2mp3 commands a Job may run

// The pod template of a workload (a CronJob's is one level deeper).
function podTemplate(w) {
  return w.kind === "CronJob" ? w.spec?.jobTemplate?.spec?.template : w.spec?.template;
}

function name(o) {
  return `${o.kind}/${o.metadata?.name}`;
}

// "repo/name:tag" -> { name, tag }; digests count as pinned.
export function splitImage(image) {
  if (typeof image !== "string" || image === "") return { name: "", tag: "" };
  if (image.includes("@")) return { name: image.split("@")[0], tag: "@digest" };
  const slash = image.lastIndexOf("/");
  const colon = image.lastIndexOf(":");
  if (colon > slash) return { name: image.slice(0, colon), tag: image.slice(colon + 1) };
  return { name: image, tag: "" };
}

export function imageProblem(image) {
  const { tag } = splitImage(image);
  if (tag === "") return `image ${image} has no tag (that means latest)`;
  if (tag === "latest") return `image ${image} uses the latest tag`;
  return null;
}

function isOurs(container) {
  const { name: n } = splitImage(container.image);
  return n === "vid2mp3" || n.endsWith("/vid2mp3");
}

// Seconds from "70s", "5m", "1m30s", or a number.
export function seconds(v) {
  if (typeof v === "number") return v;
  if (typeof v !== "string") return NaN;
  const m = v.match(/^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/);
  if (!m || v === "") return NaN;
  return (+(m[1] ?? 0)) * 3600 + (+(m[2] ?? 0)) * 60 + +(m[3] ?? 0);
}

// The environment a container gets: its ConfigMaps, then its env list
// (later wins, as in Kubernetes); values from a Secret come from the render
// or, for the documented external Secret, from its example (a placeholder
// too short to be a JWT secret becomes a valid dummy: the example's values
// are checked for their form, not their secrecy).
export function resolveEnv(container, { configMaps, secrets, exampleName, example }) {
  const env = {};
  const secretValue = (name, key) => {
    const s = secrets.get(name);
    if (s) {
      if (s.stringData?.[key] !== undefined) return String(s.stringData[key]);
      if (s.data?.[key] !== undefined) return Buffer.from(String(s.data[key]).replace(/\s+/g, ""), "base64").toString();
      return undefined;
    }
    if (name !== exampleName || example?.stringData?.[key] === undefined) return undefined;
    const v = String(example.stringData[key]);
    return key === "JWT_SECRET" && v.length < 32 ? "example-placeholder-0123456789abcdef0123" : v;
  };
  for (const ref of container.envFrom ?? []) {
    const cm = configMaps.get(ref.configMapRef?.name);
    for (const [k, v] of Object.entries(cm?.data ?? {})) env[k] = String(v);
  }
  for (const e of container.env ?? []) {
    let v;
    if (e.value !== undefined) v = String(e.value);
    else if (e.valueFrom?.configMapKeyRef) v = configMaps.get(e.valueFrom.configMapKeyRef.name)?.data?.[e.valueFrom.configMapKeyRef.key];
    else if (e.valueFrom?.secretKeyRef) v = secretValue(e.valueFrom.secretKeyRef.name, e.valueFrom.secretKeyRef.key);
    if (v !== undefined) env[e.name] = String(v);
  }
  return env;
}

// Seconds a preStop hook pauses: `sleep N`, `sh -c "sleep N"`, or the
// lifecycle sleep action.
function preStopPause(container) {
  const ps = container.lifecycle?.preStop;
  if (ps?.sleep?.seconds !== undefined) return +ps.sleep.seconds;
  const cmd = (ps?.exec?.command ?? []).join(" ");
  const m = cmd.match(/\bsleep\s+(\d+)/);
  return m ? +m[1] : 0;
}

// What the service's drain needs: SHUTDOWN_GRACE_SECONDS plus the pause.
function drainSeconds(container, env) {
  const grace = env.SHUTDOWN_GRACE_SECONDS !== undefined ? +env.SHUTDOWN_GRACE_SECONDS : DEFAULT_GRACE;
  return grace + preStopPause(container);
}

// "2049m", "2Gi", "512Mi", "1048576" -> bytes (nginx's k/m/g are binary).
export function bytes(v) {
  const m = String(v ?? "").trim().match(/^(\d+(?:\.\d+)?)([kKmMgGtT]i?)?[bB]?$/);
  if (!m) return NaN;
  const unit = (m[2] ?? "").toLowerCase().replace("i", "");
  return +m[1] * 1024 ** ({ "": 0, k: 1, m: 2, g: 3, t: 4 }[unit]);
}

function labelsMatch(selector, labels) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

// What each service needs to keep its data and do its job, and the port it
// listens on, from the settings `vid2mp3 config` prints.
const NEEDS = {
  auth: [["MYSQL_HOST", "accounts would go to SQLite in the pod's emptyDir and be lost"], ["JWT_SECRET", "auth refuses to start without it"]],
  gateway: [["MONGODB_URI", "videos and jobs would go to the pod's emptyDir"], ["RABBITMQ_URL", "jobs would be queued in the pod's emptyDir"]],
  converter: [["MONGODB_URI", "videos and jobs would be looked for in the pod's emptyDir"], ["RABBITMQ_URL", "the converter would read a queue in its own emptyDir"]],
  notifier: [["MONGODB_URI", "jobs would be looked for in the pod's emptyDir"], ["RABBITMQ_URL", "the notifier would read a queue in its own emptyDir"]],
};
export function servicePort(svc, settings) {
  const metrics = +settings.METRICS_PORT || 0;
  return { auth: +settings.AUTH_PORT, gateway: +settings.GATEWAY_PORT, converter: metrics || 9102, notifier: metrics || 9103 }[svc];
}

// Checks one vid2mp3 service's resolved environment: `vid2mp3 config`
// (through configFor) must accept it, the service must have what it needs,
// and the ports it listens on must be the ones declared. Returns settings.
function checkServiceEnv(p, at, svc, env, configFor, declaredPorts) {
  for (const [key, why] of NEEDS[svc] ?? [])
    if (!env[key]) p.push(`${at}: no ${key}: ${why}`);
  if (svc === "notifier" && !env.SMTP_URL && !env.GMAIL_ADDRESS)
    p.push(`${at}: no SMTP_URL: emails would be written to the pod's emptyDir and lost`);
  if (svc === "auth" && !env.TRUSTED_PROXIES)
    p.push(`${at}: no TRUSTED_PROXIES: every login the gateway forwards counts against the gateway's address`);
  if (!configFor) return {};
  const { ok, settings, error } = configFor(env);
  if (!ok) {
    p.push(`${at}: vid2mp3 config refuses the environment: ${error}`);
    return {};
  }
  const port = servicePort(svc, settings);
  if (declaredPorts && port && !declaredPorts.includes(port))
    p.push(`${at}: the service listens on ${port}, but the container declares ${declaredPorts.join(", ") || "no port"}`);
  return settings;
}

// The paths docs/openapi.json gives the gateway (its own servers, or the
// document's when it has none), except the operations endpoints that stay
// inside; a template such as /jobs/{id} as /jobs/x.
const INTERNAL = ["/metrics", "/healthz", "/readyz"];
function gatewayPublicPaths() {
  const doc = JSON.parse(readFileSync(new URL("../../docs/openapi.json", import.meta.url), "utf8"));
  const gateway = (servers) => (servers ?? doc.servers ?? []).some((x) => /gateway/i.test(x.description ?? ""));
  const out = [];
  for (const [path, item] of Object.entries(doc.paths ?? {})) {
    const ops = Object.values(item).filter((o) => o && typeof o === "object" && !Array.isArray(o) && (o.responses || o.servers));
    if (!INTERNAL.includes(path) && ops.some((o) => gateway(o.servers ?? item.servers))) out.push(path.replace(/\{[^}]*\}/g, "x"));
  }
  return out;
}

export function k8sRules(objects, { version, secretExample, configFor }) {
  const p = [];
  const byKind = (k) => objects.filter((o) => o.kind === k);
  const configMaps = new Map(byKind("ConfigMap").map((o) => [o.metadata.name, o]));
  const secrets = new Map(byKind("Secret").map((o) => [o.metadata.name, o]));
  const exampleName = secretExample?.metadata?.name;
  const exampleKeys = new Set(Object.keys(secretExample?.stringData ?? {}));
  const envCtx = { configMaps, secrets, exampleName, example: secretExample };
  const gatewaySettings = [];
  const autoscaled = new Set(
    [...byKind("HorizontalPodAutoscaler"), ...byKind("ScaledObject")].map((a) => a.spec?.scaleTargetRef?.name),
  );
  const workloads = objects.filter((o) => WORKLOADS.includes(o.kind));
  const deployments = byKind("Deployment");
  const ourImages = new Set();
  const ourServices = new Set();

  for (const w of workloads) {
    const pod = podTemplate(w)?.spec ?? {};
    const serving = SERVING.includes(w.kind);
    const podNonRoot = pod.securityContext?.runAsNonRoot === true;
    const seccomp = pod.securityContext?.seccompProfile?.type;
    if (!["RuntimeDefault", "Localhost"].includes(seccomp))
      p.push(`${name(w)}: seccompProfile is not RuntimeDefault (Pod Security "restricted" refuses the pod)`);
    if (w.kind === "Deployment" && autoscaled.has(w.metadata.name) && w.spec?.replicas !== undefined)
      p.push(`${name(w)}: sets replicas though an autoscaler owns the count (each apply would reset it)`);
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
      const at = `${name(w)} container ${c.name}`;
      const img = imageProblem(c.image);
      if (img) p.push(`${at}: ${img}`);
      if (serving && !c.readinessProbe) p.push(`${at}: no readinessProbe`);
      if (serving && !c.livenessProbe) p.push(`${at}: no livenessProbe`);
      // A datastore's first start initialises its volume, for longer than
      // a liveness probe waits: killed mid-way, it restarts half made.
      if (w.kind === "StatefulSet" && (w.spec?.volumeClaimTemplates ?? []).length && c.livenessProbe && !c.startupProbe)
        p.push(`${at}: a livenessProbe without a startupProbe (the first start initialises the volume)`);
      for (const k of ["cpu", "memory"])
        if (!c.resources?.requests?.[k]) p.push(`${at}: no resources.requests.${k}`);
      if (!c.resources?.limits?.memory) p.push(`${at}: no resources.limits.memory`);
      if (!(podNonRoot || c.securityContext?.runAsNonRoot === true))
        p.push(`${at}: runAsNonRoot is not set (pod or container securityContext)`);
      if (c.securityContext?.allowPrivilegeEscalation !== false)
        p.push(`${at}: allowPrivilegeEscalation is not false`);
      if (!(c.securityContext?.capabilities?.drop ?? []).includes("ALL"))
        p.push(`${at}: capabilities are not dropped (drop: [ALL])`);
      // probes name ports the container declares
      const ports = new Set((c.ports ?? []).flatMap((x) => [x.name, x.containerPort]));
      for (const probe of ["readinessProbe", "livenessProbe", "startupProbe"]) {
        const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
        if (port !== undefined && !ports.has(port)) p.push(`${at}: ${probe} port ${port} is not a container port`);
      }
      if (!isOurs(c)) continue;

      // vid2mp3's own containers
      ourImages.add(c.image);
      const svc = (c.args ?? c.command ?? [])[0];
      const allowed = serving ? SERVICES : TASKS;
      if (!allowed.includes(svc)) p.push(`${at}: args[0] must be one of ${allowed.join(", ")}, got ${svc}`);
      else if (serving) ourServices.add(svc);
      if (splitImage(c.image).tag !== version)
        p.push(`${at}: image ${c.image} is not tagged with the project version ${version}`);
      if (c.securityContext?.readOnlyRootFilesystem !== true) p.push(`${at}: readOnlyRootFilesystem is not true`);
      const mounts = new Map((c.volumeMounts ?? []).map((m) => [m.mountPath, m.name]));
      const vol = (pod.volumes ?? []).find((v) => v.name === mounts.get("/tmp"));
      if (!vol?.emptyDir) p.push(`${at}: no emptyDir mounted at /tmp (the root filesystem is read-only)`);
      const env = resolveEnv(c, envCtx);
      if (!serving) continue;
      const declared = (c.ports ?? []).map((x) => x.containerPort);
      const settings = checkServiceEnv(p, at, svc, env, configFor, declared);
      if (svc === "gateway") gatewaySettings.push(settings);
      if (svc === "converter") {
        const max = +(settings.CONVERT_MAX_MP3_BYTES ?? env.CONVERT_MAX_MP3_BYTES ?? 2147483648);
        const limit = bytes(vol?.emptyDir?.sizeLimit);
        if (vol?.emptyDir && !(limit >= max))
          p.push(`${at}: /tmp holds ${vol.emptyDir.sizeLimit ?? "no limit"}, below CONVERT_MAX_MP3_BYTES ${max} (big MP3s are spilled there)`);
      }
      const drain = drainSeconds(c, env);
      const grace = pod.terminationGracePeriodSeconds ?? 30;
      if (grace < drain + MARGIN)
        p.push(`${at}: terminationGracePeriodSeconds ${grace} is below the drain time ${drain} s + ${MARGIN} s`);
      if (c.readinessProbe?.httpGet?.path !== "/readyz") p.push(`${at}: readinessProbe is not GET /readyz`);
      if (c.livenessProbe?.httpGet?.path !== "/healthz") p.push(`${at}: livenessProbe is not GET /healthz`);
      if (svc === "gateway" && !preStopPause(c)) p.push(`${at}: no preStop pause before the socket closes`);
    }

    // references to ConfigMaps and Secrets resolve
    for (const c of pod.containers ?? []) {
      const refs = [
        ...(c.envFrom ?? []).map((r) => ["ConfigMap", r.configMapRef?.name, null, false]),
        ...(c.envFrom ?? []).map((r) => ["Secret", r.secretRef?.name, null, r.secretRef?.optional]),
        ...(c.env ?? []).map((e) => ["ConfigMap", e.valueFrom?.configMapKeyRef?.name, e.valueFrom?.configMapKeyRef?.key, e.valueFrom?.configMapKeyRef?.optional]),
        ...(c.env ?? []).map((e) => ["Secret", e.valueFrom?.secretKeyRef?.name, e.valueFrom?.secretKeyRef?.key, e.valueFrom?.secretKeyRef?.optional]),
      ].filter((r) => r[1]);
      for (const [kind, ref, key, optional] of refs) {
        const at = `${name(w)} container ${c.name}`;
        if (kind === "ConfigMap") {
          const cm = configMaps.get(ref);
          if (!cm) p.push(`${at}: ConfigMap ${ref} is not in the render`);
          else if (key && cm.data?.[key] === undefined && !optional) p.push(`${at}: ConfigMap ${ref} has no key ${key}`);
          continue;
        }
        const s = secrets.get(ref);
        if (s) {
          const keys = new Set([...Object.keys(s.data ?? {}), ...Object.keys(s.stringData ?? {})]);
          if (key && !keys.has(key) && !optional) p.push(`${at}: Secret ${ref} has no key ${key}`);
        } else if (ref !== exampleName) {
          p.push(`${at}: Secret ${ref} is neither in the render nor the documented ${exampleName}`);
        } else if (key && !exampleKeys.has(key)) {
          p.push(`${at}: key ${key} of Secret ${ref} is not in secret.example.yaml`);
        }
      }
    }
  }

  if (ourImages.size > 1) p.push(`the services use different images: ${[...ourImages].join(", ")}`);
  for (const s of SERVICES) if (!ourServices.has(s)) p.push(`no Deployment runs vid2mp3 ${s}`);

  // The example Secret is never deployed as it is.
  for (const s of secrets.values()) {
    const values = [...Object.values(s.stringData ?? {}), ...Object.values(s.data ?? {}).map((v) => Buffer.from(v, "base64").toString())];
    if (values.some((v) => String(v).includes("REPLACE"))) p.push(`${name(s)}: holds the example's REPLACE placeholders`);
  }

  // Services select pods and name their ports.
  for (const s of byKind("Service")) {
    if (!s.spec?.selector || !Object.keys(s.spec.selector).length) {
      p.push(`${name(s)}: has no selector`);
      continue;
    }
    const w = workloads.find((x) => SERVING.includes(x.kind) && labelsMatch(s.spec?.selector, x.spec?.template?.metadata?.labels));
    if (!w) {
      p.push(`${name(s)}: selects no workload`);
      continue;
    }
    const ports = new Set((w.spec.template.spec.containers ?? []).flatMap((c) => (c.ports ?? []).flatMap((x) => [x.name, x.containerPort])));
    for (const port of s.spec?.ports ?? [])
      if (!ports.has(port.targetPort ?? port.port)) p.push(`${name(s)}: targetPort ${port.targetPort} is not a port of ${name(w)}`);
  }

  // Ingress backends exist; operations endpoints stay inside; the body
  // limit lets the largest upload through.
  for (const ing of byKind("Ingress")) {
    for (const rule of ing.spec?.rules ?? [])
      for (const path of rule.http?.paths ?? []) {
        const b = path.backend?.service;
        const s = byKind("Service").find((x) => x.metadata.name === b?.name);
        const matches = (port) =>
          (b.port?.name !== undefined && port.name === b.port.name) ||
          (b.port?.number !== undefined && port.port === b.port.number);
        if (!s) p.push(`${name(ing)}: backend Service ${b?.name} is not in the render`);
        else if (!(s.spec.ports ?? []).some(matches))
          p.push(`${name(ing)}: Service ${b.name} has no port ${b.port?.name ?? b.port?.number}`);
        for (const inner of INTERNAL) {
          const prefix = path.pathType !== "Exact" && (path.path === "/" || inner === path.path || inner.startsWith(`${path.path.replace(/\/$/, "")}/`));
          if (prefix || path.path === inner) p.push(`${name(ing)}: path ${path.path} (${path.pathType}) publishes ${inner}`);
        }
      }
    // Every public path the gateway serves (docs/openapi.json, which a unit
    // test holds to the gateway's routes) reaches a Service of the gateway;
    // the event stream is not buffered and outlives its 15 s keep-alive.
    const gatewayServices = byKind("Service")
      .filter((s) => deployments.some((d) => d.metadata.name === "gateway" && labelsMatch(s.spec?.selector, d.spec?.template?.metadata?.labels)))
      .map((s) => s.metadata.name);
    const routed = (path) =>
      (ing.spec?.rules ?? []).some((rule) =>
        (rule.http?.paths ?? []).some(
          (x) =>
            gatewayServices.includes(x.backend?.service?.name) &&
            (x.pathType === "Exact"
              ? x.path === path
              : x.path === "/" || path === x.path.replace(/\/$/, "") || path.startsWith(`${x.path.replace(/\/$/, "")}/`)),
        ),
      );
    for (const path of gatewayPublicPaths())
      if (!routed(path)) p.push(`${name(ing)}: does not publish the gateway's ${path} (docs/openapi.json)`);
    const ann = ing.metadata?.annotations ?? {};
    if (ann["nginx.ingress.kubernetes.io/proxy-buffering"] !== "off")
      p.push(`${name(ing)}: proxy-buffering is not "off" (uploads and /jobs/events must stream)`);
    if (!(+(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"] ?? 60) > 15))
      p.push(`${name(ing)}: proxy-read-timeout is not above /jobs/events' 15 s keep-alive`);
    const body = ing.metadata?.annotations?.["nginx.ingress.kubernetes.io/proxy-body-size"];
    for (const gw of gatewaySettings) {
      const need = +(gw.MAX_UPLOAD_BYTES ?? 2147483648) + 64 * 1024;
      if (!(bytes(body) >= need))
        p.push(`${name(ing)}: proxy-body-size ${body ?? "unset (nginx: 1m)"} is below MAX_UPLOAD_BYTES + 64 KiB of form (${need} bytes)`);
    }
  }

  // Every Deployment of ours has a PodDisruptionBudget.
  const pdbs = byKind("PodDisruptionBudget");
  for (const d of deployments) {
    if (!(d.spec?.template?.spec?.containers ?? []).some(isOurs)) continue;
    const pdb = pdbs.find((b) => labelsMatch(b.spec?.selector?.matchLabels, d.spec.template.metadata?.labels));
    if (!pdb) {
      p.push(`${name(d)}: no PodDisruptionBudget selects it`);
      continue;
    }
    const replicas = d.spec.replicas ?? 1;
    const { maxUnavailable: maxU, minAvailable: minA } = pdb.spec ?? {};
    const blocks =
      (maxU !== undefined && (maxU === 0 || maxU === "0%")) ||
      (minA !== undefined && (typeof minA === "number" ? minA >= replicas : minA === "100%"));
    if (blocks) p.push(`${name(pdb)}: lets no pod of ${name(d)} go: node drains would hang`);
  }

  // Autoscalers target something that exists, and one autoscaler per target.
  const scaled = new Map();
  const targetOf = (o) => (o.kind === "ScaledObject" ? o.spec?.scaleTargetRef?.name : o.spec?.scaleTargetRef?.name);
  for (const a of [...byKind("HorizontalPodAutoscaler"), ...byKind("ScaledObject")]) {
    const t = targetOf(a);
    if (!deployments.some((d) => d.metadata.name === t)) p.push(`${name(a)}: scales ${t}, which is not a Deployment in the render`);
    if (scaled.has(t)) p.push(`${name(a)}: ${t} is already scaled by ${scaled.get(t)}`);
    scaled.set(t, name(a));
  }
  const RABBIT_AUTH = ["host", "username", "password", "vhostName", "ca", "cert", "key", "keyPassword", "tls", "unsafeSsl"];
  for (const so of byKind("ScaledObject")) {
    const target = deployments.find((d) => d.metadata.name === so.spec?.scaleTargetRef?.name);
    const c = (target?.spec?.template?.spec?.containers ?? []).find(isOurs);
    const queue = c ? resolveEnv(c, envCtx).VIDEO_QUEUE ?? "video" : undefined;
    for (const t of so.spec?.triggers ?? []) {
      if (t.type !== "rabbitmq") {
        p.push(`${name(so)}: trigger type ${t.type}: want rabbitmq`);
        continue;
      }
      if (t.metadata?.protocol !== "http") p.push(`${name(so)}: the rabbitmq trigger must use protocol: http (the management API)`);
      if (!["QueueLength", "MessageRate"].includes(t.metadata?.mode)) p.push(`${name(so)}: trigger mode ${t.metadata?.mode}: want QueueLength or MessageRate`);
      if (queue !== undefined && t.metadata?.queueName !== queue)
        p.push(`${name(so)}: trigger queueName ${t.metadata?.queueName} is not the converter's VIDEO_QUEUE ${queue}`);
      if (!(+t.metadata?.value > 0)) p.push(`${name(so)}: trigger value ${t.metadata?.value}: want a positive number`);
      // QueueLength over http counts messages waiting and being converted
      // (unacknowledged); a pod converts CONVERTER_WORKERS at once. A larger
      // value leaves videos waiting, and scales pods away mid-conversion
      // once the queue is empty.
      const workers = c ? +(resolveEnv(c, envCtx).CONVERTER_WORKERS ?? 0) : undefined;
      if (t.metadata?.mode === "QueueLength" && workers !== undefined) {
        if (!(workers > 0)) p.push(`${name(so)}: the converter sets no CONVERTER_WORKERS, so no trigger value can match it`);
        else if (+t.metadata?.value !== workers)
          p.push(`${name(so)}: trigger value ${t.metadata?.value} is not the converter's CONVERTER_WORKERS ${workers} (messages per pod)`);
        if (t.metadata?.excludeUnacknowledged === "true")
          p.push(`${name(so)}: excludeUnacknowledged would scale converters away while they convert`);
      }
      const authName = t.authenticationRef?.name;
      const auth = byKind("TriggerAuthentication").find((a) => a.metadata.name === authName);
      if (authName && !auth) p.push(`${name(so)}: authenticationRef ${authName} is not in the render`);
      if (!authName && !t.metadata?.host) p.push(`${name(so)}: the rabbitmq trigger has no host and no authenticationRef`);
    }
  }
  for (const a of byKind("TriggerAuthentication"))
    for (const ref of a.spec?.secretTargetRef ?? []) {
      if (!RABBIT_AUTH.includes(ref.parameter)) p.push(`${name(a)}: parameter ${ref.parameter} is not one the rabbitmq scaler reads`);
      if (!secrets.has(ref.name) && ref.name !== exampleName) p.push(`${name(a)}: Secret ${ref.name} is neither in the render nor ${exampleName}`);
      else if (!secrets.has(ref.name) && !exampleKeys.has(ref.key)) p.push(`${name(a)}: key ${ref.key} of Secret ${ref.name} is not in secret.example.yaml`);
    }

  return p;
}

// Compose's "${NAME:?message}", "${NAME:-default}" and "${NAME}": the
// default when given, else a stand-in of the right form.
function interpolate(value) {
  return String(value).replace(/\$\{([A-Z0-9_]+)(?::?([-?])([^}]*))?\}/g, (_, name, op, arg) => {
    if (op === "-") return arg;
    return name === "JWT_SECRET" ? "compose-stand-in-0123456789abcdef0123456789" : `stand-in-${name.toLowerCase()}`;
  });
}

function composeEnv(service) {
  const e = service.environment ?? {};
  const env = {};
  if (Array.isArray(e)) {
    for (const item of e) {
      const i = String(item).indexOf("=");
      if (i > 0) env[item.slice(0, i)] = interpolate(item.slice(i + 1));
    }
  } else for (const [k, v] of Object.entries(e)) if (v !== null && v !== undefined) env[k] = interpolate(v);
  return env;
}

function command(service) {
  return Array.isArray(service.command) ? service.command : String(service.command ?? "").split(/\s+/);
}

// compose.yaml, parsed (merge keys resolved).
export function composeRules(doc, { version, configFor }) {
  const p = [];
  const services = doc?.services ?? {};
  const declared = new Set(Object.keys(doc?.volumes ?? {}));
  const ours = new Set();
  for (const [n, s] of Object.entries(services)) {
    const at = `service ${n}`;
    const img = imageProblem(s.image);
    if (img) p.push(`${at}: ${img}`);
    if (!s.healthcheck?.test) p.push(`${at}: no healthcheck`);
    for (const [dep, cond] of Object.entries(Array.isArray(s.depends_on) ? Object.fromEntries(s.depends_on.map((d) => [d, {}])) : s.depends_on ?? {})) {
      if (!services[dep]) p.push(`${at}: depends on ${dep}, which is not a service`);
      else if (cond?.condition !== "service_healthy") p.push(`${at}: depends on ${dep} without condition: service_healthy`);
    }
    for (const v of s.volumes ?? []) {
      const src = typeof v === "string" ? v.split(":")[0] : v.source;
      if (src && !src.startsWith(".") && !src.startsWith("/") && !declared.has(src))
        p.push(`${at}: volume ${src} is not declared under volumes`);
    }
    const { name: imgName, tag } = splitImage(s.image);
    if (imgName !== "vid2mp3" && !imgName.endsWith("/vid2mp3")) {
      // a server: its data must survive a re-create
      if (!(s.volumes ?? []).some((v) => declared.has(typeof v === "string" ? v.split(":")[0] : v.source)))
        p.push(`${at}: keeps its data in no named volume`);
      continue;
    }
    ours.add(s.image);
    const svc = command(s)[0];
    if (!SERVICES.includes(svc)) p.push(`${at}: command must start with one of ${SERVICES.join(", ")}`);
    if (tag !== version) p.push(`${at}: image ${s.image} is not tagged with the project version ${version}`);
    const env = composeEnv(s);
    const grace = Number(env.SHUTDOWN_GRACE_SECONDS ?? DEFAULT_GRACE);
    const stop = s.stop_grace_period === undefined ? 10 : seconds(s.stop_grace_period);
    if (!(stop >= grace + MARGIN)) p.push(`${at}: stop_grace_period ${s.stop_grace_period ?? "10s"} is below SHUTDOWN_GRACE_SECONDS ${grace} + ${MARGIN} s`);
    if (s.read_only !== true) p.push(`${at}: read_only is not true`);
    if (!(s.cap_drop ?? []).includes("ALL")) p.push(`${at}: cap_drop does not include ALL`);
    const test = Array.isArray(s.healthcheck?.test) ? s.healthcheck.test : [];
    const probe = test.indexOf("probe");
    if (probe < 0 || test[probe + 1] !== svc) p.push(`${at}: the healthcheck does not run vid2mp3 probe ${svc}`);
    const settings = SERVICES.includes(svc) ? checkServiceEnv(p, at, svc, env, configFor, null) : {};
    if (svc === "gateway" && configFor) {
      const port = servicePort(svc, settings);
      const published = (s.ports ?? []).map((x) => +String(typeof x === "object" ? x.target : x).split(":").pop());
      if (!published.includes(port)) p.push(`${at}: the gateway listens on ${port}, but no published port targets it`);
    }
  }
  if (ours.size > 1) p.push(`the services use different images: ${[...ours].join(", ")}`);
  for (const s of SERVICES)
    if (!Object.values(services).some((x) => command(x)[0] === s)) p.push(`no service runs vid2mp3 ${s}`);
  return p;
}

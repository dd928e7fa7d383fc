// The project's own rules for deployment files: what a schema cannot say.
// Each function returns a list of problems, one line each.

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

// What the service's drain needs: SHUTDOWN_GRACE_SECONDS from the env list,
// a ConfigMap it loads, or the default; plus a preStop `sleep N`.
function drainSeconds(container, configMaps) {
  let grace = DEFAULT_GRACE;
  for (const ref of container.envFrom ?? []) {
    const cm = configMaps.get(ref.configMapRef?.name);
    if (cm?.data?.SHUTDOWN_GRACE_SECONDS !== undefined) grace = +cm.data.SHUTDOWN_GRACE_SECONDS;
  }
  for (const e of container.env ?? [])
    if (e.name === "SHUTDOWN_GRACE_SECONDS" && e.value !== undefined) grace = +e.value;
  const cmd = container.lifecycle?.preStop?.exec?.command ?? [];
  const pause = cmd[0] === "sleep" ? +cmd[1] || 0 : 0;
  return grace + pause;
}

function envValue(container, key, configMaps) {
  for (const e of container.env ?? []) if (e.name === key) return e.value ?? (e.valueFrom ? "(from a reference)" : "");
  for (const ref of container.envFrom ?? []) {
    const cm = configMaps.get(ref.configMapRef?.name);
    if (cm?.data?.[key] !== undefined) return cm.data[key];
  }
  return undefined;
}

function labelsMatch(selector, labels) {
  return Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
}

export function k8sRules(objects, { version, secretExample }) {
  const p = [];
  const byKind = (k) => objects.filter((o) => o.kind === k);
  const configMaps = new Map(byKind("ConfigMap").map((o) => [o.metadata.name, o]));
  const secrets = new Map(byKind("Secret").map((o) => [o.metadata.name, o]));
  const exampleName = secretExample?.metadata?.name;
  const exampleKeys = new Set(Object.keys(secretExample?.stringData ?? {}));
  const workloads = objects.filter((o) => WORKLOADS.includes(o.kind));
  const deployments = byKind("Deployment");
  const ourImages = new Set();
  const ourServices = new Set();

  for (const w of workloads) {
    const pod = podTemplate(w)?.spec ?? {};
    const serving = SERVING.includes(w.kind);
    const podNonRoot = pod.securityContext?.runAsNonRoot === true;
    for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
      const at = `${name(w)} container ${c.name}`;
      const img = imageProblem(c.image);
      if (img) p.push(`${at}: ${img}`);
      if (serving && !c.readinessProbe) p.push(`${at}: no readinessProbe`);
      if (serving && !c.livenessProbe) p.push(`${at}: no livenessProbe`);
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
      if (!serving) continue;
      const drain = drainSeconds(c, configMaps);
      const grace = pod.terminationGracePeriodSeconds ?? 30;
      if (grace < drain + MARGIN)
        p.push(`${at}: terminationGracePeriodSeconds ${grace} is below the drain time ${drain} s + ${MARGIN} s`);
      if (c.readinessProbe?.httpGet?.path !== "/readyz") p.push(`${at}: readinessProbe is not GET /readyz`);
      if (c.livenessProbe?.httpGet?.path !== "/healthz") p.push(`${at}: livenessProbe is not GET /healthz`);
      if (svc === "notifier" && !envValue(c, "SMTP_URL", configMaps) && !envValue(c, "GMAIL_ADDRESS", configMaps))
        p.push(`${at}: no SMTP_URL: emails would be written to the pod's emptyDir and lost`);
      if (svc === "gateway" && !c.lifecycle?.preStop) p.push(`${at}: no preStop pause before the socket closes`);
      if (svc === "auth" && !envValue(c, "TRUSTED_PROXIES", configMaps))
        p.push(`${at}: no TRUSTED_PROXIES: every login the gateway forwards counts against the gateway's address`);
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
    const w = workloads.find((x) => SERVING.includes(x.kind) && labelsMatch(s.spec?.selector, x.spec?.template?.metadata?.labels));
    if (!w) {
      p.push(`${name(s)}: selects no workload`);
      continue;
    }
    const ports = new Set((w.spec.template.spec.containers ?? []).flatMap((c) => (c.ports ?? []).flatMap((x) => [x.name, x.containerPort])));
    for (const port of s.spec?.ports ?? [])
      if (!ports.has(port.targetPort ?? port.port)) p.push(`${name(s)}: targetPort ${port.targetPort} is not a port of ${name(w)}`);
  }

  // Ingress backends exist.
  for (const ing of byKind("Ingress"))
    for (const rule of ing.spec?.rules ?? [])
      for (const path of rule.http?.paths ?? []) {
        const b = path.backend?.service;
        const s = byKind("Service").find((x) => x.metadata.name === b?.name);
        if (!s) p.push(`${name(ing)}: backend Service ${b?.name} is not in the render`);
        else if (!(s.spec.ports ?? []).some((x) => x.name === b.port?.name || x.port === b.port?.number))
          p.push(`${name(ing)}: Service ${b.name} has no port ${b.port?.name ?? b.port?.number}`);
      }

  // Every Deployment of ours has a PodDisruptionBudget.
  const pdbs = byKind("PodDisruptionBudget");
  for (const d of deployments) {
    if (!(d.spec?.template?.spec?.containers ?? []).some(isOurs)) continue;
    if (!pdbs.some((b) => labelsMatch(b.spec?.selector?.matchLabels, d.spec.template.metadata?.labels)))
      p.push(`${name(d)}: no PodDisruptionBudget selects it`);
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
  for (const so of byKind("ScaledObject"))
    for (const t of so.spec?.triggers ?? [])
      if (t.type === "rabbitmq" && t.metadata?.protocol !== "http")
        p.push(`${name(so)}: the rabbitmq trigger must use protocol: http (the management API)`);

  return p;
}

// compose.yaml, parsed (merge keys resolved).
export function composeRules(doc, { version }) {
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
    const cmd = Array.isArray(s.command) ? s.command : String(s.command ?? "").split(/\s+/);
    if (!SERVICES.includes(cmd[0])) p.push(`${at}: command must start with one of ${SERVICES.join(", ")}`);
    if (tag !== version) p.push(`${at}: image ${s.image} is not tagged with the project version ${version}`);
    const grace = Number(s.environment?.SHUTDOWN_GRACE_SECONDS ?? DEFAULT_GRACE);
    const stop = s.stop_grace_period === undefined ? 10 : seconds(s.stop_grace_period);
    if (!(stop >= grace + MARGIN)) p.push(`${at}: stop_grace_period ${s.stop_grace_period ?? "10s"} is below SHUTDOWN_GRACE_SECONDS ${grace} + ${MARGIN} s`);
    if (s.read_only !== true) p.push(`${at}: read_only is not true`);
    if (!(s.cap_drop ?? []).includes("ALL")) p.push(`${at}: cap_drop does not include ALL`);
    if (cmd[0] === "auth" && !s.environment?.TRUSTED_PROXIES)
      p.push(`${at}: no TRUSTED_PROXIES: every login the gateway forwards counts against the gateway's address`);
    if (cmd[0] === "notifier" && !s.environment?.SMTP_URL && !s.environment?.GMAIL_ADDRESS)
      p.push(`${at}: no SMTP_URL: emails would be written to a tmpfs and lost`);
  }
  if (ours.size > 1) p.push(`the services use different images: ${[...ours].join(", ")}`);
  for (const s of SERVICES)
    if (!Object.values(services).some((x) => (Array.isArray(x.command) ? x.command[0] : String(x.command ?? "").split(/\s+/)[0]) === s))
      p.push(`no service runs vid2mp3 ${s}`);
  return p;
}

#!/usr/bin/env bash
# Offline validation of deploy/ (part of `make test`; no cluster, no Docker):
#   deploy/validate/run.sh BUILD_DIR/vid2mp3
#
# 1. Kubernetes: each overlay rendered with `kubectl kustomize`, every
#    object validated against kubernetes-models (KEDA's too), a strict pass
#    for unknown fields, and the project rules (rules.mjs).
# 2. Compose: dclint (the compose specification's schema and its rules, no
#    warnings allowed) and the project rules.
# 3. Dockerfile: dockerfile-utils lint, dockerfilelint, shellcheck on the RUN
#    lines, the project rules (dockerfile.mjs: the runtime packages equal
#    `scripts/install-deps.sh --list runtime`), and that list equal to the
#    packages of the libraries the built binary links (packages.sh).
# 4. Negative tests: each validator is fed a broken copy and must fail with
#    the expected message; a broken file that passes fails this script.
# The npm tools are pinned in deploy/validate/package-lock.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:?usage: deploy/validate/run.sh PATH/TO/vid2mp3}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
version=$(sed -n 's/^project(vid2mp3 VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
[ -n "$version" ] || { echo "validate: no project version in CMakeLists.txt" >&2; exit 1; }

if [ ! -d "$here/node_modules/kubernetes-models" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error) >"$here/npm.log" 2>&1 \
    || { cat "$here/npm.log" >&2; exit 1; }
fi
bins=$here/node_modules/.bin
command -v kubectl >/dev/null || { echo "validate: kubectl not found (scripts/install-deps.sh)" >&2; exit 1; }
command -v shellcheck >/dev/null || { echo "validate: shellcheck not found" >&2; exit 1; }

tmp=$(mktemp -d /tmp/vid2mp3-validate-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
scripts_list() { "$repo/scripts/install-deps.sh" --list runtime >"$tmp/runtime.txt"; }
scripts_list

# Each check takes the root of a tree laid out like the repository.
check_render() { # root overlay
  kubectl kustomize "$1/deploy/k8s/overlays/$2" >"$tmp/$2.yaml" 2>"$tmp/$2.err" \
    || { cat "$tmp/$2.err"; return 1; }
}
check_k8s() { # root overlay
  check_render "$1" "$2" || return 1
  node "$here/k8s.mjs" --version "$version" --binary "$bin" \
    --secret-example "$1/deploy/k8s/secret.example.yaml" "$tmp/$2.yaml"
}
check_dclint() { "$bins/dclint" "$1/deploy/compose.yaml" --max-warnings 0 --color=false; }
check_compose_rules() { node "$here/compose.mjs" --version "$version" --binary "$bin" "$1/deploy/compose.yaml"; }
check_dockerfile_utils() {
  local out
  out=$("$bins/dockerfile-utils" lint "$1/deploy/Dockerfile" 2>&1) || { echo "$out"; return 1; }
  # it exits 0 on problems it reports: any output is a finding
  [ -z "$out" ] || { echo "$out"; return 1; }
}
check_dockerfilelint() { "$bins/dockerfilelint" "$1/deploy/Dockerfile"; }
check_dockerfile_rules() {
  node "$here/dockerfile.mjs" --runtime-packages "$tmp/runtime.txt" \
    --shell-out "$tmp/run-lines.sh" --context "$1" "$1/deploy/Dockerfile"
}
check_run_lines() {
  node "$here/dockerfile.mjs" --runtime-packages "$tmp/runtime.txt" \
    --shell-out "$tmp/run-lines.sh" --context "$1" "$1/deploy/Dockerfile" >/dev/null || true
  shellcheck -s sh "$tmp/run-lines.sh"
}
check_packages() { "$here/packages.sh" "$1" "$bin"; }

failures=0
indent() { printf '%s\n' "$1" | sed 's/^/      /'; }
pass() { # description command...
  local d=$1; shift
  if out=$("$@" 2>&1); then
    echo "ok    $d"
  else
    echo "FAIL  $d"; indent "$out"
    failures=$((failures + 1))
  fi
}

echo "=== deploy: validators on the files as committed (kubectl $(kubectl version --client 2>/dev/null | head -1 | sed 's/.*\(v[0-9][0-9.]*\).*/\1/'))"
for overlay in dev prod; do
  pass "k8s $overlay: kustomize render, schemas, unknown fields, project rules" check_k8s "$repo" "$overlay"
done
pass "compose: dclint" check_dclint "$repo"
pass "compose: project rules" check_compose_rules "$repo"
pass "Dockerfile: dockerfile-utils lint" check_dockerfile_utils "$repo"
pass "Dockerfile: dockerfilelint" check_dockerfilelint "$repo"
pass "Dockerfile: project rules (runtime packages = install-deps.sh --list runtime)" check_dockerfile_rules "$repo"
pass "Dockerfile: shellcheck on the RUN lines" check_run_lines "$repo"
pass "runtime packages = what $(basename "$bin") links" check_packages "$tmp/runtime.txt"

# ---------- negative tests ----------
# A fresh copy of the tree for each: deploy/, .dockerignore, CMakeLists.txt,
# scripts/install-deps.sh; src/, web/ and docs/ linked (COPY must find them).
fresh() {
  rm -rf "$tmp/t"
  mkdir -p "$tmp/t/scripts"
  mkdir -p "$tmp/t/deploy"
  cp -r "$repo/deploy/k8s" "$repo/deploy/Dockerfile" "$repo/deploy/compose.yaml" "$tmp/t/deploy/"
  cp "$repo/.dockerignore" "$repo/CMakeLists.txt" "$tmp/t/"
  cp "$repo/scripts/install-deps.sh" "$tmp/t/scripts/"
  ln -s "$repo/src" "$tmp/t/src"
  ln -s "$repo/web" "$tmp/t/web"
  ln -s "$repo/docs" "$tmp/t/docs"
}
edit() { # file perl-substitution: must change the file
  local f=$tmp/t/$1
  cp "$f" "$tmp/before"
  perl -0pi -e "$2" "$f"
  if cmp -s "$f" "$tmp/before"; then echo "negative test setup: '$2' changed nothing in $1" >&2; return 1; fi
}
# reject DESCRIPTION EXPECTED CHECK [ARG]: the check must fail on the broken
# tree, and its output must contain EXPECTED.
reject() {
  local d=$1 want=$2 check=$3 arg=${4:-$tmp/t} out
  if out=$("$check" "$arg" "${@:5}" 2>&1); then
    echo "FAIL  rejects $d: the validator accepted it"
    failures=$((failures + 1))
  elif ! grep -qF -- "$want" <<<"$out"; then
    echo "FAIL  rejects $d: failed without saying \"$want\":"; indent "$out"
    failures=$((failures + 1))
  else
    echo "ok    rejects $d"
  fi
}

echo "=== deploy: each validator fails on a broken file"
fresh; edit deploy/k8s/base/auth.yaml 's/livenessProbe:/livenesProbe:/'
reject "a misspelt field (strict pass)" "unknown field spec.template.spec.containers[0].livenesProbe" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/base/auth.yaml 's/periodSeconds: 5/periodSeconds: five/'
reject "a wrong type (kubernetes-models schema)" "schema: /spec/template/spec/containers/0/readinessProbe/periodSeconds must be integer" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/converter-keda.yaml 's/minReplicaCount: 1/minReplicaCount: one/'
reject "a wrong type in the ScaledObject (KEDA schema)" "ScaledObject/converter: schema: /spec/minReplicaCount" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/converter-keda.yaml 's/pollingInterval: 10/pollingInterval: 10\n  coolDown: 30/'
reject "an unknown field in the ScaledObject" "unknown field spec.coolDown" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/pdb.yaml 's/kind: PodDisruptionBudget/kind: PodDisruptionBuget/'
reject "an unknown kind" "unknown apiVersion/kind policy/v1 PodDisruptionBuget" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/base/kustomization.yaml 's/  - pdb.yaml\n/  - pdb.yaml\n  - missing.yaml\n/'
reject "a kustomization naming a missing file (kubectl kustomize)" "missing.yaml" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/overlays/prod/kustomization.yaml 's/newTag: 0.1.0/newTag: latest/'
reject "the latest tag" "uses the latest tag" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/dev/mongo.yaml 's/image: mongo:7.0.14/image: mongo/'
reject "an untagged image" "image mongo has no tag" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/overlays/dev/kustomization.yaml 's/newTag: 0.1.0/newTag: 0.0.9/'
reject "an image tag other than the project version" "is not tagged with the project version $version" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/base/converter.yaml 's/terminationGracePeriodSeconds: 330/terminationGracePeriodSeconds: 60/'
reject "a grace period shorter than the converter's drain" "terminationGracePeriodSeconds 60 is below the drain time 300 s" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/gateway.yaml 's/terminationGracePeriodSeconds: 75/terminationGracePeriodSeconds: 65/'
reject "a gateway grace period without room for the preStop pause" "terminationGracePeriodSeconds 65 is below the drain time 65 s" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/notifier.yaml 's/runAsNonRoot: true/runAsNonRoot: false/'
reject "a pod that may run as root" "Deployment/notifier container notifier: runAsNonRoot is not set" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/auth.yaml 's/readOnlyRootFilesystem: true/readOnlyRootFilesystem: false/'
reject "a writable root filesystem" "readOnlyRootFilesystem is not true" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/converter.yaml 's/          readinessProbe:\n            httpGet:\n              path: \/readyz\n              port: metrics\n            periodSeconds: 10\n            failureThreshold: 3\n//'
reject "a missing readiness probe" "Deployment/converter container converter: no readinessProbe" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/dev/mysql.yaml 's/          resources:\n            requests:\n              cpu: 100m\n              memory: 384Mi\n/          resources:\n            requests:\n/'
reject "a container without requests" "StatefulSet/mysql container mysql: no resources.requests.cpu" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/overlays/dev/mysql.yaml 's/          startupProbe:\n/          startProbe:\n/'
reject "a misspelt startupProbe in the dev MySQL (strict pass, startup rule)" "StatefulSet/mysql container mysql: a livenessProbe without a startupProbe" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/base/gateway.yaml 's/key: MONGODB_URI/key: MONGO_URI/'
reject "a Secret key the example does not document" "key MONGO_URI of Secret vid2mp3-secrets is not in secret.example.yaml" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/converter-keda.yaml 's/protocol: http/protocol: amqp/'
reject "a KEDA RabbitMQ trigger on AMQP" "must use protocol: http" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/kustomization.yaml 's/      - SMTP_URL=smtp:\/\/smtp.example.com:587\n//'
reject "a notifier with nowhere to send emails" "no SMTP_URL" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/kustomization.yaml 's/      - TRUSTED_PROXIES=.*\n//'
reject "an auth service that throttles all forwarded logins as one" "Deployment/auth container auth: no TRUSTED_PROXIES" check_k8s "$tmp/t" dev
fresh; edit deploy/k8s/base/gc-cronjob.yaml 's/args: \["gc"\]/args: ["all"]/'
reject "a CronJob running a service" "CronJob/gc container gc: args[0] must be one of gc, migrate, got all" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/ingress.yaml 's/name: gateway\n                port:/name: gateway-svc\n                port:/'
reject "an Ingress to a missing Service" "backend Service gateway-svc is not in the render" check_k8s "$tmp/t" prod

fresh; edit deploy/k8s/base/auth.yaml 's/- name: JWT_SECRET/- name: JWT_SECRETS/'
reject "a misnamed variable auth needs" "Deployment/auth container auth: no JWT_SECRET" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/notifier.yaml 's/- name: MONGODB_URI/- name: MONGODB_URL/'
reject "a service left on embedded storage in its emptyDir" "Deployment/notifier container notifier: no MONGODB_URI" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/kustomization.yaml 's/- SMTP_TLS=required/- SMTP_TLS=sometimes/'
reject "a value vid2mp3 refuses (vid2mp3 config)" "vid2mp3 config refuses the environment: vid2mp3: SMTP_TLS: must be auto, required or optional" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/kustomization.yaml 's/- AUTH_SVC_ADDRESS=auth:5000/- AUTH_SVC_ADDRESS=auth:5000\n      - GATEWAY_PORT=9090/'
reject "a port the container does not declare" "Deployment/gateway container gateway: the service listens on 9090, but the container declares 8080" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/ingress.yaml 's/path: \/jobs\n            pathType: Prefix/path: \/\n            pathType: Prefix/'
reject "an Ingress that publishes /metrics" "path / (Prefix) publishes /metrics" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/ingress.yaml 's/          - path: \/download-session\n/          - path: \/download-sessions\n/'
reject "an Ingress that leaves out a route of the gateway (docs/openapi.json)" "does not publish the gateway's /download-session" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/ingress.yaml 's/proxy-buffering: "off"/proxy-buffering: "on"/'
reject "an Ingress that buffers the event stream" "proxy-buffering is not \"off\"" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/ingress.yaml 's/    nginx.ingress.kubernetes.io\/proxy-body-size: 2049m\n//'
reject "an Ingress with nginx's 1 MiB body limit" "proxy-body-size unset (nginx: 1m) is below MAX_UPLOAD_BYTES" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/auth.yaml 's/        seccompProfile:\n          type: RuntimeDefault\n//'
reject "a pod without a seccomp profile" "Deployment/auth: seccompProfile is not RuntimeDefault" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/converter.yaml 's/^spec:\n/spec:\n  replicas: 2\n/m'
reject "replicas on an autoscaled Deployment" "Deployment/converter: sets replicas though an autoscaler owns the count" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/pdb.yaml 's/maxUnavailable: 1/maxUnavailable: 0/'
reject "a PodDisruptionBudget that blocks drains" "PodDisruptionBudget/auth: lets no pod of Deployment/auth go" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/converter-keda.yaml 's/queueName: video/queueName: videos/'
reject "KEDA watching another queue" "trigger queueName videos is not the converter's VIDEO_QUEUE video" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/converter-keda.yaml 's/value: "1"/value: "2"/'
reject "KEDA leaving videos waiting (value above CONVERTER_WORKERS)" "trigger value 2 is not the converter's CONVERTER_WORKERS 1" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/overlays/prod/converter-keda.yaml 's/name: rabbitmq-management\n---/name: rabbitmq-mgmt\n---/'
reject "KEDA without its TriggerAuthentication" "authenticationRef rabbitmq-mgmt is not in the render" check_k8s "$tmp/t" prod
fresh; edit deploy/k8s/base/converter.yaml 's/sizeLimit: 640Mi/sizeLimit: 256Mi/'
reject "a converter /tmp smaller than its largest MP3" "/tmp holds 256Mi, below CONVERT_MAX_MP3_BYTES 536870912" check_k8s "$tmp/t" prod

fresh; edit deploy/compose.yaml 's/restart: unless-stopped/restrat: unless-stopped/'
reject "compose: a key the compose schema does not know (dclint)" "must NOT have additional properties" check_dclint
fresh; edit deploy/compose.yaml 's/image: mongo:7.0.14/image: mongo:latest/'
reject "compose: the latest tag" "uses the latest tag" check_compose_rules
fresh; edit deploy/compose.yaml 's/stop_grace_period: 310s/stop_grace_period: 30s/'
reject "compose: a converter killed before it drains" "stop_grace_period 30s is below SHUTDOWN_GRACE_SECONDS 300" check_compose_rules
fresh; edit deploy/compose.yaml 's/condition: service_healthy/condition: service_started/'
reject "compose: a dependency not waited for" "without condition: service_healthy" check_compose_rules
fresh; edit deploy/compose.yaml 's/      - mysql-data:\/var\/lib\/mysql\n//'
reject "compose: a database without a volume" "service mysql: keeps its data in no named volume" check_compose_rules
fresh; edit deploy/compose.yaml 's/"probe", "converter"/"probe", "gateway"/'
reject "compose: a health check asking another service" "service converter: the healthcheck does not run vid2mp3 probe converter" check_compose_rules
fresh; edit deploy/compose.yaml 's/SMTP_TLS: optional/SMTP_TLS: sometimes/'
reject "compose: a value vid2mp3 refuses (vid2mp3 config)" "service notifier: vid2mp3 config refuses the environment" check_compose_rules
fresh; edit deploy/compose.yaml 's/      TRUSTED_PROXIES: .*\n//'
reject "compose: auth without TRUSTED_PROXIES" "service auth: no TRUSTED_PROXIES" check_compose_rules

fresh; edit deploy/Dockerfile 's/^COPY --from=build/COPPY --from=build/m'
reject "Dockerfile: an unknown instruction (dockerfile-utils)" "COPPY" check_dockerfile_utils
fresh; edit deploy/Dockerfile 's/^COPY --from=build/COPPY --from=build/m'
reject "Dockerfile: an unknown instruction (dockerfilelint)" "Invalid Command" check_dockerfilelint
fresh
# shellcheck disable=SC2016 # the $ are perl's and the Dockerfile's
edit deploy/Dockerfile 's/^(RUN cmake .*)$/RUN cd build; for f in \$(ls *.o); do rm \$f; done\n$1/m'
reject "Dockerfile: a RUN line shellcheck flags" "SC2045" check_run_lines
fresh; edit deploy/Dockerfile 's/ libswscale6 / /'
reject "Dockerfile: a runtime package left out" "lacks packages install-deps.sh lists: libswscale6" check_dockerfile_rules
fresh; edit deploy/Dockerfile 's/ca-certificates \\/ca-certificates curl \\/'
reject "Dockerfile: a package install-deps.sh does not list" "does not list: curl" check_dockerfile_rules
fresh; edit deploy/Dockerfile 's/^FROM debian:bookworm-slim$/FROM debian:latest/m'
reject "Dockerfile: an unpinned base image" "FROM debian:latest: want a pinned debian:bookworm tag" check_dockerfile_rules
fresh; edit deploy/Dockerfile 's/^USER 10001:10001$/USER root/m'
reject "Dockerfile: running as root" "USER is \"root\"" check_dockerfile_rules
fresh; edit .dockerignore 's/!src\/\n//'
reject "Dockerfile: a COPY source .dockerignore leaves out" "COPY src/: excluded by .dockerignore" check_dockerfile_rules
grep -v '^libswscale6$' "$tmp/runtime.txt" >"$tmp/short.txt"
reject "runtime packages: one the binary links is missing" "lacks what $bin links: libswscale6" check_packages "$tmp/short.txt"

if [ "$failures" -ne 0 ]; then
  echo "=== deploy: $failures check(s) failed"
  exit 1
fi
echo "=== deploy: all validators pass, and each rejects its broken files"

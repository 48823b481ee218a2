# shellcheck shell=bash
{#- Bash that Jinja must leave alone (${#var}). -#}
{% raw %}
# ./deploy.sh [options]: build the image, push it, and roll it out. Sourced by deploy.sh, which
# has loaded scripts/common.sh and set DEPLOY_ENV. Every check that can stop a deploy (values,
# account, project, secrets) runs before the first change; every create is preceded by a describe,
# so a rerun creates nothing. An existing service gets the new revision with no traffic and a tag
# of its own, is smoke-tested through that tag's URL, and only then receives traffic.

# shellcheck source=scripts/deploy/smoke.sh
source scripts/deploy/smoke.sh
# shellcheck source=scripts/deploy/rollout-helpers.sh
source scripts/deploy/rollout-helpers.sh

usage() {
  cat <<EOF
Usage: ./deploy.sh [options]

Builds the container image for linux/amd64, pushes it to Artifact Registry and deploys it to
Cloud Run, creating what is missing (repository, runtime service account, secrets, the secret
bindings) on the way. Safe to run again. An existing service gets the new revision with no
traffic first: it is smoke-tested through its own tagged URL, then receives the traffic (all of
it, or --canary PERCENT). Needs bash 4+ and the gcloud CLI; docker for local builds; curl.
Other subcommands: promote, rollback, status, logs, destroy (./deploy.sh SUBCOMMAND --help).

Options (each also read from the environment variable named in brackets; a flag wins):
  --project ID              Google Cloud project          [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --region REGION           Cloud Run region               [REGION, default: $DEFAULT_REGION]
  --service NAME            Cloud Run service name         [SERVICE_NAME, default: $DEFAULT_SERVICE_NAME]
  --service-account ID      runtime service account ID     [SERVICE_ACCOUNT_ID, default: $DEFAULT_SERVICE_ACCOUNT_ID]
  --secret NAME             secret holding the OpenAI key  [SECRET_NAME, default: $DEFAULT_SECRET_NAME]
  --secret-version VERSION  version of that secret         [SECRET_VERSION, default: latest]
  --repo REPO               Artifact Registry repository   [ARTIFACT_REGISTRY_REPO, default: $DEFAULT_ARTIFACT_REGISTRY_REPO]
  --keep-images N           images of this service the repository keeps [KEEP_IMAGES, default: $DEFAULT_KEEP_IMAGES]
  --min-instances N         instances kept warm (billed)   [MIN_INSTANCES, default: $DEFAULT_MIN_INSTANCES]
  --max-instances N         cost ceiling                   [MAX_INSTANCES, default: $DEFAULT_MAX_INSTANCES]
  --concurrency N           requests one instance serves at once, 1-1000 [CONCURRENCY, default: $DEFAULT_CONCURRENCY]
  --cpu CPU                 vCPUs per instance: 1, 2, 4, 6, 8 (or 0.08-0.999 with concurrency 1)
                                                           [CPU, default: $DEFAULT_CPU]
  --memory SIZE             memory per instance, 128Mi-32Gi [MEMORY, default: $DEFAULT_MEMORY]
  --timeout SECONDS         request timeout, 1-3600; also given to the service as
                            REQUEST_TIMEOUT_SECONDS, so its own stream deadline stays below it
                                                           [REQUEST_TIMEOUT_SECONDS, default: $DEFAULT_TIMEOUT]
  --client-keys-secret NAME secret with client API keys    [CLIENT_KEYS_SECRET_NAME, default: $DEFAULT_CLIENT_KEYS_SECRET_NAME]
                            (client_auth=api-key only; this repo: client_auth=$CLIENT_AUTH)
  --canary PERCENT          give the new revision PERCENT (1-99) of the traffic and stop there;
                            finish with ./deploy.sh promote (or ./deploy.sh rollback) [CANARY]
  --smoke-url URL           smoke-test this URL instead of the new revision's tagged run.app URL
                            (e.g. behind a load balancer with internal ingress) [SMOKE_URL]
  --smoke-impersonate SA    client_auth=iam: get the smoke test's identity token as this service
                            account (CI) [SMOKE_IMPERSONATE_SERVICE_ACCOUNT]
  --memorystore NAME        share rate limits and budgets through this Memorystore for Redis
                            instance, created when missing [MEMORYSTORE_INSTANCE]
  --redis-url-secret NAME   or: a secret holding the REDIS_URL of a Redis you run [REDIS_URL_SECRET]
  --network NAME            VPC network for Direct VPC egress to Redis [VPC_NETWORK, default: default]
  --subnet NAME             its subnet (/26 or larger)     [VPC_SUBNET, default: default]
  --build local|cloud       build with local docker, or remotely with Cloud Build
                            (default: local when docker is on PATH, else cloud)
  --env KEY=VALUE           a runtime setting for the service, e.g. --env OPENAI_MODEL=gpt-4o
                            (repeatable; added to DEPLOY_ENV at the top of deploy.sh). KEY is
                            upper case ([A-Z_][A-Z0-9_]*), VALUE has no comma. Every deploy sets
                            the service's variables to exactly these plus deploy.sh's own, so
                            one set in the console is replaced. Never a key: OPENAI_API_KEY and
                            CLIENT_API_KEYS come from Secret Manager, not from here.
  --dry-run                 print every command, shell-quoted, and run none
  -h, --help                show this help

Secrets are read from the environment and passed to gcloud on stdin, never on a command line:
  OPENAI_API_KEY    creates the OpenAI key secret when it does not exist yet
  CLIENT_API_KEYS   creates the client keys secret (one key per line; client_auth=api-key)
  SMOKE_CLIENT_KEY  a client key the smoke test sends (default: the first of CLIENT_API_KEYS)

Examples:
  ./deploy.sh
  OPENAI_API_KEY="\$(cat ~/openai.key)" ./deploy.sh --region europe-west1
  ./deploy.sh --canary 10 && ./deploy.sh promote
  ./deploy.sh --dry-run --build cloud
  ./deploy.sh --env OPENAI_MODEL=gpt-4o --env RATE_LIMIT_PER_MINUTE=30
EOF
}

SECRET_ACCESSOR=roles/secretmanager.secretAccessor
# Each secret is mounted in a directory of its own (a mount shadows its whole directory). A
# mounted file is read from Secret Manager when the service reads it, so a rotated OpenAI key or
# a new client keys version reaches running instances without a redeploy.
OPENAI_KEY_MOUNT=/secrets/openai/key
CLIENT_KEYS_MOUNT=/secrets/client-api-keys/keys
DEFAULT_KEEP_IMAGES=10
REQUIRED_APIS=(run.googleapis.com artifactregistry.googleapis.com secretmanager.googleapis.com
  iam.googleapis.com)

# --- Settings: flags win over the environment variables and answers scripts/common.sh read. ---
BUILD=
CANARY=${CANARY:-}
SMOKE_URL=${SMOKE_URL:-}
SMOKE_IMPERSONATE_SERVICE_ACCOUNT=${SMOKE_IMPERSONATE_SERVICE_ACCOUNT:-}
KEEP_IMAGES=${KEEP_IMAGES:-$DEFAULT_KEEP_IMAGES}
CONCURRENCY=${CONCURRENCY:-$DEFAULT_CONCURRENCY}
CPU=${CPU:-$DEFAULT_CPU}
MEMORY=${MEMORY:-$DEFAULT_MEMORY}
REQUEST_TIMEOUT_SECONDS=${REQUEST_TIMEOUT_SECONDS:-$DEFAULT_TIMEOUT}
MEMORYSTORE_INSTANCE=${MEMORYSTORE_INSTANCE:-}
REDIS_URL_SECRET=${REDIS_URL_SECRET:-}
VPC_NETWORK=${VPC_NETWORK:-default}
VPC_SUBNET=${VPC_SUBNET:-default}
# What scripts/memorystore.sh adds to the deploy: --set-secrets entries, extra flags.
SECRET_MAPPINGS=()
DEPLOY_FLAGS=()
# The secrets stay in this shell: gcloud, docker and curl get them on stdin, not in their
# environment.
export -n OPENAI_API_KEY CLIENT_API_KEYS SMOKE_CLIENT_KEY

# set_option NAME VALUE: one option of the command line (see parse_options in scripts/common.sh).
set_option() {
  set_target_option "$@" && return 0
  case $1 in
    --secret) SECRET_NAME=$2 ;;
    --secret-version) SECRET_VERSION=$2 ;;
    --repo) ARTIFACT_REGISTRY_REPO=$2 ;;
    --keep-images) KEEP_IMAGES=$2 ;;
    --min-instances) MIN_INSTANCES=$2 ;;
    --max-instances) MAX_INSTANCES=$2 ;;
    --concurrency) CONCURRENCY=$2 ;;
    --cpu) CPU=$2 ;;
    --memory) MEMORY=$2 ;;
    --timeout) REQUEST_TIMEOUT_SECONDS=$2 ;;
    --client-keys-secret) CLIENT_KEYS_SECRET_NAME=$2 ;;
    --canary) CANARY=$2 ;;
    --smoke-url) SMOKE_URL=$2 ;;
    --smoke-impersonate) SMOKE_IMPERSONATE_SERVICE_ACCOUNT=$2 ;;
    --memorystore) MEMORYSTORE_INSTANCE=$2 ;;
    --redis-url-secret) REDIS_URL_SECRET=$2 ;;
    --network) VPC_NETWORK=$2 ;;
    --subnet) VPC_SUBNET=$2 ;;
    --build) BUILD=$2 ;;
    --env) DEPLOY_ENV+=("$2") ;;
    *) return 1 ;;
  esac
}
parse_options "$@"

# --- Validate everything before any command runs. ---
resolve_target
invalid=0
validate_secret_name "$SECRET_NAME" 'SECRET_NAME (--secret)' || invalid=1
validate_secret_version "$SECRET_VERSION" 'SECRET_VERSION (--secret-version)' || invalid=1
validate_artifact_registry_repo "$ARTIFACT_REGISTRY_REPO" 'ARTIFACT_REGISTRY_REPO (--repo)' || invalid=1
validate_keep_images "$KEEP_IMAGES" 'KEEP_IMAGES (--keep-images)' || invalid=1
validate_instances "$MIN_INSTANCES" "$MAX_INSTANCES" 'MIN_INSTANCES (--min-instances)' \
  'MAX_INSTANCES (--max-instances)' || invalid=1
validate_concurrency "$CONCURRENCY" 'CONCURRENCY (--concurrency)' || invalid=1
validate_timeout "$REQUEST_TIMEOUT_SECONDS" 'REQUEST_TIMEOUT_SECONDS (--timeout)' || invalid=1
validate_sizing "$CPU" "$MEMORY" "$CONCURRENCY" 'CPU (--cpu)' 'MEMORY (--memory)' || invalid=1
if [[ $CLIENT_AUTH == api-key ]]; then
  validate_secret_name "$CLIENT_KEYS_SECRET_NAME" 'CLIENT_KEYS_SECRET_NAME (--client-keys-secret)' ||
    invalid=1
fi
if [[ -n $CANARY ]]; then validate_percent "$CANARY" 'CANARY (--canary)' || invalid=1; fi
if [[ -n $SMOKE_URL && ! $SMOKE_URL =~ ^https?://[^[:space:]]+$ ]]; then
  printf 'SMOKE_URL (--smoke-url): %q is not an http:// or https:// URL\n' "$SMOKE_URL" >&2
  invalid=1
fi
case $BUILD in
  '' | local | cloud) ;;
  *) printf 'BUILD (--build): %q is not local or cloud\n' "$BUILD" >&2; invalid=1 ;;
esac
for setting in ${DEPLOY_ENV[@]+"${DEPLOY_ENV[@]}"}; do
  validate_env "$setting" || invalid=1
done
((invalid == 0)) || die "nothing was run; fix the values above (flags, environment variables, or the defaults in scripts/common.sh)."
refuse_placeholder_project

# Limits shared by every instance live in Redis: scripts/memorystore.sh validates and provisions
# it when --memorystore or --redis-url-secret is given.
REDIS=no
if [[ -n $MEMORYSTORE_INSTANCE || -n $REDIS_URL_SECRET ]]; then
  # shellcheck source=/dev/null  # scripts/memorystore.sh, checked on its own
  source scripts/memorystore.sh
  REDIS=yes
fi

if [[ -z $BUILD ]]; then
  if command -v docker >/dev/null 2>&1; then BUILD=local; else BUILD=cloud; fi
  echo "Building with $([[ $BUILD == local ]] && echo 'local docker' || echo 'Cloud Build (no docker on PATH)'); choose with --build local|cloud."
fi

REGISTRY="$REGION-docker.pkg.dev"
TAG=$(image_tag)
IMAGE="$REGISTRY/$PROJECT_ID/$ARTIFACT_REGISTRY_REPO/$SERVICE_NAME:$TAG"
# The new revision's own tag while it is tested: fresh per deploy, so an older one is never hit.
CANDIDATE_TAG="candidate-$(date -u +%y%m%d-%H%M%S)"
# Deploys through cloudbuild.yaml (ci_provider=cloud-build) need Cloud Build after a local build too.
if [[ $BUILD == cloud || $CI_PROVIDER == cloud-build ]]; then REQUIRED_APIS+=(cloudbuild.googleapis.com); fi
# shellcheck disable=SC2034  # read by scripts/common.sh (step, parse_options, resolve_target)
STEPS=10
[[ $REDIS == no ]] || STEPS=$((STEPS + REDIS_STEPS))
[[ $DRY_RUN == yes ]] && echo "Dry run: printing the commands a fresh project needs; none is run."

if [[ $CLIENT_AUTH == none ]]; then
  cat >&2 <<EOF

WARNING: client_auth=none: the service will be public and open. Anyone who finds its URL can spend
your OpenAI budget; only --max-instances=$MAX_INSTANCES (with the per-instance rate limit) bounds the
cost. Use client_auth=iam or api-key for anything but a demo.
EOF
fi

# --- 1. Preflight: only reads. A deploy that would stop later stops here, with nothing made. ---
step "Preflight: gcloud, account, project, APIs, secrets$([[ $BUILD == local ]] && echo ', docker') (nothing is changed yet)"
if [[ $BUILD == local ]]; then
  command -v docker >/dev/null 2>&1 ||
    die "docker is not installed: https://docs.docker.com/get-docker/ (or use --build cloud)"
fi
command -v curl >/dev/null 2>&1 || die "curl is not installed; the smoke test needs it."
preflight_access
# A deployer may lack the right to list APIs (serviceusage.services.list): then assume they are
# on, as a project that was deployed to before has them, rather than stop a deploy that needs none.
list_apis=(gcloud services list --enabled "${PROJECT[@]}" --format='value(config.name)')
DRY_RUN=yes run "${list_apis[@]}"
enabled_apis=
if [[ $DRY_RUN == no ]] && ! enabled_apis=$("${list_apis[@]}" 2>/dev/null); then
  echo "warning: could not list the enabled APIs (needs serviceusage.services.list, e.g. roles/serviceusage.serviceUsageConsumer); assuming ${REQUIRED_APIS[*]} are enabled." >&2
  enabled_apis=$(printf '%s\n' "${REQUIRED_APIS[@]}")
fi
missing_apis=()
for api in "${REQUIRED_APIS[@]}"; do
  [[ $'\n'$enabled_apis$'\n' == *$'\n'$api$'\n'* ]] || missing_apis+=("$api")
done
api_enabled() { [[ " ${missing_apis[*]} " != *" $1 "* ]]; }

# look_up DESCRIBE_COMMAND...: like exists, for a resource of an API that may still be off: when
# that API ($LOOKUP_API) is not enabled, nothing of it can exist yet and nothing is asked (a dry
# run, which assumes a fresh project, still prints the describe).
look_up() {
  if ! api_enabled "$LOOKUP_API"; then
    [[ $DRY_RUN == no ]] || run "$@"
    return 1
  fi
  exists "$@"
}

# check_secret NAME VERSION ENV_VAR HOW_TO: the secret has VERSION, or it is missing and ENV_VAR
# holds a valid value to create it from; else stop with HOW_TO. A secret to create is added to
# secrets_to_create as NAME:ENV_VAR.
secrets_to_create=()
check_secret() {
  local name=$1 version=$2 env_var=$3 how_to=$4
  LOOKUP_API=secretmanager.googleapis.com
  if look_up gcloud secrets describe "$name" "${PROJECT[@]}"; then
    exists gcloud secrets versions describe "$version" --secret="$name" "${PROJECT[@]}" ||
      die "secret $name has no version $version; nothing was changed." "$how_to"
    echo "Secret $name exists."
    return
  fi
  if [[ -n ${!env_var:-} ]]; then
    validate_secret_value "$env_var" || die "nothing was changed; fix \$$env_var."
  elif [[ $DRY_RUN == no ]]; then
    die "secret $name does not exist and \$$env_var is not set; nothing was changed." "$how_to"
  fi
  echo "Secret $name will be created from \$$env_var."
  secrets_to_create+=("$name:$env_var")
}

secrets=("$SECRET_NAME")
check_secret "$SECRET_NAME" "$SECRET_VERSION" OPENAI_API_KEY "Create it with the key on stdin \
(not on the command line), then run deploy.sh again:
  read -rs OPENAI_API_KEY && export OPENAI_API_KEY && ./deploy.sh
or: printf '%s' \"\$OPENAI_API_KEY\" | gcloud secrets create $SECRET_NAME --project=$PROJECT_ID \
--replication-policy=automatic --data-file=-
(an existing secret without that version: gcloud secrets versions add $SECRET_NAME --data-file=-)"
if [[ $CLIENT_AUTH == api-key ]]; then
  secrets+=("$CLIENT_KEYS_SECRET_NAME")
  check_secret "$CLIENT_KEYS_SECRET_NAME" latest CLIENT_API_KEYS "Create it with one key per \
line (give each key to its client), then run deploy.sh again:
  CLIENT_KEY=\$(openssl rand -hex 32); echo \"\$CLIENT_KEY\"
  CLIENT_API_KEYS=\$CLIENT_KEY ./deploy.sh
or: printf '%s\\n' \"\$CLIENT_KEY\" | gcloud secrets create $CLIENT_KEYS_SECRET_NAME --project=$PROJECT_ID \
--replication-policy=automatic --data-file=-
Add or revoke keys later with a new version (gcloud secrets versions add ... --data-file=-)."
fi
LOOKUP_API=run.googleapis.com
if look_up gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" --format='value(status.url)'; then
  SERVICE_EXISTS=yes
  echo "Service $SERVICE_NAME exists: the new revision gets no traffic until it passed the smoke test."
else
  SERVICE_EXISTS=no
  [[ -z $CANARY ]] || die "--canary needs a service that already serves; $SERVICE_NAME does not exist yet in $REGION. Deploy it once without --canary."
  echo "Service $SERVICE_NAME does not exist yet: the first revision is deployed directly."
fi
if [[ $REDIS == yes ]]; then redis_preflight; fi
echo "Preflight passed."

# --- From here on, things change. Each step looks before it creates. ---
step "Enable the APIs"
if [[ -z ${missing_apis[*]-} ]]; then
  echo "APIs already enabled: ${REQUIRED_APIS[*]}"
else
  run gcloud services enable "${missing_apis[@]}" "${PROJECT[@]}"
fi

step "Artifact Registry repository $ARTIFACT_REGISTRY_REPO in $REGION, keeping the last $KEEP_IMAGES images"
if exists gcloud artifacts repositories describe "$ARTIFACT_REGISTRY_REPO" --location="$REGION" "${PROJECT[@]}"; then
  echo "Repository exists."
else
  run gcloud artifacts repositories create "$ARTIFACT_REGISTRY_REPO" --repository-format=docker \
    --location="$REGION" "${PROJECT[@]}" --description="Container images deployed by deploy.sh"
fi
# Set only when it differs, so a rerun needs no right to change the repository.
policies=$(query gcloud artifacts repositories list-cleanup-policies "$ARTIFACT_REGISTRY_REPO" \
  --location="$REGION" "${PROJECT[@]}" --format='value(name,mostRecentVersions.keepCount)')
if [[ $'\n'$policies$'\n' == *$'\n'"$SERVICE_NAME-keep-last"$'\t'"$KEEP_IMAGES"$'\n'* ]]; then
  echo "Cleanup policy already keeps the last $KEEP_IMAGES images of $SERVICE_NAME."
else
  policy_file=$(mktemp "${TMPDIR:-/tmp}/cleanup-policy.XXXXXX")
  trap 'rm -f "$policy_file"' EXIT
  cleanup_policy >"$policy_file"
  [[ $DRY_RUN == no ]] || sed 's/^/  /' "$policy_file"
  run gcloud artifacts repositories set-cleanup-policies "$ARTIFACT_REGISTRY_REPO" \
    --location="$REGION" "${PROJECT[@]}" --policy="$policy_file" --no-dry-run
fi

step "Build $IMAGE (linux/amd64, $BUILD)"
if [[ $BUILD == cloud ]]; then
  lookup=(gcloud builds get-default-service-account "${PROJECT[@]}"
    --format='value(serviceAccountEmail)')
  DRY_RUN=yes run "${lookup[@]}"
  if [[ $DRY_RUN == yes ]]; then
    build_account=BUILD_ACCOUNT
  else
    # projects/PROJECT/serviceAccounts/EMAIL; empty when the lookup is not allowed.
    build_account=$("${lookup[@]}" 2>/dev/null || true)
    build_account=${build_account##*/}
    echo "Cloud Build builds as ${build_account:-its default service account}."
  fi
  # Streaming the build's log from Cloud Build's default bucket needs project Viewer, which a CI
  # deployer does not have (gcloud would fail although the build goes on): in CI gcloud only
  # waits for the result and prints the log's console URL.
  log_flags=()
  [[ -z ${CI:-} ]] || log_flags=(--suppress-logs)
  run gcloud builds submit --tag="$IMAGE" "${PROJECT[@]}" ${log_flags[@]+"${log_flags[@]}"} . ||
    die "the Cloud Build build failed (its log is above, or at the URL gcloud printed)." \
      "$(build_grants "${build_account:-BUILD_ACCOUNT}")"
else
  # Cloud Run runs linux/amd64 images only; buildx cross-builds on Apple silicon.
  if docker buildx version >/dev/null 2>&1; then
    run docker buildx build --platform=linux/amd64 --tag="$IMAGE" --load .
  else
    run docker build --platform=linux/amd64 --tag="$IMAGE" .
  fi
  run gcloud auth configure-docker "$REGISTRY" --quiet
  run docker push "$IMAGE"
fi

step "Runtime service account $RUNTIME_SA_EMAIL"
if exists gcloud iam service-accounts describe "$RUNTIME_SA_EMAIL" "${PROJECT[@]}"; then
  echo "Service account exists."
else
  run gcloud iam service-accounts create "$SERVICE_ACCOUNT_ID" "${PROJECT[@]}" \
    --display-name="Cloud Run runtime: $SERVICE_NAME"
fi

step "Secrets ${secrets[*]}"
for entry in ${secrets_to_create[@]+"${secrets_to_create[@]}"}; do
  name=${entry%%:*}
  env_var=${entry#*:}
  echo "Creating secret $name from \$$env_var (read on stdin)."
  run_with_stdin "${!env_var:-}" gcloud secrets create "$name" "${PROJECT[@]}" \
    --replication-policy=automatic --data-file=-
done
[[ -n ${secrets_to_create[*]-} ]] || echo "All secrets exist."

step "Grant $SECRET_ACCESSOR on ${secrets[*]} to the runtime account"
# On each secret only, not project-wide: the service can read its own secrets and nothing else.
for secret in "${secrets[@]}"; do
  grant_on_secret "$secret" "serviceAccount:$RUNTIME_SA_EMAIL" "$SECRET_ACCESSOR"
done

[[ $REDIS == no ]] || redis_ensure  # its own step

# The project qualifies the trace ids in the service's logs, so they group under Cloud Run's.
# REQUEST_TIMEOUT_SECONDS tells the service Cloud Run's timeout, so it ends a stream itself first.
env_vars="GOOGLE_CLOUD_PROJECT=$PROJECT_ID,OPENAI_API_KEY_FILE=$OPENAI_KEY_MOUNT,REQUEST_TIMEOUT_SECONDS=$REQUEST_TIMEOUT_SECONDS"
SECRET_MAPPINGS=("$OPENAI_KEY_MOUNT=$SECRET_NAME:$SECRET_VERSION" ${SECRET_MAPPINGS[@]+"${SECRET_MAPPINGS[@]}"})
case $CLIENT_AUTH in
  iam) auth_flags=(--no-allow-unauthenticated) ;;
  none) auth_flags=(--allow-unauthenticated) ;;
  api-key)
    auth_flags=(--allow-unauthenticated)
    SECRET_MAPPINGS+=("$CLIENT_KEYS_MOUNT=$CLIENT_KEYS_SECRET_NAME:latest")
    env_vars+=",CLIENT_API_KEYS_FILE=$CLIENT_KEYS_MOUNT" ;;
esac
# --[no-]allow-unauthenticated rewrites the service's IAM policy (run.services.setIamPolicy, which
# a CI deployer with roles/run.developer lacks), so an existing service whose policy already
# says the same is deployed without it.
if [[ $SERVICE_EXISTS == yes && $DRY_RUN == no ]]; then
  invokers=$(query gcloud run services get-iam-policy "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
    --flatten='bindings[].members' --format='value(bindings.role,bindings.members)')
  public=no wanted=no
  [[ $'\n'$invokers$'\n' == *$'\n'roles/run.invoker$'\t'allUsers$'\n'* ]] && public=yes
  [[ ${auth_flags[0]} == --allow-unauthenticated ]] && wanted=yes
  if [[ $public == "$wanted" ]]; then
    echo "The invoker policy is already right ($([[ $public == yes ]] && echo public || echo private)); left as it is."
    auth_flags=()
  fi
fi
# Exactly these variables: --set-env-vars replaces what the service had (console edits too).
for setting in ${DEPLOY_ENV[@]+"${DEPLOY_ENV[@]}"}; do
  env_vars+=",$setting"
done
[[ -z ${DEPLOY_ENV[*]-} ]] || echo "Runtime settings (--env, DEPLOY_ENV): ${DEPLOY_ENV[*]%%=*}"
secret_list=$(IFS=,; echo "${SECRET_MAPPINGS[*]}")
# The startup probe keeps traffic away from a revision until /ready answers 200 (up to 2 minutes).
deploy=(gcloud run deploy "$SERVICE_NAME" --image="$IMAGE" "${REGION_FLAGS[@]}"
  --service-account="$RUNTIME_SA_EMAIL" --min-instances="$MIN_INSTANCES"
  --max-instances="$MAX_INSTANCES" --concurrency="$CONCURRENCY" --cpu="$CPU" --memory="$MEMORY"
  --timeout="$REQUEST_TIMEOUT_SECONDS" --cpu-boost
  --startup-probe='httpGet.path=/ready,periodSeconds=5,timeoutSeconds=3,failureThreshold=24'
  --labels="app=$SERVICE_NAME,managed-by=deploy-sh,client-auth=$CLIENT_AUTH"
  ${auth_flags[@]+"${auth_flags[@]}"} --set-secrets="$secret_list" --set-env-vars="$env_vars"
  ${DEPLOY_FLAGS[@]+"${DEPLOY_FLAGS[@]}"} --quiet)

if [[ $SERVICE_EXISTS == yes ]]; then
  step "Deploy the new revision of $SERVICE_NAME with no traffic, tagged $CANDIDATE_TAG"
  # gcloud waits until the revision is ready (its startup probe passed) or failed.
  run "${deploy[@]}" --no-traffic --tag="$CANDIDATE_TAG" ||
    die "the new revision did not deploy or did not become ready (gcloud's error is above); traffic is unchanged." \
      "Its logs: ./deploy.sh logs (or gcloud run services logs read $SERVICE_NAME --region=$REGION --project=$PROJECT_ID)"
  traffic=$(traffic_lines)
  candidate=$(tagged "$CANDIDATE_TAG" <<<"$traffic") || candidate=
  [[ -n $candidate || $DRY_RUN == yes ]] ||
    die "the new revision carries no tag $CANDIDATE_TAG; traffic is unchanged." "Check: ./deploy.sh status"
  candidate_url=$(tagged "$CANDIDATE_TAG" url <<<"$traffic") || candidate_url=
else
  step "Deploy the first revision of $SERVICE_NAME"
  run "${deploy[@]}" ||
    die "the first revision did not deploy or did not become ready (gcloud's error is above)." \
      "Its logs: ./deploy.sh logs (or gcloud run services logs read $SERVICE_NAME --region=$REGION --project=$PROJECT_ID)"
  traffic=
  candidate_url=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" --format='value(status.url)')
  candidate=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
    --format='value(status.latestReadyRevisionName)')
fi
[[ -n $candidate_url || -n $SMOKE_URL || $DRY_RUN == yes ]] ||
  die "Cloud Run reported no URL for the new revision $candidate, so it cannot be smoke-tested; no traffic was moved." \
    "Smoke-test it at a URL you give: ./deploy.sh --smoke-url URL"
# A dry run learns no names: placeholders stand in for them.
candidate=${candidate:-NEW_REVISION}
if [[ $SERVICE_EXISTS == yes ]]; then
  candidate_url=${candidate_url:-https://$CANDIDATE_TAG---$SERVICE_NAME-HASH.a.run.app}
else
  candidate_url=${candidate_url:-https://$SERVICE_NAME-HASH.a.run.app}
fi

step "Smoke-test $candidate"
if ! smoke_test "${SMOKE_URL:-$candidate_url}" "$candidate_url"; then
  if [[ $SERVICE_EXISTS == yes ]]; then
    echo "error: the smoke test of $candidate failed; traffic is unchanged (the revision keeps its tag $CANDIDATE_TAG and serves no traffic)." >&2
  else
    echo "error: the smoke test of the first revision $candidate failed; it is the only revision, so it serves the traffic." >&2
  fi
  echo "Its logs: $(log_command "$candidate")" >&2
  exit 1
fi

step "Traffic"
if [[ $SERVICE_EXISTS == no ]]; then
  echo "The first revision serves all traffic."
elif [[ -n $CANARY ]]; then
  run gcloud run services update-traffic "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
    --to-tags="$CANDIDATE_TAG=$CANARY" --quiet
  echo "Canary: $candidate serves $CANARY % of the traffic. Finish with ./deploy.sh promote (or ./deploy.sh rollback)."
else
  promote_latest "$traffic" "$candidate"
fi
show_traffic
url=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" --format='value(status.url)')
[[ $DRY_RUN == yes ]] && exit 0
echo
echo "Deployed: $url"
case $CLIENT_AUTH in
  iam)
    cat <<EOF
The service is private (client_auth=iam). Call it with an identity token:
  curl -H "Authorization: Bearer \$(gcloud auth print-identity-token)" $url/health
or through a local proxy that adds the token (then use http://127.0.0.1:8080):
  gcloud run services proxy $SERVICE_NAME --region=$REGION --project=$PROJECT_ID
Let another principal call it:
  gcloud run services add-iam-policy-binding $SERVICE_NAME --region=$REGION --project=$PROJECT_ID \\
    --member=user:someone@example.com --role=roles/run.invoker
EOF
    ;;
  api-key)
    cat <<EOF
Clients send one of the keys in secret $CLIENT_KEYS_SECRET_NAME:
  curl -H "Authorization: Bearer \$CLIENT_KEY" -H 'Content-Type: application/json' \\
    -d '{"message": "Hello"}' $url/v1/chat
EOF
    ;;
  none) echo "WARNING: open to anyone (client_auth=none); max instances: $MAX_INSTANCES." >&2 ;;
esac
{%- endraw %}

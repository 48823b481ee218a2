#!/usr/bin/env bash
{#- Everything below is bash that Jinja must leave alone (${#var}, {{ in heredocs); the template's
    answers are rendered in scripts/common.sh. -#}
{% raw %}
# Build the image, push it to Artifact Registry and deploy it to Cloud Run. Safe to run again:
# every resource is looked up (describe) before it is created. Needs bash 4+ (macOS: brew install
# bash). ./deploy.sh --help lists every option.
set -euo pipefail

if ((BASH_VERSINFO[0] < 4)); then
  echo "deploy.sh needs bash 4 or newer; this is bash $BASH_VERSION." >&2
  echo "On macOS: brew install bash, then run it again (Homebrew's bash comes first on PATH)." >&2
  exit 1
fi

# Run from the repo root: the Docker build context and the Dockerfile are here.
cd "$(dirname "${BASH_SOURCE[0]}")"
# The template's answers, the settings resolved from them (environment variables win; flags win
# over both, below) and the helpers deploy.sh shares with scripts/setup-github-wif.sh.
# shellcheck source=scripts/common.sh
source scripts/common.sh

# Runtime settings for every deploy (CI's too), as KEY=VALUE with the rules of --env, e.g.
# DEPLOY_ENV=(OPENAI_MODEL=gpt-4o RATE_LIMIT_PER_MINUTE=30). Each deploy replaces the service's
# variables (--set-env-vars), so one set in the console is gone after the next deploy: keep them
# here instead. Never a key or other secret: those belong in Secret Manager.
DEPLOY_ENV=()

# Where Cloud Run mounts the client keys secret in api-key mode: a file is re-read on every
# change, so adding or revoking a key (a new secret version) needs no redeploy.
CLIENT_KEYS_MOUNT=/secrets/client-api-keys/keys
SECRET_ACCESSOR=roles/secretmanager.secretAccessor

usage() {
  cat <<EOF
Usage: ./deploy.sh [options]

Builds the container image for linux/amd64, pushes it to Artifact Registry and deploys it to
Cloud Run, creating what is missing (repository, runtime service account, secrets, the secret
binding) on the way. Safe to run again. Needs bash 4+ and the gcloud CLI; docker for local builds.

Options (each also read from the environment variable named in brackets; a flag wins):
  --project ID              Google Cloud project          [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --region REGION           Cloud Run region               [REGION, default: $DEFAULT_REGION]
  --service NAME            Cloud Run service name         [SERVICE_NAME, default: $DEFAULT_SERVICE_NAME]
  --service-account ID      runtime service account ID     [SERVICE_ACCOUNT_ID, default: $DEFAULT_SERVICE_ACCOUNT_ID]
  --secret NAME             secret holding the OpenAI key  [SECRET_NAME, default: $DEFAULT_SECRET_NAME]
  --secret-version VERSION  version of that secret         [SECRET_VERSION, default: latest]
  --repo REPO               Artifact Registry repository   [ARTIFACT_REGISTRY_REPO, default: $DEFAULT_ARTIFACT_REGISTRY_REPO]
  --min-instances N         instances kept warm (billed)   [MIN_INSTANCES, default: $DEFAULT_MIN_INSTANCES]
  --max-instances N         cost ceiling                   [MAX_INSTANCES, default: $DEFAULT_MAX_INSTANCES]
  --client-keys-secret NAME secret with client API keys    [CLIENT_KEYS_SECRET_NAME, default: $DEFAULT_CLIENT_KEYS_SECRET_NAME]
                            (client_auth=api-key only; this repo: client_auth=$CLIENT_AUTH)
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
  OPENAI_API_KEY   creates the OpenAI key secret when it does not exist yet
  CLIENT_API_KEYS  creates the client keys secret (one key per line; client_auth=api-key)

Examples:
  ./deploy.sh
  OPENAI_API_KEY="\$(cat ~/openai.key)" ./deploy.sh --region europe-west1
  ./deploy.sh --dry-run --build cloud
  ./deploy.sh --env OPENAI_MODEL=gpt-4o --env RATE_LIMIT_PER_MINUTE=30
EOF
}

# run_with_stdin VALUE COMMAND...: give VALUE to COMMAND on stdin. printf is a builtin, so the
# value never appears in any process's argv; in dry-run mode it is not printed either.
run_with_stdin() {
  local value=$1
  shift
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
    printf '  (stdin: the secret value from the environment, not shown)\n'
  else
    printf '%s' "$value" | "$@"
  fi
}

# exists COMMAND...: run a gcloud describe; true when found, false on NOT_FOUND, and any other
# error (permission, auth) stops the script instead of passing for "missing". In dry-run mode
# nothing is looked up and every resource is shown as missing, so the output lists every command
# a fresh project needs.
exists() {
  local errors
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
    return 1
  fi
  errors=$("$@" 2>&1 >/dev/null) && return 0
  [[ $errors == *NOT_FOUND* ]] && return 1
  die "$(printf '%q ' "$@")failed:" "$errors"
}

# IAM is eventually consistent: a service account created seconds ago can still be refused as
# INVALID_ARGUMENT ("does not exist") in a policy binding. Retry that error only, with back-off.
retry_while_new_account() {
  local attempt errors
  [[ $DRY_RUN == no ]] || { run "$@"; return; }
  for attempt in 1 2 3 4; do
    errors=$("$@" 2>&1 >/dev/null) && return 0
    if [[ $errors != *INVALID_ARGUMENT* ]] || ((attempt == 4)); then
      die "$(printf '%q ' "$@")failed:" "$errors"
    fi
    echo "The new service account is not visible to IAM yet; retrying in $((attempt * 5)) s."
    sleep "$((attempt * 5))"
  done
}

STEPS=8

# ensure_secret NAME VERSION ENV_VAR HOW_TO: make sure secret NAME has VERSION; create the secret
# from the environment variable ENV_VAR when it is missing, else stop with HOW_TO.
ensure_secret() {
  local name=$1 version=$2 env_var=$3 how_to=$4
  if exists gcloud secrets describe "$name" "${PROJECT[@]}"; then
    exists gcloud secrets versions describe "$version" --secret="$name" "${PROJECT[@]}" ||
      die "secret $name has no version $version." "$how_to"
    echo "Secret $name exists."
  elif [[ -n ${!env_var:-} || $DRY_RUN == yes ]]; then
    echo "Creating secret $name from \$$env_var (read on stdin)."
    run_with_stdin "${!env_var:-}" gcloud secrets create "$name" "${PROJECT[@]}" \
      --replication-policy=automatic --data-file=-
  else
    die "secret $name does not exist and \$$env_var is not set." "$how_to"
  fi
}

# validate_env KEY=VALUE: a runtime setting from --env or DEPLOY_ENV. Secrets never go this way
# (they would show in the console, in `gcloud run services describe` and in CI logs), nor the
# variables deploy.sh or Cloud Run set. Values are never printed: one might be a pasted key.
declare -A env_keys=()
validate_env() {
  local setting=$1 key value problem=
  key=${setting%%=*}
  value=${setting#*=}
  if [[ ! $setting =~ ^[A-Z_][A-Z0-9_]*= ]]; then
    printf -- '--env (or DEPLOY_ENV): a setting is not KEY=VALUE with KEY of [A-Z_][A-Z0-9_]*, e.g. OPENAI_MODEL=gpt-4o (the value is not shown)\n' >&2
    return 1
  fi
  case $key in
    OPENAI_API_KEY) problem="is a secret: deploy.sh gives it to the service from Secret Manager (secret $SECRET_NAME, --secret; rotate it with gcloud secrets versions add $SECRET_NAME --data-file=-)" ;;
    CLIENT_API_KEYS) problem="are secrets: in client_auth=api-key they come from Secret Manager (secret $CLIENT_KEYS_SECRET_NAME, --client-keys-secret; add keys with gcloud secrets versions add $CLIENT_KEYS_SECRET_NAME --data-file=-)" ;;
    GOOGLE_CLOUD_PROJECT | CLIENT_API_KEYS_FILE) problem="is set by deploy.sh itself" ;;
    PORT | K_SERVICE | K_REVISION | K_CONFIGURATION) problem="is reserved by Cloud Run" ;;
    *)
      if [[ $value == *,* ]]; then
        problem="has a comma in its value, which --set-env-vars would read as the start of another setting"
      elif [[ $value == *[[:cntrl:]]* ]]; then
        problem="has a control character (newline, tab, ...) in its value"
      elif [[ $value == sk-* ]]; then
        problem="has a value that looks like an OpenAI API key; keys belong in Secret Manager"
      elif [[ -n ${env_keys[$key]:-} ]]; then
        problem="is given twice"
      fi ;;
  esac
  env_keys[$key]=1
  [[ -z $problem ]] && return 0
  printf -- '--env (or DEPLOY_ENV): %s %s\n' "$key" "$problem" >&2
  return 1
}

# image_tag: the short commit sha when this folder is the top of a clean git checkout; with
# uncommitted changes the sha plus -dirty-TIME (the image holds more than the commit); outside git,
# or in a repository this folder merely sits in (a parent's sha would name code that is not
# deployed), the UTC time.
image_tag() {
  local stamp top sha
  stamp=$(date -u +%Y%m%d-%H%M%S)
  if ! top=$(git rev-parse --show-toplevel 2>/dev/null) || [[ ! $top -ef . ]] ||
    ! sha=$(git rev-parse --short HEAD 2>/dev/null); then
    echo "$stamp"
  elif [[ -n $(git status --porcelain 2>/dev/null) ]]; then
    echo "$sha-dirty-$stamp"
  else
    echo "$sha"
  fi
}

# build_grants ACCOUNT: what to grant the account Cloud Build runs as, as commands.
build_grants() {
  local member="serviceAccount:$1"
  cat <<EOF
Cloud Build runs the build as $1 (gcloud builds get-default-service-account --project=$PROJECT_ID).
Projects created since 2024 build as the Compute Engine default service account (or one you
chose), which may lack the roles a build needs. Grant them once, then run deploy.sh again:
  gcloud artifacts repositories add-iam-policy-binding $ARTIFACT_REGISTRY_REPO --location=$REGION --project=$PROJECT_ID --member=$member --role=roles/artifactregistry.writer
  gcloud projects add-iam-policy-binding $PROJECT_ID --member=$member --role=roles/logging.logWriter --condition=None
  gcloud storage buckets add-iam-policy-binding gs://${PROJECT_ID}_cloudbuild --project=$PROJECT_ID --member=$member --role=roles/storage.objectViewer
(push the image to the repository; write the build log; read the source that gcloud builds submit
uploads to that bucket). Or build locally with docker: ./deploy.sh --build local
EOF
}

# --- Settings: flags win over the environment variables and answers scripts/common.sh read. ---
BUILD=
# ${a[@]+"${a[@]}"}: an empty array under set -u on bash before 4.4.
EXTRA_ENV=(${DEPLOY_ENV[@]+"${DEPLOY_ENV[@]}"})
# The secrets stay in this shell: gcloud and docker get them on stdin, not in their environment.
export -n OPENAI_API_KEY CLIENT_API_KEYS

# set_option NAME VALUE: one option of the command line (see parse_options in scripts/common.sh).
set_option() {
  case $1 in
    --project) PROJECT_ID=$2 ;;
    --region) REGION=$2 ;;
    --service) SERVICE_NAME=$2 ;;
    --service-account) SERVICE_ACCOUNT_ID=$2 ;;
    --secret) SECRET_NAME=$2 ;;
    --secret-version) SECRET_VERSION=$2 ;;
    --repo) ARTIFACT_REGISTRY_REPO=$2 ;;
    --min-instances) MIN_INSTANCES=$2 ;;
    --max-instances) MAX_INSTANCES=$2 ;;
    --client-keys-secret) CLIENT_KEYS_SECRET_NAME=$2 ;;
    --build) BUILD=$2 ;;
    --env) EXTRA_ENV+=("$2") ;;
    *) return 1 ;;
  esac
}
parse_options "$@"

# --- Validate everything before any command runs. ---
invalid=0
validate_project_id "$PROJECT_ID" 'PROJECT_ID (--project)' || invalid=1
validate_region "$REGION" 'REGION (--region)' || invalid=1
validate_service_name "$SERVICE_NAME" 'SERVICE_NAME (--service)' || invalid=1
validate_service_account_id "$SERVICE_ACCOUNT_ID" 'SERVICE_ACCOUNT_ID (--service-account)' || invalid=1
validate_secret_name "$SECRET_NAME" 'SECRET_NAME (--secret)' || invalid=1
validate_secret_version "$SECRET_VERSION" 'SECRET_VERSION (--secret-version)' || invalid=1
validate_artifact_registry_repo "$ARTIFACT_REGISTRY_REPO" 'ARTIFACT_REGISTRY_REPO (--repo)' || invalid=1
validate_instances "$MIN_INSTANCES" "$MAX_INSTANCES" 'MIN_INSTANCES (--min-instances)' \
  'MAX_INSTANCES (--max-instances)' || invalid=1
if [[ $CLIENT_AUTH == api-key ]]; then
  validate_secret_name "$CLIENT_KEYS_SECRET_NAME" 'CLIENT_KEYS_SECRET_NAME (--client-keys-secret)' ||
    invalid=1
fi
case $BUILD in
  '' | local | cloud) ;;
  *) printf 'BUILD (--build): %q is not local or cloud\n' "$BUILD" >&2; invalid=1 ;;
esac
for setting in ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"}; do
  validate_env "$setting" || invalid=1
done
((invalid == 0)) || die "nothing was run; fix the values above (flags, environment variables, or the defaults in scripts/common.sh)."

if [[ -z $BUILD ]]; then
  if command -v docker >/dev/null 2>&1; then BUILD=local; else BUILD=cloud; fi
  echo "Building with $([[ $BUILD == local ]] && echo 'local docker' || echo 'Cloud Build (no docker on PATH)'); choose with --build local|cloud."
fi

REGISTRY="$REGION-docker.pkg.dev"
TAG=$(image_tag)
IMAGE="$REGISTRY/$PROJECT_ID/$ARTIFACT_REGISTRY_REPO/$SERVICE_NAME:$TAG"
SERVICE_ACCOUNT="$SERVICE_ACCOUNT_ID@$PROJECT_ID.iam.gserviceaccount.com"
PROJECT=(--project="$PROJECT_ID")
[[ $DRY_RUN == yes ]] && echo "Dry run: printing the commands a fresh project needs; none is run."

if [[ $CLIENT_AUTH == none ]]; then
  cat >&2 <<EOF

WARNING: client_auth=none: the service will be public and open. Anyone who finds its URL can spend
your OpenAI budget; only --max-instances=$MAX_INSTANCES (with the per-instance rate limit) bounds the
cost. Use client_auth=iam or api-key for anything but a demo.
EOF
fi

step "Preflight: gcloud, active account, project$([[ $BUILD == local ]] && echo ', docker')"
require_gcloud
if [[ $BUILD == local ]]; then
  command -v docker >/dev/null 2>&1 ||
    die "docker is not installed: https://docs.docker.com/get-docker/ (or use --build cloud)"
fi
active_account
if [[ $DRY_RUN == yes ]]; then
  run gcloud projects describe "$PROJECT_ID" --format='value(projectId)'
else
  echo "Account: $ACCOUNT"
  gcloud projects describe "$PROJECT_ID" --format='value(projectId)' >/dev/null ||
    die "project $PROJECT_ID is not visible to $ACCOUNT. Check the id (PROJECT_ID or --project), or run: gcloud auth login"
  echo "Project: $PROJECT_ID"
fi

step "Enable the APIs"
apis=(run.googleapis.com artifactregistry.googleapis.com secretmanager.googleapis.com iam.googleapis.com)
# Deploys through cloudbuild.yaml (ci_provider=cloud-build) need Cloud Build after a local build too.
if [[ $BUILD == cloud || $CI_PROVIDER == cloud-build ]]; then apis+=(cloudbuild.googleapis.com); fi
run gcloud services enable "${apis[@]}" "${PROJECT[@]}"

step "Artifact Registry repository $ARTIFACT_REGISTRY_REPO in $REGION"
if exists gcloud artifacts repositories describe "$ARTIFACT_REGISTRY_REPO" --location="$REGION" "${PROJECT[@]}"; then
  echo "Repository exists."
else
  run gcloud artifacts repositories create "$ARTIFACT_REGISTRY_REPO" --repository-format=docker \
    --location="$REGION" "${PROJECT[@]}" --description="Container images deployed by deploy.sh"
fi

step "Build $IMAGE (linux/amd64, $BUILD)"
if [[ $BUILD == cloud ]]; then
  lookup=(gcloud builds get-default-service-account "${PROJECT[@]}"
    --format='value(serviceAccountEmail)')
  if [[ $DRY_RUN == yes ]]; then
    run "${lookup[@]}"
    build_account=BUILD_ACCOUNT
  else
    # projects/PROJECT/serviceAccounts/EMAIL; empty when the lookup is not allowed.
    build_account=$("${lookup[@]}" 2>/dev/null || true)
    build_account=${build_account##*/}
    echo "Cloud Build builds as ${build_account:-its default service account}."
  fi
  run gcloud builds submit --tag="$IMAGE" "${PROJECT[@]}" . ||
    die "the Cloud Build build failed (its log is above)." \
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

step "Runtime service account $SERVICE_ACCOUNT"
if exists gcloud iam service-accounts describe "$SERVICE_ACCOUNT" "${PROJECT[@]}"; then
  echo "Service account exists."
else
  run gcloud iam service-accounts create "$SERVICE_ACCOUNT_ID" "${PROJECT[@]}" \
    --display-name="Cloud Run runtime: $SERVICE_NAME"
fi

secrets=("$SECRET_NAME")
step "Secret $SECRET_NAME (OpenAI API key)"
ensure_secret "$SECRET_NAME" "$SECRET_VERSION" OPENAI_API_KEY "Create it with the key on stdin \
(not on the command line), then run deploy.sh again:
  read -rs OPENAI_API_KEY && export OPENAI_API_KEY && ./deploy.sh
or: printf '%s' \"\$OPENAI_API_KEY\" | gcloud secrets create $SECRET_NAME --project=$PROJECT_ID \
--replication-policy=automatic --data-file=-
(an existing secret without that version: gcloud secrets versions add $SECRET_NAME --data-file=-)"
if [[ $CLIENT_AUTH == api-key ]]; then
  secrets+=("$CLIENT_KEYS_SECRET_NAME")
  echo "Client API keys secret $CLIENT_KEYS_SECRET_NAME (client_auth=api-key):"
  ensure_secret "$CLIENT_KEYS_SECRET_NAME" latest CLIENT_API_KEYS "Create it with one key per \
line (give each key to its client), then run deploy.sh again:
  CLIENT_KEY=\$(openssl rand -hex 32); echo \"\$CLIENT_KEY\"
  CLIENT_API_KEYS=\$CLIENT_KEY ./deploy.sh
or: printf '%s\\n' \"\$CLIENT_KEY\" | gcloud secrets create $CLIENT_KEYS_SECRET_NAME --project=$PROJECT_ID \
--replication-policy=automatic --data-file=-
Add or revoke keys later with a new version (gcloud secrets versions add ... --data-file=-)."
fi

step "Grant $SECRET_ACCESSOR on ${secrets[*]} to the runtime account"
# On each secret only, not project-wide: the service can read its own secrets and nothing else.
for secret in "${secrets[@]}"; do
  retry_while_new_account gcloud secrets add-iam-policy-binding "$secret" "${PROJECT[@]}" \
    --member="serviceAccount:$SERVICE_ACCOUNT" --role="$SECRET_ACCESSOR" --condition=None \
    --format=none
done

step "Deploy $SERVICE_NAME to Cloud Run in $REGION"
# The startup probe keeps traffic away from a revision until /ready answers 200 (up to 2 minutes).
deploy=(gcloud run deploy "$SERVICE_NAME" --image="$IMAGE" --region="$REGION" "${PROJECT[@]}"
  --service-account="$SERVICE_ACCOUNT" --min-instances="$MIN_INSTANCES"
  --max-instances="$MAX_INSTANCES" --cpu-boost
  --startup-probe='httpGet.path=/ready,periodSeconds=5,timeoutSeconds=3,failureThreshold=24'
  --labels="app=$SERVICE_NAME,managed-by=deploy-sh,client-auth=$CLIENT_AUTH" --quiet)
# The project qualifies the trace ids in the service's logs, so they group under Cloud Run's.
env_vars="GOOGLE_CLOUD_PROJECT=$PROJECT_ID"
case $CLIENT_AUTH in
  iam) deploy+=(--no-allow-unauthenticated --set-secrets="OPENAI_API_KEY=$SECRET_NAME:$SECRET_VERSION") ;;
  none) deploy+=(--allow-unauthenticated --set-secrets="OPENAI_API_KEY=$SECRET_NAME:$SECRET_VERSION") ;;
  api-key)
    deploy+=(--allow-unauthenticated
      --set-secrets="OPENAI_API_KEY=$SECRET_NAME:$SECRET_VERSION,$CLIENT_KEYS_MOUNT=$CLIENT_KEYS_SECRET_NAME:latest")
    env_vars+=",CLIENT_API_KEYS_FILE=$CLIENT_KEYS_MOUNT" ;;
esac
# Exactly these variables: --set-env-vars replaces what the service had (console edits too).
for setting in ${EXTRA_ENV[@]+"${EXTRA_ENV[@]}"}; do
  env_vars+=",$setting"
done
[[ -z ${EXTRA_ENV[*]-} ]] || echo "Runtime settings (--env, DEPLOY_ENV): ${EXTRA_ENV[*]%%=*}"
deploy+=(--set-env-vars="$env_vars")
run "${deploy[@]}"

describe_url=(gcloud run services describe "$SERVICE_NAME" --region="$REGION" "${PROJECT[@]}"
  --format='value(status.url)')
if [[ $DRY_RUN == yes ]]; then
  run "${describe_url[@]}"
  exit 0
fi
url=$("${describe_url[@]}")
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

# shellcheck shell=bash
# The rollout's helpers (sourced by scripts/deploy/rollout.sh): checks of runtime settings and of
# secret values, the image tag, the grants a remote build needs, the cleanup policy.

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
    REDIS_URL) problem="holds Redis's AUTH string, a secret: use --memorystore NAME or --redis-url-secret NAME (Secret Manager)" ;;
    REQUEST_TIMEOUT_SECONDS) problem="is set by deploy.sh itself from --timeout, so the service's deadline and Cloud Run's agree" ;;
    GOOGLE_CLOUD_PROJECT | CLIENT_API_KEYS_FILE | OPENAI_API_KEY_FILE) problem="is set by deploy.sh itself" ;;
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

# validate_secret_value ENV_VAR: a secret value from the environment that deploy.sh is about to
# store. Only its shape is reported, never the value.
validate_secret_value() {
  local value=${!1} key
  case $1 in
    OPENAI_API_KEY)
      [[ $value =~ ^[[:graph:]]{20,}$ ]] && return 0
      echo "\$OPENAI_API_KEY is not an API key: at least 20 characters with no spaces or line breaks (OpenAI keys start with sk-); the value is not shown" >&2 ;;
    CLIENT_API_KEYS)
      local count=0 bad=0
      while IFS= read -r key; do
        [[ -z $key ]] && continue
        count=$((count + 1))
        [[ $key =~ ^[[:graph:]]{16,}$ ]] || bad=$((bad + 1))
      done <<<"$value"
      ((count > 0 && bad == 0)) && return 0
      echo "\$CLIENT_API_KEYS must hold one key per line, each at least 16 characters with no spaces (e.g. from openssl rand -hex 32); $bad of $count lines are not; the values are not shown" >&2 ;;
  esac
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

# cleanup_policy: the repository's cleanup rules for this service's images, as the JSON file
# gcloud artifacts repositories set-cleanup-policies reads: delete its images except the newest
# KEEP_IMAGES (a keep rule wins over a delete rule). Named after the service, so the policies of
# other services in the same repository stay as they are.
cleanup_policy() {
  cat <<EOF
[
  {"name": "$SERVICE_NAME-delete-old", "action": {"type": "Delete"},
   "condition": {"tagState": "any", "packageNamePrefixes": ["$SERVICE_NAME"]}},
  {"name": "$SERVICE_NAME-keep-last", "action": {"type": "Keep"},
   "mostRecentVersions": {"packageNamePrefixes": ["$SERVICE_NAME"], "keepCount": $KEEP_IMAGES}}
]
EOF
}

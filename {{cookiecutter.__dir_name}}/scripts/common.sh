# shellcheck shell=bash
# What deploy.sh and scripts/setup-github-wif.sh share: the template's answers (the only copy of
# them), the settings resolved from them, and the helpers both scripts use. Source it from the
# repo root (both scripts cd there first); it sources scripts/validate.sh, the validators.
# Sourcing sets the settings below: environment variables win over the answers, and each script's
# flags (parse_options) win over both.

# The template's answers (checked by its pre-gen hook). To change the service, region, secret or
# account of every deploy (CI's too), edit them here: there is no second copy.
DEFAULT_PROJECT_ID='{{ cookiecutter.gcp_project_id }}'
DEFAULT_REGION='{{ cookiecutter.region }}'
DEFAULT_SERVICE_NAME='{{ cookiecutter.service_name }}'
DEFAULT_SERVICE_ACCOUNT_ID='{{ cookiecutter.service_account_id }}'
DEFAULT_SECRET_NAME='{{ cookiecutter.secret_name }}'
DEFAULT_ARTIFACT_REGISTRY_REPO='{{ cookiecutter.artifact_registry_repo }}'
DEFAULT_MIN_INSTANCES='{{ cookiecutter.min_instances }}'
DEFAULT_MAX_INSTANCES='{{ cookiecutter.max_instances }}'
DEFAULT_CLIENT_KEYS_SECRET_NAME='{{ cookiecutter.__client_keys_secret }}'
# Chosen when the repo was generated: the service's code differs per mode, so no override.
# shellcheck disable=SC2034  # read by the scripts that source this file
CLIENT_AUTH='{{ cookiecutter.client_auth }}'
# shellcheck disable=SC2034  # read by deploy.sh
CI_PROVIDER='{{ cookiecutter.ci_provider }}'
{#- Everything below is bash that Jinja must leave alone. -#}
{% raw %}

# shellcheck source=scripts/validate.sh
source scripts/validate.sh

# fd 3 is the script's own stdout: commands are shown there even while their answer is captured.
exec 3>&1

# How big each instance is and how many requests it serves at once: the one place to change them
# for every deploy (--cpu, --memory, --concurrency change one deploy). An LLM proxy waits on
# OpenAI most of the time but spends CPU on every streamed event, so the concurrency is what one
# vCPU streams at about 70 % CPU for a fast model (~50 events a second per stream): recompute it
# from `make bench`'s "streams per vCPU" (docs/benchmarks.md) for your model. Each instance is
# billed: a higher concurrency costs less as long as the CPU keeps up.
# shellcheck disable=SC2034  # read by scripts/deploy/rollout.sh
DEFAULT_CONCURRENCY=50 DEFAULT_CPU=1 DEFAULT_MEMORY=512Mi
# Cloud Run's request timeout in seconds, also given to the service as REQUEST_TIMEOUT_SECONDS so
# that it ends a stream itself (with an error event) a margin before Cloud Run would cut it.
# shellcheck disable=SC2034  # read by scripts/deploy/rollout.sh
DEFAULT_TIMEOUT=300

# --- Settings: flags, then environment variables, then the template's answers. ---
PROJECT_ID=${PROJECT_ID:-$DEFAULT_PROJECT_ID}
REGION=${REGION:-$DEFAULT_REGION}
SERVICE_NAME=${SERVICE_NAME:-$DEFAULT_SERVICE_NAME}
SERVICE_ACCOUNT_ID=${SERVICE_ACCOUNT_ID:-$DEFAULT_SERVICE_ACCOUNT_ID}
SECRET_NAME=${SECRET_NAME:-$DEFAULT_SECRET_NAME}
SECRET_VERSION=${SECRET_VERSION:-latest}
ARTIFACT_REGISTRY_REPO=${ARTIFACT_REGISTRY_REPO:-$DEFAULT_ARTIFACT_REGISTRY_REPO}
MIN_INSTANCES=${MIN_INSTANCES:-$DEFAULT_MIN_INSTANCES}
MAX_INSTANCES=${MAX_INSTANCES:-$DEFAULT_MAX_INSTANCES}
CLIENT_KEYS_SECRET_NAME=${CLIENT_KEYS_SECRET_NAME:-$DEFAULT_CLIENT_KEYS_SECRET_NAME}
DRY_RUN=no
# The placeholder project id that accepting the template's defaults leaves in the answers.
PLACEHOLDER_PROJECT_ID=my-gcp-project

# parse_options ARGS...: read the command line. -h/--help (the script's usage) and --dry-run are
# handled here; an option named in the script's SWITCHES (e.g. SWITCHES="--yes --tail") takes no
# value and is passed as set_option NAME yes; every other option takes a value (--name VALUE or
# --name=VALUE) and is passed to set_option NAME VALUE, which the script defines and which returns
# 1 for a name it does not know. A word that is not an option goes to set_argument WORD when the
# script defines it. A usage error stops the script with status 2 before anything runs.
SWITCHES=
parse_options() {
  local option value
  while (($# > 0)); do
    option=$1
    value=
    case $option in
      -h | --help) usage; exit 0 ;;
      --dry-run) DRY_RUN=yes; shift; continue ;;
      --*=*) value=${option#*=}; option=${option%%=*}; shift ;;
      --*)
        if [[ " $SWITCHES " == *" $option "* ]]; then
          value=yes; shift
        else
          (($# >= 2)) || { echo "error: $option needs a value (see --help)" >&2; exit 2; }
          value=$2; shift 2
        fi ;;
      *)
        if declare -F set_argument >/dev/null && set_argument "$option"; then
          shift; continue
        fi
        echo "error: unexpected argument $(printf '%q' "$option") (see --help)" >&2; exit 2 ;;
    esac
    set_option "$option" "$value" ||
      { echo "error: unknown option $(printf '%q' "$option") (see --help)" >&2; exit 2; }
  done
}

# die MESSAGE [DETAILS...]: print the message and what to do about it, then stop.
die() {
  printf 'error: %s\n' "$1" >&2
  shift
  (($# == 0)) || printf '%s\n' "$@" >&2
  exit 1
}

# run COMMAND...: print the command shell-quoted ("+ gcloud ..."), then run it; in dry-run mode
# only print it. Every command that changes something goes through here, so the output of a
# real run and of a dry run list the same commands in the same order.
run() {
  printf '+'
  printf ' %q' "$@"
  printf '\n'
  [[ $DRY_RUN == yes ]] || "$@"
}

# step TITLE...: print "[N/STEPS] TITLE"; each script sets STEPS, its number of steps.
STEP=0
step() {
  STEP=$((STEP + 1))
  # shellcheck disable=SC2153  # STEPS is set by the script that sources this file
  printf '\n[%d/%d] %s\n' "$STEP" "$STEPS" "$*"
}

# require_gcloud: stop unless the gcloud CLI is on PATH.
require_gcloud() {
  command -v gcloud >/dev/null 2>&1 ||
    die "gcloud is not installed: https://cloud.google.com/sdk/docs/install"
}

# active_account: set ACCOUNT to the active gcloud account, or stop when nobody is logged in. In
# dry-run mode nothing is looked up: the command is printed and ACCOUNT is left empty.
ACCOUNT=
active_account() {
  local lookup=(gcloud auth list --filter=status:ACTIVE --format='value(account)')
  DRY_RUN=yes run "${lookup[@]}"
  [[ $DRY_RUN == no ]] || return 0
  ACCOUNT=$("${lookup[@]}" 2>/dev/null || true)
  [[ -n $ACCOUNT ]] || die "no active gcloud account. Run: gcloud auth login"
}

# --- What every deploy.sh subcommand shares: the service it acts on and how it looks it up. ---

# set_target_option NAME VALUE: the options every subcommand takes (--project, --region,
# --service, --service-account).
set_target_option() {
  case $1 in
    --project) PROJECT_ID=$2 ;;
    --region) REGION=$2 ;;
    --service) SERVICE_NAME=$2 ;;
    --service-account) SERVICE_ACCOUNT_ID=$2 ;;
    *) return 1 ;;
  esac
}

# target_options_help: the --help lines of the options every subcommand takes.
target_options_help() {
  cat <<EOF
Options (each also read from the environment variable in brackets; a flag wins):
  --project ID   Google Cloud project  [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --region REGION                      [REGION, default: $DEFAULT_REGION]
  --service NAME                       [SERVICE_NAME, default: $DEFAULT_SERVICE_NAME]
  --dry-run      print every command, shell-quoted, and run none
  -h, --help     show this help
EOF
}

# resolve_target: check the project, region and service (stop when one is invalid) and set the
# names derived from them: PROJECT (the --project flag), RUNTIME_SA_EMAIL.
resolve_target() {
  local invalid=0
  validate_project_id "$PROJECT_ID" 'PROJECT_ID (--project)' || invalid=1
  validate_region "$REGION" 'REGION (--region)' || invalid=1
  validate_service_name "$SERVICE_NAME" 'SERVICE_NAME (--service)' || invalid=1
  validate_service_account_id "$SERVICE_ACCOUNT_ID" 'SERVICE_ACCOUNT_ID (--service-account)' ||
    invalid=1
  ((invalid == 0)) || die "nothing was run; fix the values above (flags, environment variables, or the defaults in scripts/common.sh)."
  PROJECT=(--project="$PROJECT_ID")
  # shellcheck disable=SC2034  # read by the subcommands and scripts/memorystore.sh
  RUNTIME_SA_EMAIL="$SERVICE_ACCOUNT_ID@$PROJECT_ID.iam.gserviceaccount.com"
  REGION_FLAGS=(--region="$REGION" "${PROJECT[@]}")
}

# refuse_placeholder_project: the template's default project id is not a real project. A dry run
# only warns, so the commands can be read before a project exists.
refuse_placeholder_project() {
  [[ $PROJECT_ID == "$PLACEHOLDER_PROJECT_ID" ]] || return 0
  local message="$PLACEHOLDER_PROJECT_ID is the template's placeholder project id, not your project."
  local fix="Pass yours: ./deploy.sh --project YOUR_PROJECT_ID (or PROJECT_ID=...), or set DEFAULT_PROJECT_ID in scripts/common.sh."
  if [[ $DRY_RUN == yes ]]; then
    printf 'warning: %s A real run stops here.\n%s\n' "$message" "$fix" >&2
  else
    die "$message" "$fix"
  fi
}

# start_subcommand STEPS ARGS...: what promote, rollback and status begin with: read the command
# line (with the subcommand's usage, set_option and set_argument), check the target, refuse the
# placeholder project, then step 1 of STEPS: the preflight.
start_subcommand() {
  # shellcheck disable=SC2034  # read by step
  STEPS=$1
  shift
  parse_options "$@"
  resolve_target
  refuse_placeholder_project
  step "Preflight: gcloud, account, project"
  preflight_access
}

# preflight_access: gcloud is installed, someone is logged in and that account sees the project.
preflight_access() {
  require_gcloud
  active_account
  DRY_RUN=yes run gcloud projects describe "$PROJECT_ID" --format='value(projectId)'
  [[ $DRY_RUN == no ]] || return 0
  echo "Account: $ACCOUNT"
  gcloud projects describe "$PROJECT_ID" --format='value(projectId)' >/dev/null ||
    die "project $PROJECT_ID is not visible to $ACCOUNT. Check the id (PROJECT_ID or --project), or run: gcloud auth login"
  echo "Project: $PROJECT_ID"
}

# exists COMMAND...: run a gcloud describe; true when found, false when missing (NOT_FOUND, or
# Cloud Run's "Cannot find service"), and any other error (permission, auth) stops the script
# instead of passing for "missing". In dry-run mode nothing is looked up and every resource is
# shown as missing, so the output lists every command a fresh project needs.
exists() {
  local errors
  DRY_RUN=yes run "$@" >&3
  [[ $DRY_RUN == no ]] || return 1
  errors=$("$@" 2>&1 >/dev/null) && return 0
  [[ $errors == *NOT_FOUND* || $errors == *"Cannot find service"* ]] && return 1
  die "$(printf '%q ' "$@")failed:" "$errors"
}

# run_with_stdin VALUE COMMAND...: give VALUE to COMMAND on stdin. printf is a builtin, so the
# value never appears in any process's argv; it is not printed either.
run_with_stdin() {
  local value=$1
  shift
  DRY_RUN=yes run "$@"
  printf '  (stdin: the secret value, not shown)\n'
  [[ $DRY_RUN == yes ]] || printf '%s' "$value" | "$@"
}

# Seconds before the first retry of a binding (then twice, three times ... as long).
IAM_RETRY_DELAY=${IAM_RETRY_DELAY:-5}

# retry_while_new_account COMMAND...: run an add-iam-policy-binding. IAM is eventually
# consistent: a service account created seconds ago can still be refused as INVALID_ARGUMENT
# ("... does not exist") for about a minute, so that error only is retried, with back-off.
retry_while_new_account() {
  local attempt errors
  DRY_RUN=yes run "$@"
  [[ $DRY_RUN == no ]] || return 0
  for attempt in 1 2 3 4 5; do
    errors=$("$@" 2>&1 >/dev/null) && return 0
    if [[ $errors != *INVALID_ARGUMENT* && $errors != *"does not exist"* ]] || ((attempt == 5)); then
      die "$(printf '%q ' "$@")failed:" "$errors"
    fi
    echo "The new service account is not visible to IAM yet; retrying in $((attempt * IAM_RETRY_DELAY)) s."
    sleep "$((attempt * IAM_RETRY_DELAY))"
  done
}

# has_binding ROLE MEMBER GET_IAM_POLICY_COMMAND...: true when the policy that command reads
# (e.g. secrets get-iam-policy NAME) already grants ROLE to MEMBER, so a rerun changes no IAM
# policy and needs no right to change one. One "ROLE<tab>MEMBER" line per member of each binding,
# matched here rather than with --filter, whose pattern rules would read the ":" in
# "serviceAccount:..." as an operator.
has_binding() {
  local role=$1 member=$2 policy
  shift 2
  policy=$(query gcloud "$@" --project="$PROJECT_ID" --flatten='bindings[].members' \
    --format='value(bindings.role,bindings.members)')
  [[ $'\n'$policy$'\n' == *$'\n'"$role"$'\t'"$member"$'\n'* ]]
}

# grant_on_secret SECRET MEMBER ROLE: bind ROLE on the one secret (never project-wide) unless its
# policy already has the binding. Reading the policy needs only roles/secretmanager.viewer.
grant_on_secret() {
  local secret=$1 member=$2 role=$3
  if has_binding "$role" "$member" secrets get-iam-policy "$secret"; then
    echo "$member already has $role on secret $secret."
  else
    retry_while_new_account gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT_ID" \
      --member="$member" --role="$role" --condition=None --format=none
  fi
}

# query COMMAND...: show a read-only gcloud command (on the script's own stdout, fd 3, even when
# the answer is captured), then print what it answers; in dry-run mode answer nothing. An error
# stops the script.
query() {
  local output
  DRY_RUN=yes run "$@" >&3
  [[ $DRY_RUN == no ]] || return 0
  output=$("$@") || die "$(printf '%q ' "$@")failed (its error is above)."
  printf '%s\n' "$output"
}

# traffic_lines: the service's traffic targets, one per line: REVISION|PERCENT|TAG|URL (PERCENT
# and TAG may be empty: a tag alone serves no traffic). gcloud separates the values with tabs,
# which `read` would merge when one is empty, hence the "|".
traffic_lines() {
  query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
    --flatten=status.traffic \
    --format='value(status.traffic.revisionName,status.traffic.percent,status.traffic.tag,status.traffic.url)' |
    tr '\t' '|'
}

# tagged TAG [url]: the revision that carries TAG (or, with "url", its URL), from traffic_lines
# on stdin; false when no revision carries it.
tagged() {
  local revision percent tag url
  while IFS='|' read -r revision percent tag url; do
    [[ $tag == "$1" ]] || continue
    if [[ ${2:-} == url ]]; then echo "$url"; else echo "$revision"; fi
    return 0
  done
  return 1
}

# serving_revision EXCEPT: the revision serving the largest share of traffic other than EXCEPT,
# from traffic_lines on stdin (empty when none does).
serving_revision() {
  local revision percent tag url best='' most=0
  while IFS='|' read -r revision percent tag url; do
    [[ $revision != "$1" && $percent =~ ^[0-9]+$ ]] || continue
    ((percent > most)) && { most=$percent; best=$revision; }
  done
  echo "$best"
}

# The tag deploy.sh keeps on the revision that served before the last promote, so that
# `./deploy.sh rollback` knows where to go back to; it serves no traffic, only its own URL.
PREVIOUS_TAG=previous

# promote_latest TRAFFIC LATEST: send all traffic to the latest revision LATEST (traffic then
# follows every later deploy). The revision that served most of TRAFFIC (traffic_lines) before
# is tagged $PREVIOUS_TAG for ./deploy.sh rollback, and the candidate tags of earlier deploys,
# which only served their tests, are removed.
promote_latest() {
  local traffic=$1 latest=$2 previous args=(--to-latest) stale=() revision percent tag url
  previous=$(serving_revision "$latest" <<<"$traffic")
  [[ $DRY_RUN == no ]] || previous=${previous:-PREVIOUS_REVISION}
  [[ -z $previous ]] || args+=(--update-tags="$PREVIOUS_TAG=$previous")
  while IFS='|' read -r revision percent tag url; do
    [[ $tag == candidate-* ]] && stale+=("$tag")
  done <<<"$traffic"
  [[ -z ${stale[*]-} ]] || args+=(--remove-tags="$(IFS=,; echo "${stale[*]}")")
  run gcloud run services update-traffic "$SERVICE_NAME" "${REGION_FLAGS[@]}" "${args[@]}" --quiet
  echo "All traffic goes to $latest."
  [[ -z $previous ]] ||
    echo "The revision that served before, $previous, is tagged $PREVIOUS_TAG: ./deploy.sh rollback sends the traffic back to it."
}

# show_traffic: where the traffic goes now, one line per revision or tag.
show_traffic() {
  local revision percent tag url
  echo "Traffic now:"
  while IFS='|' read -r revision percent tag url; do
    [[ -n $revision ]] || continue
    printf '  %4s%%  %-40s %s\n' "${percent:-0}" "$revision" "${tag:+tag $tag: $url}"
  done < <(traffic_lines)
}

# log_command REVISION: the command that reads one revision's logs.
log_command() {
  printf "gcloud logging read 'resource.type=\"cloud_run_revision\" AND resource.labels.service_name=\"%s\" AND resource.labels.revision_name=\"%s\"' --project=%s --limit=50" \
    "$SERVICE_NAME" "$1" "$PROJECT_ID"
}
{%- endraw %}

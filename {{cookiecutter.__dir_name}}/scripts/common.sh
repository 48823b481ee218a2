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

# parse_options ARGS...: read the command line. -h/--help (the script's usage) and --dry-run are
# handled here; every other option takes a value (--name VALUE or --name=VALUE) and is passed to
# set_option NAME VALUE, which the script defines and which returns 1 for a name it does not know.
# A usage error stops the script with status 2 before anything runs.
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
        (($# >= 2)) || { echo "error: $option needs a value (see --help)" >&2; exit 2; }
        value=$2; shift 2 ;;
      *) echo "error: unexpected argument $(printf '%q' "$option") (see --help)" >&2; exit 2 ;;
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

# Run a command, or in dry-run mode print it shell-quoted instead.
run() {
  if [[ $DRY_RUN == yes ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
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
  if [[ $DRY_RUN == yes ]]; then
    run "${lookup[@]}"
    return
  fi
  ACCOUNT=$("${lookup[@]}" 2>/dev/null || true)
  [[ -n $ACCOUNT ]] || die "no active gcloud account. Run: gcloud auth login"
}
{%- endraw %}

# shellcheck shell=bash
{#- Everything below is bash that Jinja must leave alone. -#}
{% raw %}
# Look before you change: the helpers the scripts use so that a deployer with only the roles it
# needs (README, "CI/CD") can run them. Sourced after scripts/common.sh (run, die, DRY_RUN).
# - A describe that is refused must stop with the fix, never pass for "missing": creating the
#   resource would fail anyway, or hide that the account looks at the wrong project.
# - IAM is eventually consistent: a service account created seconds ago is refused in a binding
#   for a while, so bindings are retried with back-off.
# - A binding is only added when the policy lacks it, so a rerun needs no right to change IAM.

# Seconds before the first retry of a binding (then twice, three times ... as long).
IAM_RETRY_DELAY=${IAM_RETRY_DELAY:-5}

# gcloud_lookup VAR COMMAND...: run a gcloud describe (or get, access); on success put its output in VAR
# and return 0. Return 1 when the resource does not exist and 2 when its API is not enabled yet.
# A refused lookup or any other error stops the script with gcloud's message. In dry-run mode the
# command is printed, VAR is empty and the resource counts as missing, so a dry run shows every
# command a fresh project needs.
gcloud_lookup() {
  # Locals are _-prefixed: VAR is set with printf -v, and a local of the same name would hide it.
  local _var=$1 _output _errors _status=0
  shift
  printf -v "$_var" '%s' ''
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
    return 1
  fi
  _errors=$(mktemp)
  _output=$("$@" 2>"$_errors") || _status=$?
  if ((_status == 0)); then
    rm -f "$_errors"
    printf -v "$_var" '%s' "$_output"
    return 0
  fi
  _output=$(<"$_errors")
  rm -f "$_errors"
  # A disabled API also answers PERMISSION_DENIED, so it is recognised first.
  case $_output in
    *SERVICE_DISABLED* | *"has not been used in project"*) return 2 ;;
    *PERMISSION_DENIED* | *"does not have permission"* | *"Permission denied"*)
      die "$(printf '%q ' "$@")was refused:" "$_output" \
        "The active account (gcloud auth list) needs a role that can read this: README, \"CI/CD\", lists each role with the command that needs it. Nothing was created." ;;
    *NOT_FOUND* | *"not found"* | *"does not exist"* | *"Cannot find"*) return 1 ;;
  esac
  die "$(printf '%q ' "$@")failed:" "$_output"
}

# gcloud_grant COMMAND...: run an add-iam-policy-binding, retrying while IAM does not see a service
# account created moments ago (INVALID_ARGUMENT, "... does not exist"), for about a minute.
gcloud_grant() {
  local attempt errors
  [[ $DRY_RUN == no ]] || { run "$@"; return; }
  for attempt in 1 2 3 4 5; do
    errors=$("$@" 2>&1 >/dev/null) && return 0
    if [[ $errors != *INVALID_ARGUMENT* && $errors != *"does not exist"* ]] || ((attempt == 5)); then
      die "$(printf '%q ' "$@")failed:" "$errors"
    fi
    echo "IAM does not see the new service account yet; retrying in $((attempt * IAM_RETRY_DELAY)) s."
    sleep "$((attempt * IAM_RETRY_DELAY))"
  done
}

# grant_on_secret SECRET MEMBER ROLE: bind ROLE on the one secret (never project-wide) unless its
# policy already has the binding. Reading the policy needs only roles/secretmanager.viewer.
grant_on_secret() {
  local secret=$1 member=$2 role=$3 policy status=0
  # One "ROLE<tab>MEMBER" line per member of each binding, matched here rather than with
  # --filter, whose pattern rules would read the ":" in "serviceAccount:..." as an operator.
  gcloud_lookup policy gcloud secrets get-iam-policy "$secret" --project="$PROJECT_ID" \
    --flatten='bindings[].members' --format='value(bindings.role,bindings.members)' || status=$?
  ((status <= 1)) || die "the Secret Manager API is not enabled in $PROJECT_ID." \
    "Run: gcloud services enable secretmanager.googleapis.com --project=$PROJECT_ID"
  if [[ $'\n'$policy$'\n' == *$'\n'"$role"$'\t'"$member"$'\n'* ]]; then
    echo "$member already has $role on secret $secret."
    return
  fi
  gcloud_grant gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT_ID" \
    --member="$member" --role="$role" --condition=None --format=none
}

# pipe_secret VALUE COMMAND...: give VALUE to COMMAND on stdin. printf is a builtin, so the value
# is in no process's argv; in dry-run mode it is not printed either.
pipe_secret() {
  local value=$1
  shift
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
    printf '  (stdin: the secret value, not shown)\n'
  else
    printf '%s' "$value" | "$@"
  fi
}
{%- endraw %}

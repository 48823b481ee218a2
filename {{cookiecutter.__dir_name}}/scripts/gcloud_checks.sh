# shellcheck shell=bash
{#- Everything below is bash that Jinja must leave alone. -#}
{% raw %}
# Look before you change: the helpers the scripts use so that a deployer with only the roles it
# needs (README, "CI/CD") can run them. Sourced after scripts/common.sh, whose run, die,
# retry_while_new_account and run_with_stdin they use.
# - A describe that is refused must stop with the fix, never pass for "missing": creating the
#   resource would fail anyway, or hide that the account looks at the wrong project.
# - A binding is only added when the policy lacks it, so a rerun needs no right to change IAM.

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
  retry_while_new_account gcloud secrets add-iam-policy-binding "$secret" --project="$PROJECT_ID" \
    --member="$member" --role="$role" --condition=None --format=none
}
{%- endraw %}

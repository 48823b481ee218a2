# shellcheck shell=bash
{#- Everything below is bash that Jinja must leave alone. -#}
{% raw %}
# Look before you change: the helpers the scripts use so that a deployer with only the roles it
# needs (README, "CI/CD") can run them. Sourced after scripts/common.sh (run, die, DRY_RUN, and
# the IAM helpers has_binding, grant_on_secret, retry_while_new_account, run_with_stdin).
# - A describe that is refused must stop with the fix, never pass for "missing": creating the
#   resource would fail anyway, or hide that the account looks at the wrong project.

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
{%- endraw %}

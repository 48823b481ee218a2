# shellcheck shell=bash
# ./deploy.sh logs [--tail]: the service's recent log lines, or follow them live. Only reads.
# Sourced by deploy.sh after scripts/common.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh logs [--tail] [options]

Prints the service's most recent log lines (gcloud run services logs read), or with --tail
follows them as they come (gcloud beta run services logs tail, which needs the beta component
and the log-streaming package: gcloud components install beta log-streaming, or on Debian/Ubuntu
apt-get install google-cloud-cli-log-streaming).

Options (each also read from the environment variable in brackets; a flag wins):
  --limit N      how many lines to read (default 50)
  --tail         follow the logs instead (Ctrl-C stops)
  --project ID   Google Cloud project  [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --region REGION                      [REGION, default: $DEFAULT_REGION]
  --service NAME                       [SERVICE_NAME, default: $DEFAULT_SERVICE_NAME]
  --dry-run      print the command and run none
  -h, --help     show this help
EOF
}

TAIL=no
LIMIT=50
# shellcheck disable=SC2034  # read by scripts/common.sh (step, parse_options, resolve_target)
SWITCHES="--tail"
set_option() {
  set_target_option "$@" && return 0
  case $1 in
    --tail) TAIL=yes ;;
    --limit) LIMIT=$2 ;;
    *) return 1 ;;
  esac
}
parse_options "$@"
resolve_target
[[ $LIMIT =~ ^[1-9][0-9]{0,4}$ ]] || die "$(printf '%q' "$LIMIT") is not a number of lines (--limit, e.g. 50)."
refuse_placeholder_project
require_gcloud

if [[ $TAIL == yes ]]; then
  echo "Following the logs of $SERVICE_NAME (Ctrl-C stops). This needs the beta component and the log-streaming package: gcloud components install beta log-streaming (Debian/Ubuntu: apt-get install google-cloud-cli-log-streaming)." >&2
  run gcloud beta run services logs tail "$SERVICE_NAME" "${REGION_FLAGS[@]}"
else
  run gcloud run services logs read "$SERVICE_NAME" "${REGION_FLAGS[@]}" --limit="$LIMIT"
fi

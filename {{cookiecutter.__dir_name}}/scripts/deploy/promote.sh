# shellcheck shell=bash
# ./deploy.sh promote: after ./deploy.sh --canary PERCENT, send all traffic to the latest revision.
# The revision that served most of the traffic until now is tagged "previous", which is where
# ./deploy.sh rollback goes back to. Sourced by deploy.sh after scripts/common.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh promote [options]

Sends all traffic of the service to its latest revision (the canary of ./deploy.sh --canary),
and tags the revision that served before as "$PREVIOUS_TAG" for ./deploy.sh rollback.

Options (each also read from the environment variable in brackets; a flag wins):
  --project ID   Google Cloud project  [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --region REGION                      [REGION, default: $DEFAULT_REGION]
  --service NAME                       [SERVICE_NAME, default: $DEFAULT_SERVICE_NAME]
  --dry-run      print every command, shell-quoted, and run none
  -h, --help     show this help
EOF
}

set_option() { set_target_option "$@"; }
parse_options "$@"
resolve_target
refuse_placeholder_project

# shellcheck disable=SC2034  # read by scripts/common.sh (step, parse_options, resolve_target)
STEPS=2
step "Preflight: gcloud, account, project"
preflight_access

step "Promote the latest revision of $SERVICE_NAME"
traffic=$(traffic_lines)
latest=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
  --format='value(status.latestReadyRevisionName)')
[[ -n $latest || $DRY_RUN == yes ]] || die "$SERVICE_NAME has no ready revision to promote."
promote_latest "$traffic" "${latest:-LATEST_REVISION}"
show_traffic

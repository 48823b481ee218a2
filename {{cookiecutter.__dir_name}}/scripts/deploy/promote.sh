# shellcheck shell=bash
# ./deploy.sh promote: after ./deploy.sh --canary PERCENT, send all traffic to the latest revision.
# The revision that served most of the traffic until now is tagged "previous", which is where
# ./deploy.sh rollback goes back to. Sourced by deploy.sh after scripts/common.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh promote [options]

Sends all traffic of the service to its latest revision (the canary of ./deploy.sh --canary),
and tags the revision that served before as "$PREVIOUS_TAG" for ./deploy.sh rollback.

EOF
  target_options_help
}

set_option() { set_target_option "$@"; }
start_subcommand 2 "$@"

step "Promote the latest revision of $SERVICE_NAME"
traffic=$(traffic_lines)
latest=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
  --format='value(status.latestReadyRevisionName)')
[[ -n $latest || $DRY_RUN == yes ]] || die "$SERVICE_NAME has no ready revision to promote."
promote_latest "$traffic" "${latest:-LATEST_REVISION}"
show_traffic

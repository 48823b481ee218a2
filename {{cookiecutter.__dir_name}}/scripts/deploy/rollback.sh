# shellcheck shell=bash
# ./deploy.sh rollback [REVISION]: send all traffic to REVISION, by default to the revision tagged
# "previous": the one that served before the last promote (./deploy.sh promote, or a deploy
# without --canary, tags it). Sourced by deploy.sh after scripts/common.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh rollback [REVISION] [options]

Sends all traffic of the service to REVISION (default: the revision tagged "$PREVIOUS_TAG", which
served before the last promote). Traffic then stays on it until the next deploy or promote.
List the revisions with ./deploy.sh status.

EOF
  target_options_help
}

REVISION=
set_option() { set_target_option "$@"; }
set_argument() {
  [[ -z $REVISION ]] || return 1
  # Cloud Run revision names are DNS labels, e.g. my-service-00012-abc.
  [[ $1 =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
    die "$(printf '%q' "$1") is not a revision name (e.g. my-service-00012-abc); see ./deploy.sh status."
  REVISION=$1
}
start_subcommand 2 "$@"

step "Roll $SERVICE_NAME back"
traffic=$(traffic_lines)
if [[ -z $REVISION ]]; then
  if ! REVISION=$(tagged "$PREVIOUS_TAG" <<<"$traffic") && [[ $DRY_RUN == no ]]; then
    die "no revision of $SERVICE_NAME is tagged $PREVIOUS_TAG (it is set when traffic moves to a new revision)." \
      "Name the revision to go back to: ./deploy.sh rollback REVISION (./deploy.sh status lists them)."
  fi
  REVISION=${REVISION:-PREVIOUS_REVISION}
fi
run gcloud run services update-traffic "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
  --to-revisions="$REVISION=100" --quiet
echo "All traffic goes to $REVISION; it stays there until the next deploy or ./deploy.sh promote."
show_traffic

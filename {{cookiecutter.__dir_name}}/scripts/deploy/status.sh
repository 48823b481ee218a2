# shellcheck shell=bash
# ./deploy.sh status: what is deployed: the URL, where the traffic goes (revisions and tags), the
# image and the instance limits, and the latest revisions. Only reads. Sourced by deploy.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh status [options]

Shows the service's URL, its traffic by revision and tag, the image and min/max instances of
the latest revision, and its recent revisions. Changes nothing.

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

step "Status of $SERVICE_NAME in $REGION"
url=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" --format='value(status.url)')
echo "URL: ${url:-URL}"
show_traffic
template=$(query gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" \
  --format="value(spec.template.spec.containers[0].image,spec.template.metadata.annotations.'autoscaling.knative.dev/minScale',spec.template.metadata.annotations.'autoscaling.knative.dev/maxScale')" |
  tr '\t' '|')
IFS='|' read -r image min max <<<"$template"
echo "Image: ${image:-IMAGE}"
echo "Instances: min ${min:-0}, max ${max:-default}"
echo "Revisions (newest first):"
run gcloud run revisions list --service="$SERVICE_NAME" "${REGION_FLAGS[@]}" --limit=10

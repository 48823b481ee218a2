# shellcheck shell=bash
# ./deploy.sh status: what is deployed: the URL, where the traffic goes (revisions and tags), the
# image and the instance limits, and the latest revisions. Only reads. Sourced by deploy.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh status [options]

Shows the service's URL, its traffic by revision and tag, the image and min/max instances of
the latest revision, and its recent revisions. Changes nothing.

EOF
  target_options_help
}

set_option() { set_target_option "$@"; }
start_subcommand 2 "$@"

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

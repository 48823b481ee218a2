# shellcheck shell=bash
# ./deploy.sh destroy: delete what deploy.sh made for this service: the Cloud Run service, the
# runtime account's bindings on the secrets, the runtime service account and the service's images;
# the secrets only with --delete-secrets. Asks for the service name first unless --yes. Each
# resource is looked up first, so a second run deletes nothing and says so. Sourced by deploy.sh.

usage() {
  cat <<EOF
Usage: ./deploy.sh destroy [options]

Deletes the Cloud Run service, the runtime service account's access to the secrets, the runtime
service account and the service's images in Artifact Registry. The secrets are kept unless
--delete-secrets is given (a deleted secret cannot be restored). The repository itself is kept:
other services may use it. Asks you to type the service name unless --yes.

Options (each also read from the environment variable in brackets; a flag wins):
  --yes                     do not ask (needed when stdin is not a terminal, e.g. in CI)
  --delete-secrets          also delete the secrets (the OpenAI key$([[ $CLIENT_AUTH == api-key ]] && echo ', the client keys'))
  --project ID              Google Cloud project       [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --region REGION                                      [REGION, default: $DEFAULT_REGION]
  --service NAME                                       [SERVICE_NAME, default: $DEFAULT_SERVICE_NAME]
  --service-account ID      runtime service account ID [SERVICE_ACCOUNT_ID, default: $DEFAULT_SERVICE_ACCOUNT_ID]
  --secret NAME             the OpenAI key secret      [SECRET_NAME, default: $DEFAULT_SECRET_NAME]
  --client-keys-secret NAME the client keys secret     [CLIENT_KEYS_SECRET_NAME, default: $DEFAULT_CLIENT_KEYS_SECRET_NAME]
  --repo REPO               Artifact Registry repository [ARTIFACT_REGISTRY_REPO, default: $DEFAULT_ARTIFACT_REGISTRY_REPO]
  --dry-run                 print every command, shell-quoted, and run none (no prompt)
  -h, --help                show this help
EOF
}

YES=no
DELETE_SECRETS=no
# shellcheck disable=SC2034  # read by scripts/common.sh (step, parse_options, resolve_target)
SWITCHES="--yes --delete-secrets"
set_option() {
  set_target_option "$@" && return 0
  case $1 in
    --yes) YES=yes ;;
    --delete-secrets) DELETE_SECRETS=yes ;;
    --secret) SECRET_NAME=$2 ;;
    --client-keys-secret) CLIENT_KEYS_SECRET_NAME=$2 ;;
    --repo) ARTIFACT_REGISTRY_REPO=$2 ;;
    *) return 1 ;;
  esac
}
parse_options "$@"
resolve_target
invalid=0
validate_secret_name "$SECRET_NAME" 'SECRET_NAME (--secret)' || invalid=1
validate_secret_name "$CLIENT_KEYS_SECRET_NAME" 'CLIENT_KEYS_SECRET_NAME (--client-keys-secret)' || invalid=1
validate_artifact_registry_repo "$ARTIFACT_REGISTRY_REPO" 'ARTIFACT_REGISTRY_REPO (--repo)' || invalid=1
((invalid == 0)) || die "nothing was deleted; fix the values above."
refuse_placeholder_project

secrets=("$SECRET_NAME")
[[ $CLIENT_AUTH != api-key ]] || secrets+=("$CLIENT_KEYS_SECRET_NAME")

# present DESCRIBE_COMMAND...: like exists, but a dry run assumes the resource is there, so it
# shows every delete a real run could make.
present() {
  [[ $DRY_RUN == no ]] || { run "$@"; return 0; }
  exists "$@"
}
if [[ $YES == no && $DRY_RUN == no ]]; then
  [[ -t 0 ]] || die "destroy asks for the service name to confirm, but stdin is not a terminal; nothing was deleted." \
    "Run it in a terminal, or pass --yes: ./deploy.sh destroy --yes"
  echo "This deletes Cloud Run service $SERVICE_NAME ($REGION, project $PROJECT_ID), its runtime account $RUNTIME_SA_EMAIL and its images$([[ $DELETE_SECRETS == yes ]] && echo ", and the secrets ${secrets[*]}")."
  read -r -p "Type the service name to confirm: " answer
  [[ $answer == "$SERVICE_NAME" ]] || die "that is not $SERVICE_NAME; nothing was deleted."
fi

# shellcheck disable=SC2034  # read by scripts/common.sh (step, parse_options, resolve_target)
STEPS=6
step "Preflight: gcloud, account, project"
preflight_access

step "Cloud Run service $SERVICE_NAME"
if present gcloud run services describe "$SERVICE_NAME" "${REGION_FLAGS[@]}" --format='value(status.url)'; then
  run gcloud run services delete "$SERVICE_NAME" "${REGION_FLAGS[@]}" --quiet
else
  echo "Already gone."
fi

step "The runtime account's access to ${secrets[*]}"
for secret in "${secrets[@]}"; do
  if [[ $DELETE_SECRETS == yes ]]; then
    echo "Skipped for $secret: the secret is deleted below, with its bindings."
  elif present gcloud secrets describe "$secret" "${PROJECT[@]}" && {
    has_binding roles/secretmanager.secretAccessor "serviceAccount:$RUNTIME_SA_EMAIL" \
      secrets get-iam-policy "$secret" || [[ $DRY_RUN == yes ]]
  }; then
    run gcloud secrets remove-iam-policy-binding "$secret" "${PROJECT[@]}" \
      --member="serviceAccount:$RUNTIME_SA_EMAIL" --role=roles/secretmanager.secretAccessor \
      --condition=None --format=none
  else
    echo "No binding on $secret."
  fi
done

step "Runtime service account $RUNTIME_SA_EMAIL"
if present gcloud iam service-accounts describe "$RUNTIME_SA_EMAIL" "${PROJECT[@]}"; then
  run gcloud iam service-accounts delete "$RUNTIME_SA_EMAIL" "${PROJECT[@]}" --quiet
else
  echo "Already gone."
fi

step "Images of $SERVICE_NAME in $ARTIFACT_REGISTRY_REPO (the repository is kept)"
repo_flags=(--repository="$ARTIFACT_REGISTRY_REPO" --location="$REGION" "${PROJECT[@]}")
if present gcloud artifacts packages describe "$SERVICE_NAME" "${repo_flags[@]}"; then
  run gcloud artifacts packages delete "$SERVICE_NAME" "${repo_flags[@]}" --quiet
else
  echo "No images."
fi

step "Secrets ${secrets[*]}"
for secret in "${secrets[@]}"; do
  if [[ $DELETE_SECRETS == no ]]; then
    echo "Kept $secret (delete it with --delete-secrets, or: gcloud secrets delete $secret --project=$PROJECT_ID)."
  elif present gcloud secrets describe "$secret" "${PROJECT[@]}"; then
    run gcloud secrets delete "$secret" "${PROJECT[@]}" --quiet
  else
    echo "$secret is already gone."
  fi
done
[[ -z ${MEMORYSTORE_INSTANCE:-} ]] ||
  echo "The Memorystore instance is kept (billed until deleted): gcloud redis instances delete $MEMORYSTORE_INSTANCE --region=$REGION --project=$PROJECT_ID"
echo
echo "Destroyed $SERVICE_NAME$([[ $DRY_RUN == yes ]] && echo ' (dry run: nothing was deleted)')."

#!/usr/bin/env bash
{#- Everything below is bash that Jinja must leave alone; the template's answers are rendered in
    scripts/common.sh. -#}
{% raw %}
# One-time setup that lets GitHub Actions (.github/workflows/deploy.yml) deploy this service
# without a service account key: a Workload Identity Federation pool and provider that trust only
# this repository's main branch, and a deployer service account with just the roles ./deploy.sh
# needs on a rerun. Safe to run again: everything is looked up (describe) before it is created.
# Run ./deploy.sh once first: the deployer gets roles on the resources it creates.
set -euo pipefail

# Run from the repo root, where git knows the remote and deploy.sh's settings and validators live.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The template's answers and the settings resolved from them, with the same environment variables
# as deploy.sh; the helpers both scripts share.
# shellcheck source=scripts/common.sh
source scripts/common.sh

GITHUB_ISSUER=https://token.actions.githubusercontent.com

usage() {
  cat <<EOF
Usage: scripts/setup-github-wif.sh [options]

Creates what GitHub Actions needs to deploy with Workload Identity Federation (no JSON key):
a workload identity pool, an OIDC provider that accepts only this repository's deploy branch,
and a deployer service account with the roles ./deploy.sh uses. Prints the repository variables
to store in GitHub. Safe to run again. Run ./deploy.sh once before (it creates the runtime
account, the secrets and the image repository the deployer is given access to).

Options (each also read from the environment variable in brackets; a flag wins):
  --github-repo OWNER/REPO  the GitHub repository allowed to deploy
                            [GITHUB_REPOSITORY, default: from the git remote "origin"]
  --branch BRANCH           the only branch whose workflows may deploy [DEPLOY_BRANCH, default: main]
  --project ID              Google Cloud project       [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --pool ID                 workload identity pool     [WIF_POOL_ID, default: github]
  --provider ID             its provider for this repo [WIF_PROVIDER_ID, default: $DEFAULT_PROVIDER_ID]
  --deployer ID             deployer service account   [DEPLOYER_SERVICE_ACCOUNT_ID, default: $DEFAULT_DEPLOYER_ID]
  --dry-run                 print every command, shell-quoted, and run none
  -h, --help                show this help

The names deploy.sh uses come from the same environment variables as there: REGION,
SERVICE_NAME, SERVICE_ACCOUNT_ID, SECRET_NAME, ARTIFACT_REGISTRY_REPO, CLIENT_KEYS_SECRET_NAME.
EOF
}

# exists COMMAND...: true when a gcloud describe succeeds. In dry-run mode nothing is looked up
# and every resource is shown as missing, so the output lists every command a fresh project needs.
exists() {
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
    return 1
  fi
  "$@" >/dev/null 2>&1
}

# require DESCRIPTION COMMAND...: add DESCRIPTION to $missing unless a gcloud describe succeeds
# (a dry run looks nothing up and assumes the resource is there).
require() {
  local what=$1
  shift
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
  else
    "$@" >/dev/null 2>&1 || missing+=("$what")
  fi
}

STEPS=6

# OWNER/REPO of the "origin" remote when it is on github.com (https or ssh form).
github_repo_from_origin() {
  local url
  url=$(git remote get-url origin 2>/dev/null) || return 0
  if [[ $url =~ github\.com[:/]([^/]+/[^/]+)$ ]]; then
    printf '%s\n' "${BASH_REMATCH[1]%.git}"
  fi
}

# Pool and provider IDs: 4-32 lowercase letters, digits and hyphens; "gcp-" is reserved.
validate_wif_id() {
  if [[ $1 =~ ^[a-z0-9-]{4,32}$ && $1 != gcp-* ]]; then
    return 0
  fi
  printf '%s: %q is not a workload identity pool or provider ID: 4-32 lowercase letters, digits and hyphens, not starting with gcp- (e.g. github)\n' "$2" "$1" >&2
  return 1
}

validate_github_repo() {
  [[ $1 =~ ^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$ ]] && return 0
  printf '%s: %q is not a GitHub repository: OWNER/REPO (e.g. my-org/my-service)\n' "$2" "$1" >&2
  return 1
}

# The branch ends up inside the provider's CEL condition: allow only plain branch names.
validate_branch() {
  [[ $1 =~ ^[A-Za-z0-9._/-]{1,200}$ ]] && return 0
  printf '%s: %q is not a branch name: letters, digits, ".", "_", "/" and "-" (e.g. main)\n' "$2" "$1" >&2
  return 1
}

# trim_id ID LENGTH: the first LENGTH characters of ID, without the trailing hyphens an ID may not
# end with.
trim_id() {
  local id=${1:0:$2}
  while [[ $id == *- ]]; do id=${id%-}; done
  printf '%s\n' "$id"
}

# --- Settings: flags, then environment variables, then defaults from the template's answers. ---
# Provider and deployer are per service, so several services in one project keep separate ones.
DEFAULT_PROVIDER_ID="gh-$(trim_id "$DEFAULT_SERVICE_NAME" 29)"
DEFAULT_DEPLOYER_ID="$(trim_id "$DEFAULT_SERVICE_NAME" 23)-deploy"
GITHUB_REPO=${GITHUB_REPOSITORY:-}
DEPLOY_BRANCH=${DEPLOY_BRANCH:-main}
WIF_POOL_ID=${WIF_POOL_ID:-github}
WIF_PROVIDER_ID=${WIF_PROVIDER_ID:-$DEFAULT_PROVIDER_ID}
DEPLOYER_ID=${DEPLOYER_SERVICE_ACCOUNT_ID:-$DEFAULT_DEPLOYER_ID}

# set_option NAME VALUE: one option of the command line (see parse_options in scripts/common.sh).
set_option() {
  case $1 in
    --github-repo) GITHUB_REPO=$2 ;;
    --branch) DEPLOY_BRANCH=$2 ;;
    --project) PROJECT_ID=$2 ;;
    --pool) WIF_POOL_ID=$2 ;;
    --provider) WIF_PROVIDER_ID=$2 ;;
    --deployer) DEPLOYER_ID=$2 ;;
    *) return 1 ;;
  esac
}
parse_options "$@"

[[ -n $GITHUB_REPO ]] || GITHUB_REPO=$(github_repo_from_origin)

# --- Validate everything before any command runs (same rules as deploy.sh). ---
invalid=0
validate_github_repo "$GITHUB_REPO" 'GITHUB_REPOSITORY (--github-repo)' || invalid=1
validate_branch "$DEPLOY_BRANCH" 'DEPLOY_BRANCH (--branch)' || invalid=1
validate_project_id "$PROJECT_ID" 'PROJECT_ID (--project)' || invalid=1
validate_wif_id "$WIF_POOL_ID" 'WIF_POOL_ID (--pool)' || invalid=1
validate_wif_id "$WIF_PROVIDER_ID" 'WIF_PROVIDER_ID (--provider)' || invalid=1
validate_service_account_id "$DEPLOYER_ID" 'DEPLOYER_SERVICE_ACCOUNT_ID (--deployer)' || invalid=1
validate_region "$REGION" REGION || invalid=1
validate_service_name "$SERVICE_NAME" SERVICE_NAME || invalid=1
validate_service_account_id "$SERVICE_ACCOUNT_ID" SERVICE_ACCOUNT_ID || invalid=1
validate_secret_name "$SECRET_NAME" SECRET_NAME || invalid=1
validate_artifact_registry_repo "$ARTIFACT_REGISTRY_REPO" ARTIFACT_REGISTRY_REPO || invalid=1
secrets=("$SECRET_NAME")
if [[ $CLIENT_AUTH == api-key ]]; then
  validate_secret_name "$CLIENT_KEYS_SECRET_NAME" CLIENT_KEYS_SECRET_NAME || invalid=1
  secrets+=("$CLIENT_KEYS_SECRET_NAME")
fi
((invalid == 0)) || die "nothing was run; fix the values above (flags or environment variables)."

PROJECT=(--project="$PROJECT_ID")
POOL=(--workload-identity-pool="$WIF_POOL_ID" --location=global)
DEPLOYER="$DEPLOYER_ID@$PROJECT_ID.iam.gserviceaccount.com"
RUNTIME="$SERVICE_ACCOUNT_ID@$PROJECT_ID.iam.gserviceaccount.com"
DEPLOYER_MEMBER="serviceAccount:$DEPLOYER"
[[ $DRY_RUN == yes ]] && echo "Dry run: printing the commands a fresh project needs; none is run."

step "Preflight: gcloud, active account, project number"
require_gcloud
active_account
number_of_project=(gcloud projects describe "$PROJECT_ID" --format='value(projectNumber)')
if [[ $DRY_RUN == yes ]]; then
  run "${number_of_project[@]}"
  PROJECT_NUMBER=PROJECT_NUMBER
else
  PROJECT_NUMBER=$("${number_of_project[@]}") ||
    die "project $PROJECT_ID is not visible to $ACCOUNT. Check PROJECT_ID (--project)."
  echo "Account: $ACCOUNT; project $PROJECT_ID is number $PROJECT_NUMBER."
fi
POOL_NAME="projects/$PROJECT_NUMBER/locations/global/workloadIdentityPools/$WIF_POOL_ID"
PROVIDER_NAME="$POOL_NAME/providers/$WIF_PROVIDER_ID"

step "Check what ./deploy.sh created: runtime account, image repository, secrets"
# The deployer is given roles on these resources only, so they must exist; a dry run assumes so.
missing=()
require "runtime service account $RUNTIME" gcloud iam service-accounts describe "$RUNTIME" "${PROJECT[@]}"
require "Artifact Registry repository $ARTIFACT_REGISTRY_REPO" gcloud artifacts repositories describe \
  "$ARTIFACT_REGISTRY_REPO" --location="$REGION" "${PROJECT[@]}"
for secret in "${secrets[@]}"; do
  require "secret $secret" gcloud secrets describe "$secret" "${PROJECT[@]}"
done
[[ -z ${missing[*]-} ]] || die "missing: ${missing[*]}." \
  "Run ./deploy.sh once (with the same settings), then run this script again."

step "Enable the APIs that exchange GitHub's token for Google credentials"
run gcloud services enable iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com \
  "${PROJECT[@]}"

step "Workload identity pool $WIF_POOL_ID and provider $WIF_PROVIDER_ID for $GITHUB_REPO"
if exists gcloud iam workload-identity-pools describe "$WIF_POOL_ID" --location=global "${PROJECT[@]}"; then
  echo "Pool exists."
else
  run gcloud iam workload-identity-pools create "$WIF_POOL_ID" --location=global "${PROJECT[@]}" \
    --display-name="GitHub Actions"
fi
# Only tokens from this repository's deploy branch are accepted; the IAM binding below narrows
# impersonation to the same repository again, so neither alone can let another repository in.
condition="assertion.repository == '$GITHUB_REPO' && assertion.ref == 'refs/heads/$DEPLOY_BRANCH'"
if exists gcloud iam workload-identity-pools providers describe "$WIF_PROVIDER_ID" "${POOL[@]}" \
  "${PROJECT[@]}"; then
  echo "Provider exists (its condition is kept; change it with: gcloud iam workload-identity-pools providers update-oidc $WIF_PROVIDER_ID --workload-identity-pool=$WIF_POOL_ID --location=global --attribute-condition=...)."
else
  run gcloud iam workload-identity-pools providers create-oidc "$WIF_PROVIDER_ID" "${POOL[@]}" \
    "${PROJECT[@]}" --display-name="GitHub deploys" --issuer-uri="$GITHUB_ISSUER" \
    --attribute-mapping='google.subject=assertion.sub,attribute.repository=assertion.repository,attribute.ref=assertion.ref' \
    --attribute-condition="$condition"
fi

step "Deployer service account $DEPLOYER and its roles"
if exists gcloud iam service-accounts describe "$DEPLOYER" "${PROJECT[@]}"; then
  echo "Service account exists."
else
  run gcloud iam service-accounts create "$DEPLOYER_ID" "${PROJECT[@]}" \
    --display-name="GitHub Actions deployer: $SERVICE_NAME"
fi
# GitHub workflows of this repository (and no other) may act as the deployer.
run gcloud iam service-accounts add-iam-policy-binding "$DEPLOYER" "${PROJECT[@]}" \
  --role=roles/iam.workloadIdentityUser \
  --member="principalSet://iam.googleapis.com/$POOL_NAME/attribute.repository/$GITHUB_REPO" \
  --condition=None --format=none
# Project-wide only where deploy.sh needs it: run.admin deploys and sets the service's invoker
# policy (--[no-]allow-unauthenticated); serviceUsageAdmin for its `gcloud services enable`.
for role in roles/run.admin roles/serviceusage.serviceUsageAdmin; do
  run gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="$DEPLOYER_MEMBER" \
    --role="$role" --condition=None --format=none
done
# Everything else on the one resource it is for.
run gcloud artifacts repositories add-iam-policy-binding "$ARTIFACT_REGISTRY_REPO" \
  --location="$REGION" "${PROJECT[@]}" --member="$DEPLOYER_MEMBER" \
  --role=roles/artifactregistry.writer --format=none
# To deploy a service that runs as the runtime account, the deployer must be able to act as it.
run gcloud iam service-accounts add-iam-policy-binding "$RUNTIME" "${PROJECT[@]}" \
  --member="$DEPLOYER_MEMBER" --role=roles/iam.serviceAccountUser --condition=None --format=none
# deploy.sh (re)grants the runtime account access on each secret, which takes secretmanager.admin
# on that secret. It adds little: whoever deploys code that reads a secret can read the secret.
for secret in "${secrets[@]}"; do
  run gcloud secrets add-iam-policy-binding "$secret" "${PROJECT[@]}" \
    --member="$DEPLOYER_MEMBER" --role=roles/secretmanager.admin --condition=None --format=none
done

cat <<EOF

Done. Store these as repository variables of $GITHUB_REPO (Settings > Secrets and variables >
Actions > Variables; they are identifiers, not secrets), or with the GitHub CLI:
  gh variable set GCP_WORKLOAD_IDENTITY_PROVIDER --repo $GITHUB_REPO --body $PROVIDER_NAME
  gh variable set GCP_DEPLOYER_SERVICE_ACCOUNT --repo $GITHUB_REPO --body $DEPLOYER
Pushes to $DEPLOY_BRANCH then deploy with ./deploy.sh (.github/workflows/deploy.yml).
EOF
{%- endraw %}

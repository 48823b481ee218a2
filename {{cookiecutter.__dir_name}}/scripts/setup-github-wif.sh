#!/usr/bin/env bash
{#- Everything below is bash that Jinja must leave alone; the template's answers are rendered in
    scripts/common.sh. -#}
{% raw %}
# One-time setup that lets GitHub Actions (.github/workflows/deploy.yml) deploy this service
# without a service account key: a Workload Identity Federation pool and a provider that trust only
# this repository (by name and by GitHub's numeric ids) on its deploy branch, and a deployer
# service account with the smallest set of roles ./deploy.sh needs on a rerun (README, "CI/CD",
# lists each role with the command that needs it). Safe to run again: everything is looked up
# before it is created. Run ./deploy.sh once first: the deployer gets roles on what it created.
set -euo pipefail

# Run from the repo root, where git knows the remote and deploy.sh's settings and validators live.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# The template's answers and the settings resolved from them, with the same environment variables
# as deploy.sh; the helpers both scripts share; lookups that tell missing from refused.
# shellcheck source=scripts/common.sh
source scripts/common.sh
# shellcheck source=scripts/gcloud_checks.sh
source scripts/gcloud_checks.sh
# The Redis settings and names deploy.sh uses (--memorystore, --redis-url-secret).
# shellcheck source=scripts/memorystore.sh
source scripts/memorystore.sh

GITHUB_ISSUER=https://token.actions.githubusercontent.com

usage() {
  cat <<EOF
Usage: scripts/setup-github-wif.sh [options]

Creates what GitHub Actions needs to deploy with Workload Identity Federation (no JSON key):
a workload identity pool, an OIDC provider that accepts only this repository's deploy branch,
and a deployer service account with the roles ./deploy.sh uses. Prints the repository variables
to store in GitHub. Safe to run again. Run ./deploy.sh once before (it creates the service, the
runtime account, the secrets and the image repository the deployer is given access to).

Options (each also read from the environment variable in brackets; a flag wins):
  --github-repo OWNER/REPO  the GitHub repository allowed to deploy
                            [GITHUB_REPOSITORY, default: from the git remote "origin"]
  --github-repo-id ID       its numeric id     [GITHUB_REPOSITORY_ID, default: from gh api]
  --github-owner-id ID      its owner's id     [GITHUB_REPOSITORY_OWNER_ID, default: from gh api]
  --branch BRANCH           the only branch whose workflows may deploy [DEPLOY_BRANCH, default: main]
  --project ID              Google Cloud project       [PROJECT_ID, default: $DEFAULT_PROJECT_ID]
  --pool ID                 workload identity pool     [WIF_POOL_ID, default: github]
  --provider ID             its provider for this repo [WIF_PROVIDER_ID, default: $DEFAULT_PROVIDER_ID]
  --deployer ID             deployer service account   [DEPLOYER_SERVICE_ACCOUNT_ID, default: $DEFAULT_DEPLOYER_ID]
  --memorystore NAME        CI deploys with this Memorystore instance (as ./deploy.sh --memorystore)
                            [MEMORYSTORE_INSTANCE]
  --redis-url-secret NAME   CI deploys with your own Redis URL in this secret [REDIS_URL_SECRET]
  --dry-run                 print every command, shell-quoted, and run none
  -h, --help                show this help

The ids survive renames and cannot be re-created, so a deleted and re-created repository or
organization of the same name cannot deploy. Get them with:
  gh api repos/OWNER/REPO --jq '.id, .owner.id'
The names deploy.sh uses come from the same environment variables as there: REGION,
SERVICE_NAME, SERVICE_ACCOUNT_ID, SECRET_NAME, ARTIFACT_REGISTRY_REPO, CLIENT_KEYS_SECRET_NAME.
EOF
}

STEPS=6

# OWNER/REPO of the "origin" remote; stops when there is none or it is not on github.com.
github_repo_from_origin() {
  local url
  url=$(git remote get-url origin 2>/dev/null) ||
    die "no git remote \"origin\" here to read the GitHub repository from." \
      "Pass it: scripts/setup-github-wif.sh --github-repo OWNER/REPO (or set GITHUB_REPOSITORY)."
  [[ $url =~ github\.com[:/]([^/]+/[^/]+)$ ]] ||
    die "the git remote \"origin\" ($url) is not a github.com repository." \
      "Pass the one that deploys: scripts/setup-github-wif.sh --github-repo OWNER/REPO."
  printf '%s\n' "${BASH_REMATCH[1]%.git}"
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

# GitHub's ids end up inside the provider's CEL condition: digits only.
validate_github_id() {
  [[ $1 =~ ^[1-9][0-9]{0,19}$ ]] && return 0
  printf "%s: %q is not a GitHub id: digits only; get it with gh api repos/OWNER/REPO --jq '.id, .owner.id'\n" "$2" "$1" >&2
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
GITHUB_REPO_ID=${GITHUB_REPOSITORY_ID:-}
GITHUB_OWNER_ID=${GITHUB_REPOSITORY_OWNER_ID:-}
DEPLOY_BRANCH=${DEPLOY_BRANCH:-main}
WIF_POOL_ID=${WIF_POOL_ID:-github}
WIF_PROVIDER_ID=${WIF_PROVIDER_ID:-$DEFAULT_PROVIDER_ID}
DEPLOYER_ID=${DEPLOYER_SERVICE_ACCOUNT_ID:-$DEFAULT_DEPLOYER_ID}

# set_option NAME VALUE: one option of the command line (see parse_options in scripts/common.sh).
set_option() {
  case $1 in
    --github-repo) GITHUB_REPO=$2 ;;
    --github-repo-id) GITHUB_REPO_ID=$2 ;;
    --github-owner-id) GITHUB_OWNER_ID=$2 ;;
    --branch) DEPLOY_BRANCH=$2 ;;
    --project) PROJECT_ID=$2 ;;
    --pool) WIF_POOL_ID=$2 ;;
    --provider) WIF_PROVIDER_ID=$2 ;;
    --deployer) DEPLOYER_ID=$2 ;;
    --memorystore) MEMORYSTORE_INSTANCE=$2 ;;
    --redis-url-secret) REDIS_URL_SECRET=$2 ;;
    *) return 1 ;;
  esac
}
parse_options "$@"

[[ -n $GITHUB_REPO ]] || GITHUB_REPO=$(github_repo_from_origin)

# --- Validate everything before any command runs (same rules as deploy.sh). ---
invalid=0
validate_github_repo "$GITHUB_REPO" 'GITHUB_REPOSITORY (--github-repo)' || invalid=1
# The ids from GitHub's API when the GitHub CLI is there and signed in (read-only).
if [[ ( -z $GITHUB_REPO_ID || -z $GITHUB_OWNER_ID ) && $invalid == 0 ]] && command -v gh >/dev/null 2>&1; then
  read -r gh_repo_id gh_owner_id < <(gh api "repos/$GITHUB_REPO" --jq '"\(.id) \(.owner.id)"' 2>/dev/null || true) || true
  GITHUB_REPO_ID=${GITHUB_REPO_ID:-${gh_repo_id:-}}
  GITHUB_OWNER_ID=${GITHUB_OWNER_ID:-${gh_owner_id:-}}
fi
if [[ -z $GITHUB_REPO_ID || -z $GITHUB_OWNER_ID ]]; then
  printf '%s\n' "GitHub's numeric ids of $GITHUB_REPO and its owner are needed, so that only this repository (not a re-created one of the same name) can deploy." \
    "Pass --github-repo-id ID --github-owner-id ID (or GITHUB_REPOSITORY_ID / GITHUB_REPOSITORY_OWNER_ID); get them with:" \
    "  gh api repos/$GITHUB_REPO --jq '.id, .owner.id'" \
    "  or: curl -s https://api.github.com/repos/$GITHUB_REPO   (\"id\" and \"owner\": {\"id\"})" >&2
  invalid=1
else
  validate_github_id "$GITHUB_REPO_ID" 'GITHUB_REPOSITORY_ID (--github-repo-id)' || invalid=1
  validate_github_id "$GITHUB_OWNER_ID" 'GITHUB_REPOSITORY_OWNER_ID (--github-owner-id)' || invalid=1
fi
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
# Redis secrets: the deploy reads (to compare) and updates the Memorystore ones itself.
redis_secrets=()
MEMORYSTORE_INSTANCE=${MEMORYSTORE_INSTANCE:-}
if [[ -n $MEMORYSTORE_INSTANCE || -n ${REDIS_URL_SECRET:-} ]]; then
  _redis_settings
  validate_secret_name "$REDIS_URL_SECRET" 'REDIS_URL_SECRET (--redis-url-secret)' || invalid=1
  if [[ -n $MEMORYSTORE_INSTANCE ]]; then
    validate_memorystore_instance "$MEMORYSTORE_INSTANCE" 'MEMORYSTORE_INSTANCE (--memorystore)' ||
      invalid=1
    redis_secrets=("$REDIS_URL_SECRET" "$REDIS_CA_SECRET")
  else
    secrets+=("$REDIS_URL_SECRET")
  fi
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

step "Check what ./deploy.sh created: service, runtime account, image repository, secrets"
# The deployer is given roles on these resources only, so they must exist; a dry run assumes so.
# A lookup that is refused stops here (gcloud_lookup): only a missing resource means "run deploy.sh".
missing=()
# require DESCRIPTION COMMAND...: add DESCRIPTION to $missing when the lookup finds nothing.
require() {
  local what=$1 found
  shift
  gcloud_lookup found "$@" || [[ $DRY_RUN == yes ]] || missing+=("$what")
}
require "Cloud Run service $SERVICE_NAME" gcloud run services describe "$SERVICE_NAME" \
  --region="$REGION" "${PROJECT[@]}" --format='value(status.url)'
require "runtime service account $RUNTIME" gcloud iam service-accounts describe "$RUNTIME" \
  "${PROJECT[@]}" --format='value(email)'
require "Artifact Registry repository $ARTIFACT_REGISTRY_REPO" gcloud artifacts repositories describe \
  "$ARTIFACT_REGISTRY_REPO" --location="$REGION" "${PROJECT[@]}" --format='value(name)'
for secret in "${secrets[@]}" ${redis_secrets[@]+"${redis_secrets[@]}"}; do
  require "secret $secret" gcloud secrets describe "$secret" "${PROJECT[@]}" --format='value(name)'
done
if [[ -n $MEMORYSTORE_INSTANCE ]]; then
  require "Memorystore instance $MEMORYSTORE_INSTANCE (./deploy.sh --memorystore $MEMORYSTORE_INSTANCE)" \
    gcloud redis instances describe "$MEMORYSTORE_INSTANCE" --region="$REGION" "${PROJECT[@]}" \
    --format='value(name)'
fi
[[ -z ${missing[*]-} ]] || die "missing: ${missing[*]}." \
  "Run ./deploy.sh once (with the same settings), then run this script again."

step "Enable the APIs that exchange GitHub's token for Google credentials"
run gcloud services enable iam.googleapis.com iamcredentials.googleapis.com sts.googleapis.com \
  "${PROJECT[@]}"

step "Workload identity pool $WIF_POOL_ID and provider $WIF_PROVIDER_ID for $GITHUB_REPO"
if gcloud_lookup found gcloud iam workload-identity-pools describe "$WIF_POOL_ID" --location=global \
  "${PROJECT[@]}" --format='value(name)'; then
  echo "Pool exists."
else
  run gcloud iam workload-identity-pools create "$WIF_POOL_ID" --location=global "${PROJECT[@]}" \
    --display-name="GitHub Actions"
fi
# Only tokens from this repository's deploy branch are accepted, by name and by GitHub's ids
# (which a re-created repository or organization of the same name does not get back); the IAM
# binding below narrows impersonation to the same repository again.
condition="assertion.repository == '$GITHUB_REPO' && assertion.repository_id == '$GITHUB_REPO_ID' && assertion.repository_owner_id == '$GITHUB_OWNER_ID' && assertion.ref == 'refs/heads/$DEPLOY_BRANCH'"
mapping='google.subject=assertion.sub,attribute.repository=assertion.repository,attribute.repository_id=assertion.repository_id,attribute.repository_owner_id=assertion.repository_owner_id,attribute.ref=assertion.ref'
if gcloud_lookup found gcloud iam workload-identity-pools providers describe "$WIF_PROVIDER_ID" \
  "${POOL[@]}" "${PROJECT[@]}" --format='value(attributeCondition)'; then
  if [[ $found == "$condition" ]]; then
    echo "Provider exists with this condition."
  else
    echo "Provider exists with another condition; setting this one (repository, its ids, branch)."
    run gcloud iam workload-identity-pools providers update-oidc "$WIF_PROVIDER_ID" "${POOL[@]}" \
      "${PROJECT[@]}" --attribute-mapping="$mapping" --attribute-condition="$condition"
  fi
else
  run gcloud iam workload-identity-pools providers create-oidc "$WIF_PROVIDER_ID" "${POOL[@]}" \
    "${PROJECT[@]}" --display-name="GitHub deploys" --issuer-uri="$GITHUB_ISSUER" \
    --attribute-mapping="$mapping" --attribute-condition="$condition"
fi

step "Deployer service account $DEPLOYER and its roles"
if gcloud_lookup found gcloud iam service-accounts describe "$DEPLOYER" "${PROJECT[@]}" \
  --format='value(email)'; then
  echo "Service account exists."
else
  run gcloud iam service-accounts create "$DEPLOYER_ID" "${PROJECT[@]}" \
    --display-name="GitHub Actions deployer: $SERVICE_NAME"
fi
# Each binding is retried while IAM catches up with a deployer created seconds ago (retry_while_new_account).
# GitHub workflows of this repository (and no other) may act as the deployer.
retry_while_new_account gcloud iam service-accounts add-iam-policy-binding "$DEPLOYER" "${PROJECT[@]}" \
  --role=roles/iam.workloadIdentityUser \
  --member="principalSet://iam.googleapis.com/$POOL_NAME/attribute.repository/$GITHUB_REPO" \
  --condition=None --format=none
# Project-wide, read-mostly: run.developer deploys revisions and moves traffic (gcloud run deploy,
# services update-traffic, services describe) but cannot change who may invoke the service;
# serviceUsageViewer lets deploy.sh see that its APIs are on and skip `services enable`.
for role in roles/run.developer roles/serviceusage.serviceUsageViewer; do
  retry_while_new_account gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="$DEPLOYER_MEMBER" \
    --role="$role" --condition=None --format=none
done
# Everything else on the one resource it is for: push images to the one repository ...
retry_while_new_account gcloud artifacts repositories add-iam-policy-binding "$ARTIFACT_REGISTRY_REPO" \
  --location="$REGION" "${PROJECT[@]}" --member="$DEPLOYER_MEMBER" \
  --role=roles/artifactregistry.writer --format=none
# ... deploy a service that runs as the runtime account (actAs on that account only) ...
retry_while_new_account gcloud iam service-accounts add-iam-policy-binding "$RUNTIME" "${PROJECT[@]}" \
  --member="$DEPLOYER_MEMBER" --role=roles/iam.serviceAccountUser --condition=None --format=none
# ... and see the secrets and their policies (describe, versions describe, get-iam-policy), never
# their values. The runtime account's access is bound here, once, by someone who may change IAM,
# so deploy.sh in CI finds the binding and changes nothing.
for secret in "${secrets[@]}"; do
  retry_while_new_account gcloud secrets add-iam-policy-binding "$secret" "${PROJECT[@]}" \
    --member="$DEPLOYER_MEMBER" --role=roles/secretmanager.viewer --condition=None --format=none
  grant_on_secret "$secret" "serviceAccount:$RUNTIME" roles/secretmanager.secretAccessor
done
if [[ $CLIENT_AUTH == iam ]]; then
  # deploy.sh's smoke test calls the private candidate revision with an identity token minted for
  # the deployer itself (gcloud auth print-identity-token --impersonate-service-account=DEPLOYER
  # --audiences=TAG_URL), which Cloud Run accepts from an invoker of this service only.
  retry_while_new_account gcloud iam service-accounts add-iam-policy-binding "$DEPLOYER" "${PROJECT[@]}" \
    --member="$DEPLOYER_MEMBER" --role=roles/iam.serviceAccountOpenIdTokenCreator \
    --condition=None --format=none
  retry_while_new_account gcloud run services add-iam-policy-binding "$SERVICE_NAME" --region="$REGION" \
    "${PROJECT[@]}" --member="$DEPLOYER_MEMBER" --role=roles/run.invoker --format=none
fi

if [[ -n $MEMORYSTORE_INSTANCE ]]; then
  # deploy.sh --memorystore reads the instance (host, port, CA), the subnet and the AUTH string,
  # compares them with the two secrets and adds a version only when one changed. Among the
  # predefined roles only roles/redis.admin may read the AUTH string: a custom role holds just that.
  auth_role=redisAuthStringReader
  if gcloud_lookup found gcloud iam roles describe "$auth_role" "${PROJECT[@]}" --format='value(name)'; then
    echo "Custom role $auth_role exists."
  else
    run gcloud iam roles create "$auth_role" "${PROJECT[@]}" --title="Read Memorystore AUTH strings" \
      --permissions=redis.instances.getAuthString --stage=GA
  fi
  for role in roles/redis.viewer roles/compute.networkViewer "projects/$PROJECT_ID/roles/$auth_role"; do
    retry_while_new_account gcloud projects add-iam-policy-binding "$PROJECT_ID" --member="$DEPLOYER_MEMBER" \
      --role="$role" --condition=None --format=none
  done
  for secret in "${redis_secrets[@]}"; do
    for role in roles/secretmanager.viewer roles/secretmanager.secretAccessor \
      roles/secretmanager.secretVersionAdder; do
      retry_while_new_account gcloud secrets add-iam-policy-binding "$secret" "${PROJECT[@]}" \
        --member="$DEPLOYER_MEMBER" --role="$role" --condition=None --format=none
    done
    grant_on_secret "$secret" "serviceAccount:$RUNTIME" roles/secretmanager.secretAccessor
  done
fi

cat <<EOF

Done. Store these as repository variables of $GITHUB_REPO (Settings > Secrets and variables >
Actions > Variables; they are identifiers, not secrets), or with the GitHub CLI:
  gh variable set GCP_WORKLOAD_IDENTITY_PROVIDER --repo $GITHUB_REPO --body $PROVIDER_NAME
  gh variable set GCP_DEPLOYER_SERVICE_ACCOUNT --repo $GITHUB_REPO --body $DEPLOYER
EOF
# deploy.yml passes these to ./deploy.sh, as --memorystore and --redis-url-secret would.
if [[ -n $MEMORYSTORE_INSTANCE ]]; then
  echo "  gh variable set MEMORYSTORE_INSTANCE --repo $GITHUB_REPO --body $MEMORYSTORE_INSTANCE"
fi
if [[ -n ${REDIS_URL_SECRET:-} ]]; then
  echo "  gh variable set REDIS_URL_SECRET --repo $GITHUB_REPO --body $REDIS_URL_SECRET"
fi
echo "Pushes to $DEPLOY_BRANCH then deploy with ./deploy.sh (.github/workflows/deploy.yml)."
{%- endraw %}

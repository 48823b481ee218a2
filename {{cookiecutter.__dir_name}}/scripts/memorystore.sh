# shellcheck shell=bash
{#- Everything below is bash that Jinja must leave alone. -#}
{% raw %}
# One Redis for every instance of the service, so rate limits and token budgets hold service-wide
# (README). deploy.sh sources this file after scripts/common.sh and,
# when --memorystore NAME or --redis-url-secret NAME is given, calls redis_preflight before
# anything changes and redis_ensure once the runtime account exists, before the deploy.
# Inputs (shell variables): MEMORYSTORE_INSTANCE, REDIS_URL_SECRET, VPC_NETWORK, VPC_SUBNET and
# deploy.sh's PROJECT_ID, REGION, SERVICE_NAME, RUNTIME_SA_EMAIL.
# Outputs: entries appended to deploy.sh's SECRET_MAPPINGS (--set-secrets), DEPLOY_ENV
# (--set-env-vars) and DEPLOY_FLAGS (gcloud run deploy flags).
# - --memorystore NAME: describe-or-create a Memorystore for Redis instance (basic tier, 1 GB, AUTH
#   and in-transit encryption on) on VPC_NETWORK, store rediss://:AUTH@HOST:PORT in the secret
#   REDIS_URL_SECRET (default SERVICE_NAME-redis-url) and the instance's server CA in
#   SERVICE_NAME-redis-ca, mounted as a file; the service reaches the instance over Direct VPC
#   egress through VPC_SUBNET.
# - --redis-url-secret NAME alone: a Redis you run yourself; the secret must hold its URL.
# Secret values go to gcloud on stdin only, never on a command line or the screen; a rerun creates
# nothing and adds a secret version only when the value changed.

# shellcheck source=scripts/gcloud_checks.sh
source scripts/gcloud_checks.sh

# Where the service finds Memorystore's server CA: each mounted secret shadows its whole
# directory, so it gets one of its own.
REDIS_CA_PATH=/secrets/redis-ca/ca.pem
SECRET_ACCESSOR_ROLE=roles/secretmanager.secretAccessor
# APIs the preflight found disabled; redis_ensure enables them first.
REDIS_APIS=()
# The steps redis_ensure adds to deploy.sh's count.
# shellcheck disable=SC2034  # read by deploy.sh
REDIS_STEPS=1

# Memorystore instance IDs: 1-40 lowercase letters, digits and hyphens, starting with a letter,
# ending with a letter or digit [CreateInstanceRequest.instance_id].
validate_memorystore_instance() {
  _matches "$1" '^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$' && return 0
  _invalid "$2" "$1" "is not a Memorystore instance ID: 1-40 lowercase letters, digits and \
hyphens, starting with a letter and not ending with a hyphen (e.g. my-service-redis)"
}

# VPC networks and subnets: Compute Engine names (RFC 1035, at most 63 characters).
validate_vpc_name() {
  _matches "$1" '^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$' && return 0
  _invalid "$2" "$1" "is not a VPC network or subnet name: lowercase letters, digits and hyphens, \
starting with a letter, at most 63 characters (e.g. default)"
}

# Settings derived from the inputs; both entry points start here.
_redis_settings() {
  REDIS_NETWORK=${VPC_NETWORK:-default}
  REDIS_SUBNET=${VPC_SUBNET:-default}
  REDIS_WHERE=(--region="$REGION" --project="$PROJECT_ID")
  if [[ -n ${MEMORYSTORE_INSTANCE:-} ]]; then
    REDIS_URL_SECRET=${REDIS_URL_SECRET:-$SERVICE_NAME-redis-url}
    REDIS_CA_SECRET=$SERVICE_NAME-redis-ca
  fi
}

# redis_preflight: validate the Redis settings and look (read-only) at what a deploy will use.
# Stops with what to do when the deploy could not succeed; changes nothing.
redis_preflight() {
  _redis_settings
  local invalid=0 found status=0 auth tls prefix
  if [[ -n ${MEMORYSTORE_INSTANCE:-} ]]; then
    validate_memorystore_instance "$MEMORYSTORE_INSTANCE" 'MEMORYSTORE_INSTANCE (--memorystore)' ||
      invalid=1
    validate_vpc_name "$REDIS_NETWORK" 'VPC_NETWORK (--network)' || invalid=1
    validate_vpc_name "$REDIS_SUBNET" 'VPC_SUBNET (--subnet)' || invalid=1
  fi
  validate_secret_name "${REDIS_URL_SECRET:-}" 'REDIS_URL_SECRET (--redis-url-secret)' || invalid=1
  ((invalid == 0)) || die "nothing was changed; fix the Redis settings above (flags or environment variables)."

  if [[ -z ${MEMORYSTORE_INSTANCE:-} ]]; then
    gcloud_lookup found gcloud secrets versions describe latest --secret="$REDIS_URL_SECRET" \
      --project="$PROJECT_ID" --format='value(name)' || status=$?
    ((status != 2)) || die "the Secret Manager API is not enabled in $PROJECT_ID, so secret $REDIS_URL_SECRET cannot exist yet." \
      "Run: gcloud services enable secretmanager.googleapis.com --project=$PROJECT_ID"
    ((status == 0)) || [[ $DRY_RUN == yes ]] || die \
      "secret $REDIS_URL_SECRET (--redis-url-secret) does not exist or has no version in $PROJECT_ID." \
      "Store your Redis URL (rediss://:PASSWORD@HOST:PORT) in it, on stdin, then run deploy.sh again:" \
      "  read -rs REDIS_URL && printf '%s' \"\$REDIS_URL\" | gcloud secrets create $REDIS_URL_SECRET --project=$PROJECT_ID --replication-policy=automatic --data-file=-" \
      "Or let deploy.sh create a Memorystore instance: --memorystore NAME."
    return 0
  fi

  gcloud_lookup found gcloud redis instances describe "$MEMORYSTORE_INSTANCE" "${REDIS_WHERE[@]}" \
    --format='value(authEnabled,transitEncryptionMode)' || status=$?
  case $status in
    0)
      read -r auth tls <<<"$found"
      [[ $auth == True ]] || die "Memorystore instance $MEMORYSTORE_INSTANCE has AUTH off, so anyone on the network could use it." \
        "Turn it on (clients then need the AUTH string, which deploy.sh stores for the service):" \
        "  gcloud redis instances update $MEMORYSTORE_INSTANCE --region=$REGION --project=$PROJECT_ID --enable-auth"
      [[ $tls == SERVER_AUTHENTICATION ]] || die "Memorystore instance $MEMORYSTORE_INSTANCE has in-transit encryption off, and it cannot be turned on for an existing instance." \
        "Pass another name (--memorystore NEW-NAME) and deploy.sh creates one with it on."
      echo "Memorystore instance $MEMORYSTORE_INSTANCE exists (AUTH and in-transit encryption on)." ;;
    1) echo "Memorystore instance $MEMORYSTORE_INSTANCE will be created (basic tier, 1 GB; it takes several minutes)." ;;
    2) REDIS_APIS+=(redis.googleapis.com)
      echo "The Memorystore for Redis API will be enabled and instance $MEMORYSTORE_INSTANCE created." ;;
  esac

  # Direct VPC egress needs a subnet of /26 or larger in the service's region.
  status=0
  gcloud_lookup found gcloud compute networks subnets describe "$REDIS_SUBNET" "${REDIS_WHERE[@]}" \
    --format='value(ipCidrRange)' || status=$?
  case $status in
    0)
      prefix=${found##*/}
      if [[ ! $prefix =~ ^[0-9]+$ ]] || ((prefix > 26)); then
        die "subnet $REDIS_SUBNET ($found) is smaller than Direct VPC egress needs (/26 or larger)." \
          "Pass a larger one with --subnet NAME."
      fi ;;
    1)
      [[ $DRY_RUN == yes ]] || die "subnet $REDIS_SUBNET (--subnet) does not exist in $REGION of $PROJECT_ID." \
        "Direct VPC egress needs one (/26 or larger) in network $REDIS_NETWORK, e.g.:" \
        "  gcloud compute networks subnets create $REDIS_SUBNET --network=$REDIS_NETWORK --region=$REGION --project=$PROJECT_ID --range=10.8.0.0/26" ;;
    2) die "the Compute Engine API is not enabled in $PROJECT_ID, so network $REDIS_NETWORK cannot exist yet." \
      "Enable it (this also creates the default network), then run deploy.sh again:" \
      "  gcloud services enable compute.googleapis.com --project=$PROJECT_ID" ;;
  esac
}

# _redis_read VAR COMMAND...: VAR=$(COMMAND) or stop; in dry-run mode print COMMAND, VAR empty.
_redis_read() {
  local var=$1 output
  shift
  printf -v "$var" '%s' ''
  if [[ $DRY_RUN == yes ]]; then
    run "$@"
    return
  fi
  output=$("$@") || die "$(printf '%q ' "$@")failed (its message is above)."
  printf -v "$var" '%s' "$output"
}

# _redis_percent_encode TEXT: TEXT with everything but URL-unreserved bytes as %XX.
_redis_percent_encode() {
  local LC_ALL=C text=$1 encoded='' char
  while [[ -n $text ]]; do
    char=${text:0:1}
    text=${text:1}
    case $char in
      [A-Za-z0-9._~-]) encoded+=$char ;;
      *) printf -v char '%%%02X' "'$char"; encoded+=$char ;;
    esac
  done
  printf '%s' "$encoded"
}

# _redis_store_secret NAME VALUE WHAT: make secret NAME's latest version VALUE. The current value
# is read into this shell only and compared there; nothing is printed, and a new version is added
# only when the value changed.
_redis_store_secret() {
  local name=$1 value=$2 what=$3 current status=0
  gcloud_lookup current gcloud secrets describe "$name" --project="$PROJECT_ID" --format='value(name)' ||
    status=$?
  if ((status == 1)); then
    echo "Creating secret $name ($what, on stdin)."
    run_with_stdin "$value" gcloud secrets create "$name" --project="$PROJECT_ID" \
      --replication-policy=automatic --data-file=-
    return
  fi
  ((status == 0)) || die "the Secret Manager API is not enabled in $PROJECT_ID." \
    "Run: gcloud services enable secretmanager.googleapis.com --project=$PROJECT_ID"
  status=0
  gcloud_lookup current gcloud secrets versions access latest --secret="$name" --project="$PROJECT_ID" ||
    status=$?
  # $(...) drops trailing newlines, so compare without them.
  if ((status == 0)) && [[ $current == "${value%$'\n'}" ]]; then
    echo "Secret $name ($what) is up to date."
    return
  fi
  echo "Secret $name ($what) changed: adding a version (on stdin)."
  run_with_stdin "$value" gcloud secrets versions add "$name" --project="$PROJECT_ID" --data-file=-
}

# redis_ensure: create what is missing, then add the secrets, variables and flags to the deploy.
redis_ensure() {
  _redis_settings
  [[ -n ${RUNTIME_SA_EMAIL:-} ]] || die "redis_ensure needs RUNTIME_SA_EMAIL (the runtime service account)."
  local member="serviceAccount:$RUNTIME_SA_EMAIL"
  if [[ -z ${MEMORYSTORE_INSTANCE:-} ]]; then
    step "Redis URL from secret $REDIS_URL_SECRET (a Redis you run)"
    grant_on_secret "$REDIS_URL_SECRET" "$member" "$SECRET_ACCESSOR_ROLE"
    SECRET_MAPPINGS+=("REDIS_URL=$REDIS_URL_SECRET:latest")
    return
  fi

  step "Memorystore for Redis $MEMORYSTORE_INSTANCE in $REGION, its secrets and their bindings"
  local where=("${REDIS_WHERE[@]}") info host port auth ca url secret status=0
  # ${a[@]+...}: an empty array under set -u on bash before 4.4.
  if [[ -n ${REDIS_APIS[*]-} ]]; then
    run gcloud services enable ${REDIS_APIS[@]+"${REDIS_APIS[@]}"} --project="$PROJECT_ID"
  fi
  gcloud_lookup info gcloud redis instances describe "$MEMORYSTORE_INSTANCE" "${where[@]}" \
    --format='value(host,port)' || status=$?
  if ((status == 0)); then
    echo "Instance exists."
  else
    echo "Creating it: basic tier, 1 GB, AUTH and in-transit encryption on (several minutes)."
    run gcloud redis instances create "$MEMORYSTORE_INSTANCE" "${where[@]}" --tier=basic --size=1 \
      --network="$REDIS_NETWORK" --enable-auth --transit-encryption-mode=server-authentication \
      --labels="app=$SERVICE_NAME,managed-by=deploy-sh"
    _redis_read info gcloud redis instances describe "$MEMORYSTORE_INSTANCE" "${where[@]}" \
      --format='value(host,port)'
  fi
  _redis_read auth gcloud redis instances get-auth-string "$MEMORYSTORE_INSTANCE" "${where[@]}" \
    --format='value(authString)'
  _redis_read ca gcloud redis instances describe "$MEMORYSTORE_INSTANCE" "${where[@]}" \
    --format='value(serverCaCerts[0].cert)'
  if [[ $DRY_RUN == no ]]; then
    read -r host port <<<"$info"
    [[ -n $host && -n $port ]] || die "Memorystore instance $MEMORYSTORE_INSTANCE has no host and port yet; run deploy.sh again once it is ready."
    [[ -n $auth ]] || die "Memorystore instance $MEMORYSTORE_INSTANCE has AUTH off; turn it on:" \
      "  gcloud redis instances update $MEMORYSTORE_INSTANCE --region=$REGION --project=$PROJECT_ID --enable-auth"
    [[ -n $ca ]] || die "Memorystore instance $MEMORYSTORE_INSTANCE has no server CA (in-transit encryption is off)."
    url="rediss://:$(_redis_percent_encode "$auth")@$host:$port"
  fi
  _redis_store_secret "$REDIS_URL_SECRET" "${url:-}" "the Redis URL with its AUTH string"
  _redis_store_secret "$REDIS_CA_SECRET" "${ca:+$ca$'\n'}" "the instance's server CA certificate"
  for secret in "$REDIS_URL_SECRET" "$REDIS_CA_SECRET"; do
    grant_on_secret "$secret" "$member" "$SECRET_ACCESSOR_ROLE"
  done

  SECRET_MAPPINGS+=("REDIS_URL=$REDIS_URL_SECRET:latest" "$REDIS_CA_PATH=$REDIS_CA_SECRET:latest")
  DEPLOY_ENV+=("REDIS_CA_FILE=$REDIS_CA_PATH")
  # Direct VPC egress: only private addresses (the instance) go through the VPC; OpenAI is
  # reached directly as before.
  DEPLOY_FLAGS+=(--network="$REDIS_NETWORK" --subnet="$REDIS_SUBNET" --vpc-egress=private-ranges-only)
}
{%- endraw %}

# shellcheck shell=bash
# The smoke test deploy.sh runs on a new revision before it gets traffic (sourced by
# scripts/deploy/rollout.sh). It calls the revision as a client would: /ready must answer 200 with
# the mode's credentials, and a /v1 route must refuse a call without them (client_auth=api-key:
# the app's key check; iam: Cloud Run's invoker check). Credentials reach curl on stdin, never in
# its arguments.

# http_status METHOD URL [HEADER]: the HTTP status of one request (000 when none came back), with
# short timeouts. HEADER (e.g. "Authorization: Bearer ...") is given to curl on stdin.
http_status() {
  local method=$1 url=$2 header=${3:-}
  local curl=(curl --silent --output /dev/null --write-out '%{http_code}' --connect-timeout 5
    --max-time 20 --request "$method")
  [[ $method == GET ]] || curl+=(--header 'Content-Type: application/json' --data '{}')
  [[ -z $header ]] || curl+=(--header @-)
  DRY_RUN=yes run "${curl[@]}" "$url" >&3
  [[ -z $header ]] || echo '  (stdin: the Authorization header, not shown)' >&3
  [[ $DRY_RUN == yes ]] || printf '%s\n' "$header" | "${curl[@]}" "$url" || true
}

# expect_status WANT DESCRIPTION METHOD URL [HEADER]: one check of the smoke test; WANT is an
# extended regular expression for the whole status, such as 200 or 40[13].
expect_status() {
  local want=$1 what=$2 status
  shift 2
  status=$(http_status "$@")
  [[ $DRY_RUN == no ]] || return 0
  if [[ $status =~ ^($want)$ ]]; then
    echo "  ok: $what ($1 ${2#"$SMOKE_BASE"} answered $status)"
  else
    echo "  FAILED: $what ($1 ${2#"$SMOKE_BASE"} answered $status, expected $want)" >&2
    return 1
  fi
}

# smoke_credentials AUDIENCE: the Authorization header for the mode's authorized calls, or
# nothing (client_auth=none, or api-key without a key at hand).
smoke_credentials() {
  local token key token_command=(gcloud auth print-identity-token)
  case $CLIENT_AUTH in
    iam)
      # Cloud Run takes a token whose audience is the revision's URL. A user account's token
      # is accepted as it is (and gcloud refuses --audiences for it); a service account (CI
      # through Workload Identity Federation) names the audience, and may mint the token by
      # impersonating another account.
      if [[ -n $SMOKE_IMPERSONATE_SERVICE_ACCOUNT ]]; then
        token_command+=(--impersonate-service-account="$SMOKE_IMPERSONATE_SERVICE_ACCOUNT"
          --audiences="$1")
      elif [[ $ACCOUNT == *.gserviceaccount.com ]]; then
        token_command+=(--audiences="$1")
      fi
      DRY_RUN=yes run "${token_command[@]}" >&3
      if [[ $DRY_RUN == yes ]]; then
        echo "Authorization: Bearer IDENTITY_TOKEN"
        return
      fi
      token=$("${token_command[@]}") ||
        { echo "error: no identity token for the smoke test (${token_command[*]} failed)." >&2; return 1; }
      echo "Authorization: Bearer $token" ;;
    api-key)
      key=${SMOKE_CLIENT_KEY:-${CLIENT_API_KEYS:-}}
      key=${key%%$'\n'*}
      [[ -z $key ]] || echo "Authorization: Bearer $key" ;;
  esac
}

# smoke_test URL AUDIENCE: run the checks against URL (the revision's tagged URL, or --smoke-url);
# AUDIENCE is the revision's run.app URL, the audience of an identity token. False on a failure.
smoke_test() {
  local auth attempt failed=0
  SMOKE_BASE=${1%/}
  auth=$(smoke_credentials "$2") || return 1
  echo "Smoke test of $SMOKE_BASE (client_auth=$CLIENT_AUTH):"
  # A revision that just became ready may take a moment to answer on a new tag.
  for attempt in 1 2 3; do
    expect_status 200 "ready" GET "$SMOKE_BASE/ready" "$auth" && break
    ((attempt == 3)) && return 1
    sleep 2
  done
  case $CLIENT_AUTH in
    api-key)
      expect_status 401 "a /v1 call without a client key is refused" POST "$SMOKE_BASE/v1/chat" ||
        failed=1
      if [[ -n $auth ]]; then
        # GET on a POST route: the key check passes and routing answers 405, with no OpenAI
        # call; any answer but a refusal (401, 403) or an error (5xx) will do.
        expect_status '2..|40[02-9]|4[1-9].' "the client key is accepted" GET \
          "$SMOKE_BASE/v1/chat" "$auth" || failed=1
      else
        echo "  (no client key at hand: set SMOKE_CLIENT_KEY to check that one is accepted)"
      fi ;;
    iam)
      expect_status '40[13]' "a call without an identity token is refused" POST "$SMOKE_BASE/v1/chat" ||
        failed=1 ;;
  esac
  ((failed == 0))
}

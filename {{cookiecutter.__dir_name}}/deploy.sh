#!/usr/bin/env bash
{#- Everything below is bash that Jinja must leave alone (${#var}, {{ in heredocs); the template's
    answers are rendered in scripts/common.sh. -#}
{% raw %}
# Deploy this service to Cloud Run and look after it. Each subcommand is a script of its own in
# scripts/deploy/; ./deploy.sh SUBCOMMAND --help lists its options. Needs bash 4+ (macOS: brew
# install bash).
#   ./deploy.sh [options]           build, push, deploy a candidate, smoke-test it, move traffic
#   ./deploy.sh promote             send all traffic to the latest revision (after --canary)
#   ./deploy.sh rollback [REVISION] send all traffic back (default: the revision before the last promote)
#   ./deploy.sh status              URL, revisions with their traffic and tags, image, instances
#   ./deploy.sh logs [--tail]       the service's recent logs, or follow them
#   ./deploy.sh destroy             delete the service, its account, bindings and images
set -euo pipefail

if ((BASH_VERSINFO[0] < 4)); then
  echo "deploy.sh needs bash 4 or newer; this is bash $BASH_VERSION." >&2
  echo "On macOS: brew install bash, then run it again (Homebrew's bash comes first on PATH)." >&2
  exit 1
fi

# Runtime settings for every deploy (CI's too), as KEY=VALUE with the rules of --env, e.g.
# DEPLOY_ENV=(OPENAI_MODEL=gpt-4o RATE_LIMIT_PER_MINUTE=30). Each deploy replaces the service's
# variables (--set-env-vars), so one set in the console is gone after the next deploy: keep them
# here instead. Never a key or other secret: those belong in Secret Manager.
DEPLOY_ENV=()

# Run from the repo root: the Docker build context, the Dockerfile and scripts/ are here.
cd "$(dirname "${BASH_SOURCE[0]}")"
# The template's answers, the settings resolved from them (environment variables win; flags win
# over both) and the helpers the subcommands share.
# shellcheck source=scripts/common.sh
source scripts/common.sh

# Each subcommand is one script; the default is the rollout.
case ${1:-} in
  promote) shift; source scripts/deploy/promote.sh "$@" ;;
  rollback) shift; source scripts/deploy/rollback.sh "$@" ;;
  status) shift; source scripts/deploy/status.sh "$@" ;;
  logs) shift; source scripts/deploy/logs.sh "$@" ;;
  destroy) shift; source scripts/deploy/destroy.sh "$@" ;;
  *) source scripts/deploy/rollout.sh "$@" ;;
esac
{%- endraw %}

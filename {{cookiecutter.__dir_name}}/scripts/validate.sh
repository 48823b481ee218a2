# shellcheck shell=bash
# Validators for deployment settings, sourced by deploy.sh and the other scripts in scripts/.
# A value that would break a deploy half-way is refused here, before anything runs.
# Each validate_* function takes VALUE [LABEL], returns 0 when VALUE is valid, else prints one
# line naming the rule and a valid example to stderr and returns 1.

# Cloud Run regions: a snapshot of https://cloud.google.com/run/docs/locations, checked 2026-12-01.
# A region Cloud Run adds later needs one word here.
CLOUD_RUN_REGIONS="
  africa-south1 asia-east1 asia-east2 asia-northeast1 asia-northeast2 asia-northeast3
  asia-south1 asia-south2 asia-southeast1 asia-southeast2 australia-southeast1
  australia-southeast2 europe-central2 europe-north1 europe-southwest1 europe-west1
  europe-west2 europe-west3 europe-west4 europe-west6 europe-west8 europe-west9 europe-west10
  europe-west12 me-central1 me-central2 me-west1 northamerica-northeast1
  northamerica-northeast2 southamerica-east1 southamerica-west1 us-central1 us-east1
  us-east4 us-east5 us-south1 us-west1 us-west2 us-west3 us-west4"
MULTI_REGIONS="us eu asia global nam4 eur3 eur4 nam-eur-asia1"
MAX_INSTANCES_LIMIT=1000

# Whole-string regex match in the C locale, so [a-z] means ASCII a to z and nothing else.
_matches() {
  local LC_ALL=C
  [[ $1 =~ $2 ]]
}

# Print "LABEL: VALUE (shell-quoted, so newlines and quotes show) RULE" and fail.
_invalid() {
  printf '%s: %q %s\n' "$1" "$2" "$3" >&2
  return 1
}

_in_list() {
  local item
  for item in $2; do
    [[ $1 == "$item" ]] && return 0
  done
  return 1
}

validate_service_name() {
  _matches "$1" '^[a-z]([-a-z0-9]{0,47}[a-z0-9])?$' && return 0
  _invalid "${2:-service name}" "$1" "is not a Cloud Run service name: start with a lowercase letter, \
use only lowercase letters, digits and hyphens, do not end with a hyphen, at most 49 characters \
(e.g. my-service)"
}

validate_project_id() {
  local label=${2:-project ID} word
  _matches "$1" '^[a-z][-a-z0-9]{4,28}[a-z0-9]$' || _invalid "$label" "$1" "is not a Google Cloud \
project ID: 6-30 characters, lowercase letters, digits and hyphens, starting with a letter and not \
ending with a hyphen (e.g. my-gcp-project)" || return 1
  for word in google null undefined ssl; do
    [[ $1 == *"$word"* ]] && { _invalid "$label" "$1" "contains '$word', which project IDs may not \
contain"; return 1; }
  done
  return 0
}

validate_service_account_id() {
  _matches "$1" '^[a-z][-a-z0-9]{4,28}[a-z0-9]$' && return 0
  _invalid "${2:-service account ID}" "$1" "is not a service account ID: 6-30 characters, lowercase \
letters, digits and hyphens, starting with a letter and not ending with a hyphen (e.g. my-service)"
}

validate_secret_name() {
  _matches "$1" '^[A-Za-z0-9_-]{1,255}$' && return 0
  _invalid "${2:-secret name}" "$1" "is not a Secret Manager secret ID: 1-255 characters of letters, \
digits, underscores and hyphens (e.g. openai-api-key)"
}

# A secret version: a version number or "latest".
validate_secret_version() {
  [[ $1 == latest ]] || _matches "$1" '^[1-9][0-9]{0,18}$' && return 0
  _invalid "${2:-secret version}" "$1" "is not a secret version: latest or a version number (e.g. 1)"
}

validate_artifact_registry_repo() {
  _matches "$1" '^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$' && return 0
  _invalid "${2:-Artifact Registry repository}" "$1" "is not an Artifact Registry repository ID: \
lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen, at most \
63 characters (e.g. cloud-run)"
}

# A region id that is not in the snapshot above but has a region's shape (Google adds regions,
# e.g. northamerica-south1) is accepted with a warning; zones and multi-regions are refused.
validate_region() {
  local label=${2:-region}
  _in_list "$1" "$CLOUD_RUN_REGIONS" && return 0
  if _matches "$1" '^[a-z]+-[a-z]+[0-9]+-[a-z]$'; then
    _invalid "$label" "$1" "is a zone; Cloud Run needs a region such as ${1%-?}"
  elif _in_list "${1,,}" "$MULTI_REGIONS"; then
    _invalid "$label" "$1" "is a multi-region; Cloud Run needs a single region such as us-central1"
  elif _matches "$1" '^[a-z]+-[a-z]+[0-9]+$'; then
    printf 'warning: %s: %s is not in deploy.sh'"'"'s list of Cloud Run regions (a snapshot); using it as given. Check it at https://cloud.google.com/run/docs/locations\n' \
      "$label" "$1" >&2
  else
    _invalid "$label" "$1" "is not a Cloud Run region (e.g. us-central1 or europe-west1)"
  fi
}

# validate_instances MIN MAX [MIN_LABEL MAX_LABEL]: whole numbers, 0 <= MIN <= MAX, 1 <= MAX <= 1000.
validate_instances() {
  local min_label=${3:-min instances} max_label=${4:-max instances} whole='^[0-9]{1,4}$' ok=0
  # Only values that passed the regex reach (( )): arithmetic would evaluate anything else as code.
  if ! _matches "$1" "$whole"; then
    _invalid "$min_label" "$1" "is not a whole number >= 0 (e.g. 0)"
    ok=1
  fi
  if ! _matches "$2" "$whole"; then
    _invalid "$max_label" "$2" "is not a whole number >= 1 (e.g. 5)"
    return 1
  fi
  # 10# reads "010" as ten, as the hook's int() does, not as octal.
  if ((10#$2 < 1 || 10#$2 > MAX_INSTANCES_LIMIT)); then
    _invalid "$max_label" "$2" "must be between 1 and $MAX_INSTANCES_LIMIT (e.g. 5)"
    ok=1
  elif ((ok == 0)) && ((10#$1 > 10#$2)); then
    _invalid "$min_label" "$1" "is larger than $max_label $2"
    ok=1
  fi
  return "$ok"
}

# _whole VALUE LOW HIGH: VALUE is a whole number from LOW to HIGH (no sign, no leading zeros).
_whole() {
  _matches "$1" '^(0|[1-9][0-9]{0,5})$' && ((10#$1 >= $2 && 10#$1 <= $3))
}

validate_concurrency() {
  _whole "$1" 1 1000 && return 0
  _invalid "${2:-concurrency}" "$1" "is not a concurrency Cloud Run accepts: a whole number from 1 to 1000 (e.g. 80)"
}

validate_timeout() {
  _whole "$1" 1 3600 && return 0
  _invalid "${2:-timeout}" "$1" "is not a request timeout Cloud Run accepts: whole seconds from 1 to 3600 (e.g. 300)"
}

validate_percent() {
  _whole "$1" 1 99 && return 0
  _invalid "${2:-percent}" "$1" "is not a canary share: a whole percentage from 1 to 99 (e.g. 10)"
}

validate_keep_images() {
  _whole "$1" 1 1000 && return 0
  _invalid "${2:-images to keep}" "$1" "is not a number of images to keep: a whole number from 1 to 1000 (e.g. 10)"
}

# _millicpu CPU: a CPU value in thousandths (1 -> 1000, 0.5 -> 500), or nothing when malformed.
_millicpu() {
  local fraction
  if _matches "$1" '^[1-8]$'; then
    echo "$(($1 * 1000))"
  elif _matches "$1" '^0?\.[0-9]{1,3}$'; then
    fraction=${1#*.}000
    echo "$((10#${fraction:0:3}))"
  elif _matches "$1" '^[1-9][0-9]{0,4}m$'; then
    echo "$((10#${1%m}))"
  fi
}

# _mebibytes MEMORY: a memory value (512Mi, 2Gi) in MiB, or nothing when malformed.
_mebibytes() {
  if _matches "$1" '^[1-9][0-9]{0,5}Mi$'; then
    echo "$((10#${1%Mi}))"
  elif _matches "$1" '^[1-9][0-9]{0,2}Gi$'; then
    echo "$((10#${1%Gi} * 1024))"
  fi
}

# validate_sizing CPU MEMORY CONCURRENCY [CPU_LABEL MEMORY_LABEL]: a CPU and memory pair that
# Cloud Run accepts (run/docs/configuring/services/cpu and memory-limits): CPU 1, 2, 4, 6 or 8,
# or 0.08-0.999 with concurrency 1; memory 128Mi-32Gi; more than 4, 8, 16 and 24 GiB need 2, 4, 6
# and 8 CPUs; 4 CPUs need 2 GiB, 6 and 8 need 4 GiB; below 1 CPU at most 512 MiB (1 GiB from 0.5).
validate_sizing() {
  local cpu_label=${4:-cpu} memory_label=${5:-memory} milli mib need
  milli=$(_millicpu "$1")
  mib=$(_mebibytes "$2")
  if [[ -z $milli ]] || ((milli < 80 || milli > 8000)) ||
    ((milli >= 1000 && milli != 1000 && milli != 2000 && milli != 4000 && milli != 6000 && milli != 8000)); then
    _invalid "$cpu_label" "$1" "is not a CPU limit Cloud Run accepts: 1, 2, 4, 6 or 8, or 0.08 to 0.999 (e.g. 1)"
    return 1
  fi
  if [[ -z $mib ]] || ((mib < 128 || mib > 32768)); then
    _invalid "$memory_label" "$2" "is not a memory limit Cloud Run accepts: 128Mi to 32Gi, written with Mi or Gi (e.g. 512Mi)"
    return 1
  fi
  need=1000
  ((mib > 4096)) && need=2000
  ((mib > 8192)) && need=4000
  ((mib > 16384)) && need=6000
  ((mib > 24576)) && need=8000
  if ((mib > 1024 && milli < need)); then
    _invalid "$memory_label" "$2" "needs at least $((need / 1000)) CPU (--cpu $((need / 1000)))"
    return 1
  fi
  if ((milli < 1000)); then
    if ((mib > 1024 || (mib > 512 && milli < 500))); then
      _invalid "$memory_label" "$2" "is more than Cloud Run allows below 1 CPU (512Mi; 1Gi from 0.5 CPU)"
      return 1
    fi
    if [[ $3 != 1 ]]; then
      _invalid "$cpu_label" "$1" "is below 1 CPU, which Cloud Run allows only with --concurrency 1 (not $3)"
      return 1
    fi
  fi
  ((milli == 4000 && mib < 2048)) && need=2048
  ((milli >= 6000 && mib < 4096)) && need=4096
  if ((milli >= 4000 && mib < need)); then
    _invalid "$memory_label" "$2" "is too little for $1 CPUs: Cloud Run needs at least $((need / 1024))Gi"
    return 1
  fi
  return 0
}

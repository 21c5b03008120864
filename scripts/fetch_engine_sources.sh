#!/usr/bin/env bash
# Unpack the Python sources of pinned vLLM and SGLang wheels (no install, no dependencies) into the
# user's cache folder, once per machine. The tests drive vLLM's own BlockPool and SGLang's own
# RadixCache from them to check the vllm and sglang profiles to the token. Prints two lines
# NAME=FOLDER for the environment.
set -euo pipefail
py="${PYTHON:-python3}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/kvern/engines"
fetch() {  # name version env-var
  local dest="$cache/$1-$2"
  if [ ! -f "$dest/.complete" ]; then
    local work
    work=$(mktemp -d)
    "$py" -m pip download --quiet --no-deps -d "$work" "$1==$2" >&2
    rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
    "$py" - "$work" "$dest.tmp" <<'PY'
import glob, sys, zipfile
wheel = zipfile.ZipFile(glob.glob(sys.argv[1] + "/*.whl")[0])
wheel.extractall(sys.argv[2], [n for n in wheel.namelist() if n.endswith(".py")])
PY
    rm -rf "$work" "$dest" && mv "$dest.tmp" "$dest" && touch "$dest/.complete"
  fi
  echo "$3=$dest"
}
fetch vllm "${KVERN_VLLM_VERSION:-0.33.0}" KVERN_VLLM_SRC
fetch sglang "${KVERN_SGLANG_VERSION:-0.5.23}" KVERN_SGLANG_SRC

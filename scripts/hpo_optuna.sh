#!/usr/bin/env bash
# Runs a study from a config file: installs what is missing, then `hpo start <config>`.
# Running it again after Ctrl-C or a crash continues the same study.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ "$#" -lt 1 ]; then
  echo "usage: $0 <config.yaml> [--skip-final-full-pipeline] [--detach]" >&2
  exit 2
fi
source "$root/scripts/bootstrap.sh"
exec node "$root/bin/hpo.js" start "$@"

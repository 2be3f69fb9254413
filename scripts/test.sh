#!/usr/bin/env bash
# Installs what is missing, type-checks, then runs the whole test suite with Node's test runner
# against real Optuna and a real Temporal dev server (started by the tests). Extra arguments are
# test files to run instead of all of them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh"
cd "$root"

echo "Type-checking..."
npx tsc --noEmit -p tsconfig.json

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  mapfile -t files < <(find test -name '*.test.ts' -not -path '*/node_modules/*' | sort)
fi
exec node --import tsx --test --test-reporter=spec --test-concurrency=1 "${files[@]}"

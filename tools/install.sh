#!/usr/bin/env bash
# Installs the pinned chain tooling (anvil, cast, solc-js) from npm into tools/node_modules.
# Idempotent and quick when already installed; used by the devnet script, CI and contracts/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ -x "$here/node_modules/.bin/anvil" ] && [ -x "$here/node_modules/.bin/solcjs" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "npm is required to install anvil (apt-get install -y nodejs npm)" >&2; exit 1; }
cd "$here"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi

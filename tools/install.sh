#!/usr/bin/env bash
# Installs the pinned chain tooling (anvil, cast, solc-js, Chopsticks) from npm into
# tools/node_modules, and writes the Rococo Asset Hub chain spec Chopsticks runs in genesis mode.
# Idempotent and quick when already installed; used by the devnet script, CI and contracts/build.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
spec="$here/asset-hub-spec.json"
write_spec() {
  [ -s "$spec" ] || (cd "$here" && node -e "const m=require('./node_modules/@substrate/connect-known-chains/dist/commonjs/specs/rococo_v2_2_asset_hub.js'); require('fs').writeFileSync('$spec', m.chainSpec)")
}
if [ -x "$here/node_modules/.bin/anvil" ] && [ -x "$here/node_modules/.bin/solcjs" ] && [ -x "$here/node_modules/.bin/chopsticks" ] && [ -f "$here/node_modules/ethers/package.json" ] && [ -f "$here/node_modules/playwright-core/package.json" ]; then
  write_spec
  exit 0
fi
command -v npm >/dev/null || { echo "npm is required to install anvil (apt-get install -y nodejs npm)" >&2; exit 1; }
cd "$here"
if [ -f package-lock.json ]; then npm ci --no-audit --no-fund; else npm install --no-audit --no-fund; fi
write_spec

#!/usr/bin/env bash
# Regenerates contracts/out/<Name>.abi.json and <Name>.bin from contracts/src with solc-js
# (offline; pinned in tools/package.json). The outputs are committed so building Meridian
# needs no Solidity compiler; re-run this after editing a contract.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
solcjs="$root/tools/node_modules/.bin/solcjs"
[ -x "$solcjs" ] || "$root/tools/install.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$here/src"
# OpenZeppelin's contracts (the DAO's Governor, votes token and timelock) come from npm.
"$solcjs" --bin --abi --optimize --optimize-runs 200 --base-path . --include-path "$root/tools/node_modules" -o "$tmp" ./*.sol
mkdir -p "$here/out"
for name in CbdcToken Stablecoin BridgeEscrow MeridianVotes MeridianGovernor MeridianTimelock; do
  python3 -m json.tool "$tmp/${name}_sol_${name}.abi" > "$here/out/${name}.abi.json"
  cp "$tmp/${name}_sol_${name}.bin" "$here/out/${name}.bin"
done
echo "contracts built into $here/out"

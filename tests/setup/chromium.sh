#!/usr/bin/env bash
# Headless browser for the browser tests: Debian's chromium and the matching chromedriver.
# Prints the chromedriver path. Tests start chromedriver themselves on a free port and run
# Chromium headless with a fresh profile and the flags this closed network needs.
set -euo pipefail
"$(dirname "$0")/deps.sh" chromium chromium-driver >&2
command -v chromedriver

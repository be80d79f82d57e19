#!/usr/bin/env bash
# Install the network benchmark's peers: redis-server (the peer and the PING
# probe) and redis-benchmark (the load driver).  `python -m bench` skips the
# network part, with a message, when they are missing.
set -euo pipefail

if command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null; then
    echo "already installed: $(redis-server --version)"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi

if command -v apt-get >/dev/null; then
    $sudo apt-get update
    $sudo apt-get install -y redis-server redis-tools
    # Debian starts a redis on port 6379 as a service; the benchmark starts its
    # own servers on free ports and does not need it.
    if command -v systemctl >/dev/null && systemctl is-active --quiet redis-server 2>/dev/null; then
        $sudo systemctl disable --now redis-server || true
    fi
elif command -v dnf >/dev/null; then
    $sudo dnf install -y redis
elif command -v brew >/dev/null; then
    brew install redis
else
    echo "no apt-get, dnf or brew here: install redis-server and redis-benchmark (redis >= 6.2)" >&2
    exit 1
fi
echo "installed: $(redis-server --version)"

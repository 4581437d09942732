#!/usr/bin/env bash
# Loopback download throughput and per-connection latency: direct, through `cordon proxy`,
# through tinyproxy, in one run. Installs Debian's tinyproxy when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v tinyproxy >/dev/null; then
    echo "installing tinyproxy..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y tinyproxy >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y tinyproxy >/dev/null; }
    # The package starts a system service; the bench runs its own.
    $SUDO systemctl stop tinyproxy >/dev/null 2>&1 || true
fi
echo "kernel: $(uname -r), $(nproc) CPUs" >&2
exec cargo bench -p cordon-cli --bench proxy_throughput "$@"

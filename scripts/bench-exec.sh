#!/usr/bin/env bash
# Start-up cost of `cordon exec -- true` beside bare `true`, `unshare` and bubblewrap, in
# one run. Installs Debian's bubblewrap when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bwrap >/dev/null; then
    echo "installing bubblewrap..." >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get install -y bubblewrap >/dev/null || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y bubblewrap >/dev/null; }
fi
echo "bubblewrap: $(bwrap --version)" >&2
echo "kernel: $(uname -r), $(nproc) CPUs" >&2
exec cargo bench -p cordon-cli --bench exec_startup "$@"

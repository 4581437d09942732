#!/usr/bin/env bash
# Builds cordon and runs a scripted "agent" in its sandbox on the built-in default policy,
# then shows the decisions cordon recorded about it. Run from anywhere:
#   ./examples/demo.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
echo "building cordon (release)..." >&2
cargo build --release --quiet -p cordon-cli
cordon="$root/target/release/cordon"
"$cordon" doctor || echo "(cordon will refuse to run what this kernel cannot confine)" >&2
echo
cd "$root/examples/agent"
echo "\$ cordon exec -- bash ./agent.sh"
"$cordon" exec -- bash ./agent.sh || echo "(cordon exec ended with status $?)"
rm -f agent-notes.txt
echo
# The launch decision, the proxy's refusal and the outcome of the run.
echo "\$ cordon audit tail -n 3"
"$cordon" audit tail -n 3

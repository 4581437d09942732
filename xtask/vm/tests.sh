#!/bin/bash
# cordon's desktop tests. Runs in the VM as the desktop user (uid 1000), in a transient
# service of the user's own systemd manager: where a terminal's shell runs on a systemd
# desktop, in a cgroup it shares with that shell. Prints TAP.
set -u
export HOME="${HOME:-/home/agent}"
export PATH="/opt/cordon/bin:/usr/local/bin:/usr/bin:/bin"
n=0
failed=0
ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}
not_ok() {
    n=$((n + 1))
    failed=1
    echo "not ok $n - $1"
    shift
    printf '%s\n' "$@" | tail -n 40 | sed 's/^/#   /'
}
# check NAME COMMAND...: passes when the command succeeds; prints its output when not.
check() {
    local name=$1 out
    shift
    if out=$("$@" 2>&1); then ok "$name"; else not_ok "$name" "$out"; fi
}
# has PATTERN TEXT, lacks PATTERN TEXT: print TEXT when they fail.
has() { grep -q -- "$1" <<<"$2" || { echo "$2"; return 1; }; }
lacks() { ! grep -q -- "$1" <<<"$2" || { echo "$2"; return 1; }; }
# wait_for SECONDS COMMAND...: polls until the command succeeds, at most SECONDS.
wait_for() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.2
    done
}

mkdir -p "$HOME/work" && cd "$HOME/work" || exit 1
# The user's configuration, where cordon reads it. The binaries are debug builds and the VM
# is emulated (TCG), so policy evaluation gets far more than its default 100 ms.
mkdir -p "$HOME/.config/cordon"
printf '[policy]\ntime_limit_ms = 20000\n' >"$HOME/.config/cordon/config.toml"
echo "# $(uname -r), $(id -un) ($(id -u)), cgroup $(cut -d: -f3 /proc/self/cgroup)"

# Where this runs.
check "runs as the desktop user, not root" test "$(id -u)" = 1000
check "in a service of the user's systemd manager" \
    grep -q '^0::/user.slice/user-1000.slice/user@1000.service/' /proc/self/cgroup
own="/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)"
check "this shell shares its cgroup, so cordon cannot enable controllers below it" \
    grep -qx "$$" "$own/cgroup.procs"

# cordon doctor says which path this machine takes.
doctor=$(cordon doctor --json 2>&1)
feature() {
    python3 -c 'import json, sys
found = {f["name"]: f for f in json.load(sys.stdin)}[sys.argv[1]]
print(found["status"] + ": " + found["found"])' "$1" <<<"$doctor" 2>&1
}
echo "# doctor: cgroups $(feature cgroups)"
echo "# doctor: landlock $(feature landlock)"
check "doctor: a delegated scope from the systemd user manager" \
    has "^ok: .*asks the systemd user manager (systemd [^)]*) for a delegated scope of its own, in .app.slice." "$(feature cgroups)"
check "doctor: Landlock ABI 2, partial" \
    has "^partial: ABI version 2 (files, refer)$" "$(feature landlock)"

# A first run: caps without --allow-degraded.
out=$(cordon exec -- true 2>&1)
rc=$?
check "cordon exec runs without --allow-degraded (exit $rc)" test "$rc" = 0
[ "$rc" = 0 ] || echo "$out" | sed 's/^/#   /'

cordon exec -- sleep 60 >/dev/null 2>&1 &
running=$!
capped=""
deadline=$((SECONDS + 120))
while [ -z "$capped" ] && [ "$SECONDS" -lt "$deadline" ]; do
    capped=$(find /sys/fs/cgroup/user.slice -path '*/cordon-*.scope/cordon-[0-9]*/pids.max' 2>/dev/null | head -n 1)
    # The cap is set before the program starts: wait for the program.
    [ -n "$capped" ] && ! pgrep -u agent -x sleep >/dev/null && capped=""
    sleep 0.2
done
check "the sandbox's cgroup is in a scope systemd delegated to cordon" test -n "$capped"
check "its process cap is set ($(cat "$capped" 2>/dev/null))" \
    grep -qx '[0-9][0-9]*' "${capped:-/nonexistent}"
scope=$(basename "$(dirname "$(dirname "${capped:-/nonexistent/x/y}")")")
check "systemd knows the scope ($scope) and it is delegated" \
    has "Delegate=yes" "$(systemctl --user show -p Delegate "$scope" 2>&1)"
# The cap's files are the user's own (the scope is delegated to the user's cordon): the
# user can write them, so the sandboxed program, which runs as the user, must not reach them.
check "outside, the user may write the sandbox's caps" sh -c "echo 1024 > '${capped:-/nonexistent}'"
kill "$running" 2>/dev/null
wait "$running" 2>/dev/null
lift='
own=$(cut -d: -f3 /proc/self/cgroup)
echo "cgroup: $own"
for dir in /sys/fs/cgroup "/sys/fs/cgroup$own" /sys/fs/cgroup/..; do
    echo max >"$dir/pids.max" 2>/dev/null && echo "LIFTED $dir"
    echo $$ >"$dir/../cgroup.procs" 2>/dev/null && echo "ESCAPED $dir"
done
mount -t cgroup2 none /tmp 2>/dev/null && echo MOUNTED
true'
inside=$(cordon exec -- sh -c "$lift" 2>&1)
check "inside, the program can neither lift its caps nor leave its cgroup" \
    lacks "LIFTED\|ESCAPED\|MOUNTED" "$inside"
check "inside, the probe ran" has "cgroup: " "$inside"
check "the scope is gone once cordon ends" \
    wait_for 30 test -z "$(systemctl --user list-units --all --no-legend "$scope" 2>/dev/null)"

# A fork bomb stops at the cap.
bomb='
import os, time
n = 0
try:
    while n < 20000:
        if os.fork() == 0:
            time.sleep(60)
            os._exit(0)
        n += 1
except OSError as e:
    print("stopped at", n, e.strerror)
'
out=$(timeout 300 cordon exec -- python3 -c "$bomb" 2>&1)
stopped=$(sed -n 's/^stopped at \([0-9]*\).*/\1/p' <<<"$out")
check "a fork bomb stops at the cap (${stopped:-never})" test "${stopped:-99999}" -le 1100
[ -n "$stopped" ] || echo "$out" | sed 's/^/#   /'
check "nothing of it outlives cordon" \
    wait_for 30 test -z "$(pgrep -u agent -f 'import os, time')"

# cordon leaves its unit's cgroup for the scope, but not the unit's limits: run from a
# service limited to 100 tasks, the sandbox stops there, not at its own cap of 1024.
out=$(timeout 300 systemd-run --user --wait --pipe --quiet -p TasksMax=100 -p MemoryMax=1G \
    -p WorkingDirectory="$HOME/work" \
    /opt/cordon/bin/cordon exec -- python3 -c "$bomb" 2>&1)
stopped=$(sed -n 's/^stopped at \([0-9]*\).*/\1/p' <<<"$out")
check "a unit's TasksMax=100 still holds in cordon's scope (stopped at ${stopped:-never})" \
    test "${stopped:-99999}" -le 100
[ -n "$stopped" ] || echo "$out" | sed 's/^/#   /'
check "and nothing of that outlives cordon" \
    wait_for 30 test -z "$(pgrep -u agent -f 'import os, time')"

# From a system service run as the user, cordon's cgroup is the system manager's: it does
# not leave it (its limits would go), and says so. (run-tests.sh ran it, as root.)
system=$(cat /run/cordon-vm/system-service.txt 2>&1)
check "a system service's cordon stays in its cgroup: refused" has "^exit 125$" "$system"
check "with the reason and the hint" \
    has "is not one of its user's systemd manager.*systemd-run --user --scope" "$system"

# In a pid namespace of its own, cordon's pid is not the manager's: the scope still holds
# cordon itself, never the process that has that pid outside.
out=$(timeout 300 unshare --user --map-current-user --pid --fork --mount-proc \
    cordon exec -- true 2>&1)
check "cordon in a pid namespace of its own gets its scope (exit $?)" test "$?" = 0
[ -z "$out" ] || echo "$out" | sed 's/^/#   /'

# A session bus that accepts connections and never answers costs seconds, not a hang.
python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind("/tmp/silent.sock")
s.listen(16)
held = []
while True:
    c, _ = s.accept()
    held.append(c)
' &
silent=$!
wait_for 20 test -S /tmp/silent.sock
started=$SECONDS
out=$(DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/silent.sock timeout 120 cordon exec -- true 2>&1)
rc=$?
check "a bus that never answers: refused (exit $rc) in $((SECONDS - started)) s, not hung" test "$rc" = 125
kill "$silent" 2>/dev/null

# The user's sockets in /run/user/1000 are hidden: the session bus, ssh-agent, and any other.
eval "$(ssh-agent -a "$XDG_RUNTIME_DIR/ssh-agent.sock" -t 600)" >/dev/null
ssh-add -l >/dev/null 2>&1
check "outside, ssh-agent answers (exit $? from ssh-add -l: 1 is no keys, 2 no agent)" test "$?" = 1
out=$(cordon exec -- env SSH_AUTH_SOCK="$SSH_AUTH_SOCK" ssh-add -l 2>&1)
check "inside, it does not (exit $?)" test "$?" = 2
python3 -c '
import os, socket, time
s = socket.socket(socket.AF_UNIX)
s.bind(os.environ["XDG_RUNTIME_DIR"] + "/agent.sock")
s.listen()
time.sleep(120)
' &
listener=$!
check "outside: the session bus and the agent socket are there" \
    wait_for 20 test -S "$XDG_RUNTIME_DIR/bus" -a -S "$XDG_RUNTIME_DIR/agent.sock"
probe='
import socket
for path in ("/run/user/1000/bus", "/run/user/1000/agent.sock"):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        print("REACHED", path)
    except OSError as e:
        print("refused", path, e.strerror)
'
check "outside, both answer" has "REACHED /run/user/1000/agent.sock" "$(python3 -c "$probe" 2>&1)"
inside=$(cordon exec -- python3 -c "$probe" 2>&1)
check "inside: neither is reachable" lacks REACHED "$inside"
check "inside: the probe ran" has "refused /run/user/1000/bus" "$inside"
kill "$listener" 2>/dev/null
ssh-agent -k >/dev/null 2>&1

# cordon's state lives in the user's XDG directories, and its configuration is read there.
config="$HOME/.config/cordon/config.toml"
cp "$config" "$config.good"
echo "this is not toml [" >"$config"
out=$(cordon exec -- true 2>&1)
rc=$?
mv "$config.good" "$config"
check "a broken ~/.config/cordon/config.toml is named, and refused (exit $rc)" \
    has "$config" "$out"
check "the audit log is in ~/.local/share/cordon, the user's own" \
    test -O "$HOME/.local/share/cordon/audit.db"
check "the journal too" test -O "$HOME/.local/share/cordon/journal/journal.db"
check "the audit log verifies" cordon audit verify
check "the launches are in it" has "sandbox" "$(cordon audit tail -n 20 2>&1)"

# Without a user manager to ask: refused with the hint, unless --allow-degraded.
nobus="unix:path=/nonexistent/bus"
out=$(DBUS_SESSION_BUS_ADDRESS=$nobus cordon exec -- true 2>&1)
rc=$?
check "no user manager: refused (exit $rc)" test "$rc" = 125
check "no user manager: the reason and the hint" \
    has "systemd-run --user --scope -p Delegate=yes" "$out"
echo "$out" | sed 's/^/# /'
[ "$rc" = 125 ] || echo "$out" | sed 's/^/#   /'
out=$(DBUS_SESSION_BUS_ADDRESS=$nobus cordon exec --allow-degraded -- true 2>&1)
check "no user manager, --allow-degraded: runs (exit $?)" test "$?" = 0

# Landlock ABI 2: a policy that requires more is refused; what ABI 2 lacks seccomp covers.
cordon policy init "$HOME/policy-abi3" >/dev/null
python3 - "$HOME/policy-abi3/data.json" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
data["cordon"]["settings"]["sandbox"]["landlock_abi"] = 3
json.dump(data, open(sys.argv[1], "w"))
PY
out=$(cordon exec --policy "$HOME/policy-abi3" -- true 2>&1)
rc=$?
check "a policy requiring Landlock ABI 3 is refused on ABI 2 (exit $rc)" test "$rc" = 125
check "with the reason" has "Landlock is ABI 2, and the policy requires ABI 3 or newer" "$out"
out=$(cordon exec --policy "$HOME/policy-abi3" --allow-degraded -- true 2>&1)
check "and runs with --allow-degraded (exit $?)" test "$?" = 0
python3 -c '
import socket, time
s = socket.socket(socket.AF_UNIX)
s.bind("\0cordon-vm-abstract")
s.listen()
time.sleep(60)
' &
abstract=$!
sleep 1
reach='
import socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect("\0cordon-vm-abstract")
    print("REACHED")
except OSError as e:
    print("refused", e.strerror)
'
check "outside, the abstract socket answers" has REACHED "$(python3 -c "$reach" 2>&1)"
inside=$(cordon exec -- python3 -c "$reach" 2>&1)
check "inside, on ABI 2, it does not" has refused "$inside"
kill "$abstract" 2>/dev/null
secret="$HOME/secret-notes.txt"
echo "private" >"$secret"
inside=$(cordon exec -- cat "$secret" 2>&1)
check "files outside the grants stay out of reach on ABI 2" lacks private "$inside"

echo "1..$n"
exit "$failed"

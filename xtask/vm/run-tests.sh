#!/bin/bash
# As root, in the VM: runs tests.sh as the test user, in a transient service of the user's
# own systemd manager (where a terminal's shell runs on a desktop), and powers off.
uid=1000
echo "CORDON-VM: BEGIN $(uname -r)"
for _ in $(seq 1 120); do
    [ -S "/run/user/$uid/bus" ] && break
    sleep 0.5
done
# The user's configuration (tests.sh explains it), before any cordon runs.
runuser -u agent -- sh -c 'mkdir -p ~/.config/cordon ~/work && printf "[policy]\ntime_limit_ms = 20000\n" >~/.config/cordon/config.toml'

# A system service run as the user, with limits of its own: its cordon must not leave them.
mkdir -p /run/cordon-vm
{
    timeout 300 systemd-run --uid=agent --wait --pipe --quiet -p TasksMax=100 \
        -E HOME=/home/agent -E XDG_RUNTIME_DIR="/run/user/$uid" \
        -E DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" \
        -p WorkingDirectory=/home/agent/work /opt/cordon/bin/cordon exec -- true
    echo "exit $?"
} >/run/cordon-vm/system-service.txt 2>&1
chmod -R a+rX /run/cordon-vm
runuser -u agent -- env XDG_RUNTIME_DIR="/run/user/$uid" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" \
    timeout 780 systemd-run --user --wait --pipe --collect --quiet \
    -p StandardError=inherit /opt/cordon/tests.sh
echo "CORDON-VM: END rc=$?"
systemctl poweroff --no-block

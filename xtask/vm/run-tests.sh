#!/bin/bash
# As root, in the VM: runs tests.sh as the test user, in a transient service of the user's
# own systemd manager (where a terminal's shell runs on a desktop), and powers off.
uid=1000
echo "CORDON-VM: BEGIN $(uname -r)"
for _ in $(seq 1 120); do
    [ -S "/run/user/$uid/bus" ] && break
    sleep 0.5
done
runuser -u agent -- env XDG_RUNTIME_DIR="/run/user/$uid" \
    DBUS_SESSION_BUS_ADDRESS="unix:path=/run/user/$uid/bus" \
    timeout 1200 systemd-run --user --wait --pipe --collect --quiet \
    -p StandardError=inherit /opt/cordon/tests.sh
echo "CORDON-VM: END rc=$?"
systemctl poweroff --no-block

#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs inside the test VM that scripts/vm-test boots (as root, from a systemd service):
# runs the test files listed in /aj/tests and writes their TAP to the serial port $1,
# framed for scripts/vm-test:
#   AJVM-INFO <text>            about the VM (kernel, cgroup mode)
#   AJVM-BEGIN <name>           then the file's TAP output and its stderr as "# " lines
#   AJVM-END <name> <status>    the file's exit status (0 pass, 77 skip, else fail)
#   AJVM-DONE                   all files ran
set -u
out=${1:?serial device}
stty -F "$out" raw -echo 2>/dev/null
exec 3>"$out"
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
src=/aj/src
export AGENTJAIL="$src/build/agentjail" PROBE="$src/build/tests/probe"
export AGENTJAIL_SOURCE_DIR="$src" AGENTJAIL_BUILD_DIR="$src/build" AGENTJAIL_TEST_STRICT=1
# Everything is 5-20 times slower under TCG than on the host: more time per jail.
export JAIL_TIMEOUT=60
# ... and for what a test asks of agentjail in seconds while it works alongside (operator's
# 3 s approval timeout becomes 15 s).
export AGENTJAIL_TEST_TIME_SCALE=5

# The binary was built in the host's source tree and finds its shipped profiles there (for
# root), and where `meson install` would have put them (for every user: the source tree may
# be under a 0700 directory, as a clone in /root is).
host_src=$(cat /aj/srcpath)
if [[ $host_src == /* && ! -e $host_src ]]; then
        mkdir -p "$(dirname "$host_src")" && ln -s "$src" "$host_src"
fi
installed=$(cat /aj/datadir-profiles)
if [[ $installed == /* && ! -e $installed ]]; then
        mkdir -p "$(dirname "$installed")" && ln -s "$src/profiles" "$installed"
fi

# Swap, so that a missing memory.swap.max would show (a bomb would swap instead of dying).
if fallocate -l 256M /swapfile 2>/dev/null && chmod 0600 /swapfile && mkswap /swapfile >/dev/null 2>&1; then
        swapon /swapfile 2>/dev/null
fi

info() { echo "AJVM-INFO $*" >&3; }
info "kernel $(uname -r), /sys/fs/cgroup is $(stat -f -c %T /sys/fs/cgroup)," \
        "root controllers: $(cat /sys/fs/cgroup/cgroup.controllers 2>/dev/null)"
info "v1 hierarchies mounted: $(awk '$3 == "cgroup" { n++ } END { print n + 0 }' /proc/self/mounts)," \
        "swap accounting: $([[ -e /sys/fs/cgroup/system.slice/memory.swap.max ]] && echo yes || echo no)," \
        "memory.peak: $([[ -e /sys/fs/cgroup/system.slice/memory.peak ]] && echo yes || echo no)," \
        "swap: $(awk '/^SwapTotal/ { print $2 " kB" }' /proc/meminfo)"

while read -r t; do
        [[ -n "$t" ]] || continue
        # unit-NAME: a criterion unit test binary (its live tests need root and a cgroup
        # tree), zz-leftovers: the suite's final leftover check, else a VM-only test file
        # (tests/vm/test-NAME.sh) or an integration file.
        case $t in
        unit-*) cmd=("$src/build/tests/test-${t#unit-}" --tap=- -j1) ;;
        zz-leftovers) cmd=(bash "$src/tests/integration/check-leftovers.sh") ;;
        *) if [[ -f $src/tests/vm/test-$t.sh ]]; then
                cmd=(bash "$src/tests/vm/test-$t.sh") # needs the VM's systemd and user
        else
                cmd=(bash "$src/tests/integration/test-$t.sh")
        fi ;;
        esac
        echo "AJVM-BEGIN $t" >&3
        start=$SECONDS
        (cd /tmp && timeout -k 10 600 "${cmd[@]}") >&3 2>/tmp/ajvm-stderr </dev/null
        rc=$?
        if [[ -s /tmp/ajvm-stderr ]]; then
                head -n 200 /tmp/ajvm-stderr | sed 's/^/# stderr: /' >&3
        fi
        echo "# $t took $((SECONDS - start)) s" >&3
        echo "AJVM-END $t $rc" >&3
done </aj/tests
echo "AJVM-DONE" >&3

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
export AGENTJAIL="$src/build/agentjail" PROBE="$src/build/tests/probe" FUSE_HOLD="$src/build/tests/fuse-hold"
export AGENTJAIL_SOURCE_DIR="$src" AGENTJAIL_BUILD_DIR="$src/build" AGENTJAIL_TEST_STRICT=1
# Everything is 5-20 times slower under TCG than on the host: more time per jail.
export JAIL_TIMEOUT=60
# ... and for what a test asks of agentjail in seconds while it works alongside (operator's
# 3 s approval timeout becomes 15 s).
export AGENTJAIL_TEST_TIME_SCALE=5
# Seconds one test file may run before it is reported as hung and killed.
AJVM_FILE_TIMEOUT=$(cat /aj/file-timeout 2>/dev/null || echo 600)

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

# A test file still running after its time (run_file): what every process of it is
# doing (state, wait channel, kernel stack), the test's last words and agentjail's cgroups,
# as "# hung: " lines, before it is killed and fails.
hung() {
        local t=$1 sid=$2 p
        {
                echo "the test file $t still runs after $allowed s: killed"
                ps -e -o pid,ppid,sid,stat,wchan:32,etimes,args | awk -v s="$sid" 'NR == 1 || $3 == s'
                for p in $(ps -e -o pid=,sid= | awk -v s="$sid" '$2 == s { print $1 }'); do
                        echo "-- $p: $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-120)"
                        grep -E '^(State|SigPnd|ShdPnd|SigBlk)' "/proc/$p/status" 2>/dev/null
                        echo "cgroup: $(cat "/proc/$p/cgroup" 2>/dev/null)"
                        cat "/proc/$p/stack" 2>/dev/null
                done
                echo "-- the test's stderr, last lines:"
                tail -n 40 /tmp/ajvm-stderr
                echo "-- agentjail's cgroups:"
                find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d \( -name 'agentjail*' -o -name 'ajtest-*' \) |
                        while read -r d; do
                                echo "$d: procs=[$(tr '\n' ' ' <"$d/cgroup.procs" 2>/dev/null)]" \
                                        "freeze=$(cat "$d/cgroup.freeze" 2>/dev/null)" \
                                        "events=[$(tr '\n' ' ' <"$d/cgroup.events" 2>/dev/null)]"
                        done
        } 2>&1 | sed 's/^/# hung: /' >&3
}

# Runs the test file's command in its own session (so that everything it started can be
# shown and killed), at most AJVM_FILE_TIMEOUT seconds (a unit binary, which takes seconds:
# 120); 124 when it was killed for that.
run_file() {
        (cd /tmp && exec setsid -w "${cmd[@]}") >&3 2>/tmp/ajvm-stderr </dev/null &
        pid=$!
        allowed=$AJVM_FILE_TIMEOUT
        [[ $1 == unit-* ]] && ((allowed > 120)) && allowed=120
        local limit=$((SECONDS + allowed))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < limit)); do
                sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
                hung "$1" "$pid"
                live=$(ps -e -o pid=,sid=,stat= | awk -v s="$pid" '$2 == s && $1 != s && $3 !~ /^Z/' | wc -l)
                kill -KILL -- -"$pid" 2>/dev/null
                kill -KILL "$pid" 2>/dev/null
                wait "$pid"
                return 124
        fi
        live=
        wait "$pid"
}

# After a hang: criterion's runner was the only live process of the file.
runner_deadlocked() { [[ $live == 0 ]]; }

while read -r t; do
        [[ -n "$t" ]] || continue
        # unit-NAME: a criterion unit test binary (its live tests need root and a cgroup
        # tree), zz-leftovers: the suite's final leftover check, else a VM-only test file
        # (tests/vm/test-NAME.sh) or an integration file.
        case $t in
        unit-*) cmd=("$src/build/tests/test-${t#unit-}" --tap=/dev/stdout -j1 --verbose) ;;
        zz-leftovers) cmd=(bash "$src/tests/integration/check-leftovers.sh") ;;
        *) if [[ -f $src/tests/vm/test-$t.sh ]]; then
                cmd=(bash "$src/tests/vm/test-$t.sh") # needs the VM's systemd and user
        else
                cmd=(bash "$src/tests/integration/test-$t.sh")
        fi ;;
        esac
        echo "AJVM-BEGIN $t" >&3
        start=$SECONDS
        run_file "$t"
        rc=$?
        if ((rc == 124)) && [[ $t == unit-* ]] && runner_deadlocked; then
                # Criterion 2.4's runner can deadlock after a test process ended (its main
                # loop waits for the sandbox while the death callback waits for the main loop:
                # Snaipe/Criterion#468). No TAP was written, so the file runs once more and
                # that run's results are what counts; a second hang fails.
                echo "# hung: no test process was left, only criterion's runner: its known deadlock; running $t again" >&3
                run_file "$t"
                rc=$?
        fi
        if [[ $t == unit-* ]]; then
                # criterion's --verbose lines are for a hang's report only; its failures are in the TAP.
                grep -v '^\[\(----\|RUN \|PASS\|SKIP\|====\)\]' /tmp/ajvm-stderr >/tmp/ajvm-stderr.kept
                mv /tmp/ajvm-stderr.kept /tmp/ajvm-stderr
        fi
        if [[ -s /tmp/ajvm-stderr ]]; then
                head -n 200 /tmp/ajvm-stderr | sed 's/^/# stderr: /' >&3
        fi
        echo "# $t took $((SECONDS - start)) s" >&3
        echo "AJVM-END $t $rc" >&3
done </aj/tests
echo "AJVM-DONE" >&3

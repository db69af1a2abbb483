#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs in the test VM only (it sets kernel.core_pattern and kernel.modprobe, which are the
# whole host's): the kernel starts programs on the host, as root, outside the calling
# process's cgroup and namespaces, for what a process does. Nothing a jail does may start one.
#  - A crash, with a piped core_pattern (systemd-coredump, apport): the kernel ignores
#    RLIMIT_CORE for it but for the value 1. The jail's limit is 1 (limits.core false, the
#    default), which the agent cannot change (a set succeeds without effect).
#  - A socket whose protocol or type the kernel has not built in: inet_create() asks modprobe
#    for its module, before any check of the caller, on every call while none answers. The
#    filter lets through only the built-in ones.

. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

require_jail
require_root
setup_dirs

OLD_PATTERN=$(cat /proc/sys/kernel/core_pattern)
OLD_MODPROBE=$(cat /proc/sys/kernel/modprobe)
LOG=$TEST_TMP/helper.log
# helper NAME: a program that notes its runs in LOG and reads its stdin (a core) away.
helper() {
        printf '#!/bin/sh\necho "%s $*" >>"%s"\ncat >/dev/null\nexit 1\n' "$1" "$LOG" >"$TEST_TMP/$1"
        chmod 0755 "$TEST_TMP/$1"
}
helper core
helper modprobe
restore() {
        echo "$OLD_PATTERN" >/proc/sys/kernel/core_pattern
        echo "$OLD_MODPROBE" >/proc/sys/kernel/modprobe
}
trap 'restore; cleanup' EXIT
echo "|$TEST_TMP/core %P %c" >/proc/sys/kernel/core_pattern || skip_all "cannot set kernel.core_pattern"
echo "$TEST_TMP/modprobe" >/proc/sys/kernel/modprobe || skip_all "cannot set kernel.modprobe"

# runs NAME: how many times helper NAME ran, once the count has been still for half a second.
runs() {
        local n=-1 m=0 deadline=$((SECONDS + 5))
        while ((SECONDS < deadline)); do
                m=$(grep -c "^$1 " "$LOG" 2>/dev/null)
                m=${m:-0}
                [[ $m == "$n" ]] && break
                n=$m
                sleep 0.5
        done
        echo "$m"
}

SOCKETS='import socket
for p in (200, 201, 202):
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, p)
    except OSError as e:
        print("errno=%d" % e.errno)'

# Controls, on the host: RLIMIT_CORE 0 does not keep the core helper from starting, and an
# unknown protocol starts modprobe.
/bin/sh -c 'ulimit -c 0; kill -SEGV $$'
cmp_num "$(runs core)" -ge 1 "control: a crash on the host with RLIMIT_CORE 0 starts the piped core helper"
python3 -c "$SOCKETS" >/dev/null
cmp_num "$(runs modprobe)" -ge 3 "control: a socket of an unknown protocol on the host starts modprobe"
: >"$LOG"

# A script's `ulimit -c 0` and `ulimit -c unlimited` succeed in the jail, and change nothing.
run_jail -- /bin/bash -c 'for i in 1 2 3 4 5; do /bin/sh -c "kill -SEGV \$\$"; done
        ulimit -c 0; echo "zero=$?"; /bin/sh -c "kill -SEGV \$\$"
        ulimit -c unlimited; echo "unlimited=$?"; /bin/sh -c "kill -SEGV \$\$"
        echo "core=$(grep "^Max core" /proc/self/limits | tr -s " " | cut -d " " -f 5,6 | tr " " /)"; echo done'
like "$JAIL_OUT" 'done' "the jail's processes crashed (seven times)" || jail_diag
is "$(pval zero)/$(pval unlimited)" 0/0 "ulimit -c 0 and ulimit -c unlimited succeed in the jail" || jail_diag
is "$(pval core)" 1/1 "... and leave the limit at 1 byte, soft and hard" || jail_diag
is "$(runs core)" 0 "no crash in the jail started the host's core dump helper" || diag "$(cat "$LOG")"

# Started with a hard limit of 0 (limits.conf's "hard core 0"): the jail's init, in the jail's
# user namespace, could not raise it to 1 and every run failed to start; the supervisor (root
# here, CAP_SYS_RESOURCE) raises its own hard limit to 1 first.
out=$(ulimit -H -c 0 && run_jail -- /bin/sh -c 'grep "^Max core" /proc/self/limits | tr -s " " | cut -d " " -f 5,6 | tr " " /' &&
        echo "$JAIL_RC:$JAIL_OUT")
is "$out" "0:1/1" "started with a hard limit of 0, the run starts and its limit is 1 byte"

# The same without CAP_SYS_RESOURCE (a root in a container; rootless): the jail's limit can
# only be 0, which keeps no piped helper from starting, so the run does not start; with
# "limits" in allow_degraded it does, and records that.
if command -v setpriv >/dev/null; then
        : >"$LOG"
        AGENTJAIL_REAL=$AGENTJAIL
        printf '#!/bin/sh\nulimit -H -c 0 && exec setpriv --bounding-set -sys_resource -- "%s" "$@"\n' \
                "$AGENTJAIL_REAL" >"$TEST_TMP/nocap"
        chmod 0755 "$TEST_TMP/nocap"
        AGENTJAIL=$TEST_TMP/nocap
        run_jail -- /bin/true
        is "$JAIL_RC" 125 "no CAP_SYS_RESOURCE, a hard limit of 0 and a piped core_pattern: the run does not start" || jail_diag
        like "$JAIL_ERR" 'core_pattern pipes to a helper' "... and says why" || jail_diag
        like "$JAIL_ERR" 'allow_degraded' "... and how to run anyway" || jail_diag
        DEG=$(write_profile coredeg '{"extends": "default", "allow_degraded": ["limits"]}')
        run_jail -p "$DEG" -- /bin/sh -c 'grep "^Max core" /proc/self/limits | tr -s " " | cut -d " " -f 5,6 | tr " " /; kill -SEGV $$'
        is "$(head -n 1 <<<"$JAIL_OUT")" 0/0 "with limits in allow_degraded it runs, its limit 0" || jail_diag
        like "$(events_of degraded)" 'core_pattern' "... and records the degradation" || jail_diag
        cmp_num "$(runs core)" -ge 1 "... whose crash then does start the host's helper (what the record says)"
        # A hard limit of 1 or more needs no CAP_SYS_RESOURCE to be the jail's 1: the supervisor
        # took a refused prlimit() of the init's limit for a hard limit of 0, and refused this run.
        printf '#!/bin/sh\nexec setpriv --bounding-set -sys_resource -- "%s" "$@"\n' "$AGENTJAIL_REAL" >"$TEST_TMP/nocap1"
        chmod 0755 "$TEST_TMP/nocap1"
        AGENTJAIL=$TEST_TMP/nocap1
        : >"$LOG"
        run_jail -- /bin/sh -c 'grep "^Max core" /proc/self/limits | tr -s " " | cut -d " " -f 5,6 | tr " " /; kill -SEGV $$'
        is "$(head -n 1 <<<"$JAIL_OUT")" 1/1 \
                "no CAP_SYS_RESOURCE, a hard limit above 0 and a piped core_pattern: the run starts, its limit 1 byte" ||
                jail_diag
        is "$(runs core)" 0 "... and its crash starts no helper" || diag "$(cat "$LOG")"
        AGENTJAIL=$AGENTJAIL_REAL
else
        diag "no setpriv: the run without CAP_SYS_RESOURCE is not tried"
        fail "setpriv (util-linux) is installed"
fi

run_jail -- python3 -c "$SOCKETS"
is "$(pval errno)" 1 "an unknown protocol's socket is refused in the jail (EPERM)" || jail_diag
is "$(runs modprobe)" 0 "no socket of the jail started modprobe on the host" || diag "$(cat "$LOG")"

# A family the kernel has not registered is asked of modprobe in __sock_create(), for any type:
# AF_INET6 on a kernel booted with ipv6.disable=1 (AGENTJAIL_VM_APPEND), on every call. The
# filter answers EAFNOSUPPORT for it there; where the kernel has it, the socket is made.
INET6='import socket
for i in range(3):
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_STREAM).close()
        print("errno=0")
    except OSError as e:
        print("errno=%d" % e.errno)'
if grep -q '^TCPv6 ' /proc/net/protocols; then want=0; else want=97; fi
: >"$LOG"
run_jail -- python3 -c "$INET6"
is "$(pval errno)" "$want" "an AF_INET6 socket in the jail: made, or EAFNOSUPPORT where the kernel has none (errno $want here)" ||
        jail_diag
is "$(runs modprobe)" 0 "... and no modprobe on the host for it" || diag "$(cat "$LOG")"

# Not filtered (a file's first bytes, which no syscall rule sees): an exec of a format no
# handler knows has the kernel ask modprobe for "binfmt-XXXX" where it still does (kernels
# with CONFIG_MODULES). Measured for the record, not asserted: agentjail cannot refuse it.
: >"$LOG"
printf '\001\002\003\004 not a program\n' >"$WORKSPACE/unknown-format"
chmod 0755 "$WORKSPACE/unknown-format"
run_jail -- /bin/sh -c './unknown-format; ./unknown-format; ./unknown-format; echo ran'
diag "an exec of an unknown format, three times in the jail: modprobe ran $(runs modprobe) times on this kernel ($(uname -r))"
rm -f "$WORKSPACE/unknown-format"

done_testing

#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs after the whole suite: no run may have left a cgroup, a process, a mount or a
# runtime entry behind on the machine.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Run ids are 12 hex digits; anything else under agentjail/ is not a run's.
RUN_ID_RE='^[0-9a-f]{12}$'

dirs=
for d in /sys/fs/cgroup/*/agentjail/* /sys/fs/cgroup/agentjail/*; do
        [[ -d "$d" ]] || continue
        [[ "${d##*/}" =~ $RUN_ID_RE ]] && dirs+="$d "
done
is "$dirs" "" "no run cgroup dirs under /sys/fs/cgroup/*/agentjail/"

dirs=
for d in /sys/fs/cgroup/unified/agentjail/*; do
        [[ -d "$d" ]] && dirs+="$d "
done
is "$dirs" "" "nothing under /sys/fs/cgroup/unified/agentjail/"

# With no run active, not even the shared parents are left (pure v2: /sys/fs/cgroup/agentjail).
dirs=
for d in /sys/fs/cgroup/agentjail /sys/fs/cgroup/*/agentjail; do
        [[ -d "$d" ]] && dirs+="$d "
done
is "$dirs" "" "no agentjail parent cgroup is left under /sys/fs/cgroup"

procs=
for p in /proc/[0-9]*; do
        p=${p#/proc/}
        exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
        comm=$(cat "/proc/$p/comm" 2>/dev/null)
        if [[ "$exe" == "$AGENTJAIL" || "$exe" == "$PROBE" || "$exe" == */agentjail-test.*/workspace/probe ||
                "$exe" == */probe && "$comm" == probe ]]; then
                procs+="$p($exe) "
        fi
done
is "$procs" "" "no probe or agentjail processes are running"

mounts=$(grep -i agentjail /proc/self/mountinfo | awk '{ print $5 }' | tr '\n' ' ')
is "$mounts" "" "no mount mentions agentjail"

if [[ -d /run/agentjail ]]; then
        # host-ids: the pool's lock files (src/host-id-pool.h), kept, one per slot ever used at once.
        left=$(find /run/agentjail -mindepth 1 -maxdepth 1 \( -type d -o -type s \) ! -name .root ! -name host-ids \
                -printf '%f ' 2>/dev/null)
        is "$left" "" "/run/agentjail has no leftover run dirs or sockets"
        is "$(find /run/agentjail/.root -mindepth 1 -printf '%f ' 2>/dev/null)" "" \
                "the jails' shared mount point /run/agentjail/.root is empty on the host"
else
        pass "/run/agentjail does not exist"
fi

left=$(find /tmp -maxdepth 1 -name 'agentjail-test.*' -printf '%f ' 2>/dev/null)
is "$left" "" "no test temporary directories are left in /tmp"

hosts=$(ip netns list 2>/dev/null | awk '/^ajth-/ { printf "%s ", $1 }')
is "$hosts" "" "no test host network namespace (test_host_up) is left"

printf '1..%d\n' "$TAP_COUNT"
((TAP_FAILED == 0)) || exit 1
exit 0

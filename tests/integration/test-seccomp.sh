#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The default seccomp filter, live: each dangerous syscall fails with EPERM (clone3 with
# ENOSYS, so libcs fall back to clone), the everyday ones work, and every denial is
# reported as a seccomp.denied event, rate-limited under a flood.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

DENIED=(
        ptrace process_vm_readv process_vm_writev kcmp pidfd_getfd io_uring_setup
        userfaultfd bpf perf_event_open keyctl add_key request_key
        mount umount2 pivot_root chroot fsopen fsmount fspick open_tree move_mount mount_setattr
        unshare setns clone_newuser clone_newns clone_newnet
        kexec_load kexec_file_load init_module finit_module delete_module
        open_by_handle_at name_to_handle_at
        ioctl_tiocsti ioctl_tiocsti_high ioctl_tioclinux ioctl_tiocsetd
        mmap_hugetlb memfd_hugetlb shmget_hugetlb
        socket_packet socket_netlink socket_vsock socket_bluetooth
        reboot swapon acct settimeofday syslog iopl
)
ALLOWED=(getpid socket_unix socket_inet)

run_jail -- ./probe syscall "${DENIED[@]}" clone3 io_setup unknown_1000 "${ALLOWED[@]}" socket_inet6
is "$JAIL_RC" 0 "probe syscall ran in the jail" || jail_diag
out=$JAIL_OUT
dir=$JAIL_RUN_DIR

for s in "${DENIED[@]}"; do
        is "$(pval "$s" "$out")" EPERM "$s is denied with EPERM"
done
is "$(pval clone3 "$out")" ENOSYS "clone3 fails with ENOSYS (so libc falls back to clone)"
# Native AIO contexts count against fs.aio-max-nr, one counter for the whole host: a jail that
# took it all made every io_setup on the host fail (EAGAIN), root's too. ENOSYS, as on a
# kernel without AIO, is what libaio's users fall back from.
is "$(pval io_setup "$out")" ENOSYS "io_setup fails with ENOSYS (the host's AIO budget is not the jail's)"
like "$(pval unknown_1000 "$out")" '^(ENOSYS|EPERM)$' "an unknown syscall number (1000) is refused"
for s in "${ALLOWED[@]}"; do
        is "$(pval "$s" "$out")" OK "$s is allowed"
done
# Refusing AF_INET6 would break ordinary programs that probe for IPv6 support.
like "$(pval socket_inet6 "$out")" '^(OK|EAFNOSUPPORT)$' "socket(AF_INET6) is not filtered"

# --- other syscall ABIs are no way around the filter (x86-64 only). What the host does with
# them varies (no IA32 emulation: int 0x80 is SIGSEGV; no x32: ENOSYS), so the host is probed
# first, and the jail must be at least as strict: a foreign-ABI write never happens, and where
# the host runs it, the jail refuses or kills it.
if [[ "$(uname -m)" == x86_64 ]]; then
        host=$("$PROBE" abi-write)
        diag "outside the jail: $host"
        run_jail -- ./probe abi-write
        is "$JAIL_RC" 0 "abi-write ran in the jail" || jail_diag
        for abi in i386 x32; do
                is "$(pval ${abi}_effect)" no \
                        "a $abi-ABI write from the jail has no effect ($(pval ${abi}_how); host: $(pval ${abi}_how "$host"))"
                if [[ "$(pval ${abi}_effect "$host")" == yes ]]; then
                        like "$(pval ${abi}_how)" '^(EPERM|ENOSYS|SIGSYS)$' \
                                "the host runs the $abi ABI; the jail refuses or kills it"
                fi
        done
        run_jail -- ./probe syscall i386_ptrace x32_ptrace
        unlike "$(pval i386_ptrace)" '^(OK|ESRCH|EIO)$' "i386 ptrace via int 0x80 never reaches ptrace ($(pval i386_ptrace))"
        unlike "$(pval x32_ptrace)" '^(OK|ESRCH|EIO)$' "x32 ptrace never reaches ptrace ($(pval x32_ptrace))"
fi

# --- the denials are in the event chain, with names (a few, well under any rate limit)
run_jail -- ./probe syscall ptrace bpf keyctl kexec_load perf_event_open getpid socket_unix
dir=$JAIL_RUN_DIR
denied=$(events_of seccomp.denied "$dir")
cmp_num "$(count_lines "$denied")" -ge 1 "seccomp.denied events were recorded"
for s in ptrace bpf keyctl kexec_load perf_event_open; do
        ev=$(jq -c --arg s "$s" 'select(.syscall == $s)' <<<"$denied" 2>/dev/null | head -1)
        if [[ -n "$ev" ]]; then
                pass "a seccomp.denied event names $s"
        else
                fail "a seccomp.denied event names $s" "denied events: $(jq -r .syscall <<<"$denied" 2>/dev/null | tr '\n' ' ')"
        fi
done
ev=$(jq -c 'select(.syscall == "ptrace")' <<<"$denied" 2>/dev/null | head -1)
is "$(jq -r .nr <<<"$ev" 2>/dev/null)" 101 "the ptrace event has nr 101 (x86-64)"
is "$(jq -r '.args | length' <<<"$ev" 2>/dev/null)" 6 "the event carries the six arguments"
is "$(jq -r '.args[0]' <<<"$ev" 2>/dev/null)" 2 "args[0] of ptrace is PTRACE_PEEKDATA (2)"
cmp_num "$(jq -r .pid <<<"$ev" 2>/dev/null)" -gt 0 "the event carries the pid"
is "$(jq -c 'select(.syscall == "getpid" or .syscall == "socket" and .args[0] == 1)' <<<"$denied" 2>/dev/null)" "" \
        "allowed calls are not reported"
# Events are written before the verdict returns, so the chain is ordered and complete.
is "$(jq -s 'map(.seq) == [range(1; length + 1)]' "$dir/events.jsonl" 2>/dev/null)" true \
        "events seq stay 1,2,3,... with the denials in between"

# --- a tight loop of denials is rate-limited in the log, not in the filter
run_jail -- ./probe deny-loop 20000 keyctl
is "$(pval denied)" 20000 "all 20000 keyctl calls were denied with EPERM" || jail_diag
n=$(count_lines "$(events_of seccomp.denied "$JAIL_RUN_DIR")")
cmp_num "$n" -ge 1 "the flood left at least one seccomp.denied event ($n)"
cmp_num "$n" -le 1000 "the flood was rate-limited in the log ($n events for 20000 calls)"
is "$(jf .exit.status)" 0 "the run still ended normally"

# --- a denial flood from many threads at once leaves the supervisor free: each answer releases
# a thread that asks again at once, so a drain without a bound never went back to the loop (the
# wall limit fired only when the flood stopped, and `kill` got no answer)
p=$(write_profile wall3 '{"extends": "default", "limits": {"wall": "3s"}}')
t0=$SECONDS
run_jail -p "$p" -- ./probe deny-threads 400 30 kexec_load
cmp_num "$((SECONDS - t0))" -le 12 "a 400-thread denial flood of 30 s ends at the 3 s wall limit" || jail_diag
is "$(count_lines "$(events_of wall.limit)")" 1 "... with its wall.limit event"
like "$(events_of seccomp.suppressed)" '"kexec_load":[0-9]+' "... and the flood counted per syscall"
start_jail_bg -- ./probe deny-threads 400 30 kexec_load
if flood_dir=$(wait_run_dir 10) && wait_for_output "$TEST_TMP/bg.out" '^threads=' 10; then
        t0=$SECONDS
        aj kill "${flood_dir##*/}"
        is "$RC" 0 "agentjail kill answers during a 400-thread denial flood" || op_diag
        wait_exit "$BG_PID" 15
        cmp_num "$((SECONDS - t0))" -le 10 "... and the run ends"
else
        fail "a 400-thread denial flood starts" "$(cat "$TEST_TMP/bg.err")"
        kill_bg
fi

# --- RestrictSUIDSGID: no setuid/setgid file and no file capability reaches the host, from a
# root-owned workspace (the idmapped mount maps the agent to root) or through a filesystem.rw bind
PLANTS=(fchmod_4755 chmod_4755 chmod_2755 chmod_6755 fchmodat_6755 openat_creat_4755 creat_6755
        mkdir_2755 mkdirat_4755 mknod_4755 mknodat_2755)
[[ "$(uname -m)" == x86_64 ]] && PLANTS+=(fchmodat2_4755)
mkdir -p "$TEST_TMP/rwbind"
RWP=$(write_profile rwbind '{"extends": "default", "filesystem": {"rw": ["'"$TEST_TMP/rwbind"'"]}}')
for where in workspace rwbind; do
        if [[ $where == workspace ]]; then dir=$WORKSPACE/plant; else dir=$TEST_TMP/rwbind; fi
        mkdir -p "$dir"
        run_jail -p "$RWP" -- ./probe suid-plant "$dir"
        is "$JAIL_RC" 0 "$where: suid-plant ran" || jail_diag
        is "$(pval create_0755)" OK "$where: the agent can write there (a plain 0755 file)"
        for c in "${PLANTS[@]}"; do
                is "$(pval "$c")" EPERM "$where: $c is denied"
        done
        is "$(pval openat2_4755)" ENOSYS "$where: openat2 answers ENOSYS (its mode is out of the filter's reach)"
        isnt "$(pval setxattr_capability)" OK "$where: setting security.capability fails"
        isnt "$(pval fsetxattr_capability)" OK "$where: fsetxattr of security.capability fails"
        is "$(find "$dir" -perm /6000 -printf '%p %m %U\n')" "" "$where: the host has no setuid/setgid file"
        is "$(stat -c '%U %a' "$dir/target")" "$(id -un) 755" "$where: the target on the host is $(id -un)'s (the dir's owner), 0755"
        is "$("$PROBE" xattr-get "$dir/capfile" security.capability)" xattr=ENODATA \
                "$where: the host file has no security.capability"
        ev=$(events_of seccomp.denied "$JAIL_RUN_DIR" | jq -c 'select(.syscall == "chmod")' 2>/dev/null | head -1)
        is "$(jq -r .hint <<<"$ev" 2>/dev/null)" "setuid/setgid mode" "$where: the chmod denial is recorded with its reason"
done
# The `allow` list does not lift it: the rule protects the host, not the jail's shape.
ALP=$(write_profile allowchmod '{"extends": "default", "seccomp": {"allow": ["chmod", "fchmodat"]}}')
run_jail -p "$ALP" -- ./probe suid-plant "$WORKSPACE/plant"
is "$(pval chmod_4755)/$(pval fchmodat_6755)" EPERM/EPERM "seccomp.allow of chmod keeps the setuid rule"
is "$(find "$WORKSPACE/plant" -perm /6000)" "" "still no setuid file on the host"
# Ordinary modes keep working through the shell tools.
run_jail -- /bin/sh -c 'cp ./probe x && chmod 0755 x && chmod u+s x; echo "rc=$?"; ls -l x'
is "$(pval rc)" 1 "chmod u+s fails in the jail"
is "$(stat -c %a "$WORKSPACE/x")" 755 "cp + chmod 0755 worked, and no setuid bit on the host"
rm -rf "$WORKSPACE/plant" "$WORKSPACE/x"

# --- no user namespace inside the jail, even where a profile allows the syscalls: its root
# would hold CAP_SETFCAP over the agent's files, and a file capability written through the
# idmapped workspace is stored as the owner's (root's here): host root for any local user.
ANS=$(write_profile allowns '{"extends": "default", "seccomp": {"allow": ["unshare", "clone", "clone3"]}}')
run_jail -p "$ANS" -- ./probe syscall unshare clone_newuser clone_newns getpid
is "$JAIL_RC" 0 "probe syscall ran with unshare/clone allowed" || jail_diag
unlike "$(pval unshare)" '^OK$' "seccomp.allow of unshare still creates no user namespace ($(pval unshare))"
unlike "$(pval clone_newuser)" '^OK$' "seccomp.allow of clone still creates no user namespace ($(pval clone_newuser))"
is "$(pval getpid)" OK "the probe itself ran"
run_jail -p "$ANS" -- /bin/sh -c '(echo 5 >/proc/sys/user/max_user_namespaces) 2>/dev/null; echo "rc=$?"; echo "max=$(cat /proc/sys/user/max_user_namespaces)"'
isnt "$(pval rc)" 0 "the jail cannot raise its user namespace limit again"
is "$(pval max)" 0 "the jail's user namespace limit is 0"

# --- every distinct denied syscall is named, however many come back to back; repeats of
# one are limited and counted per name
run_jail -- /bin/sh -c './probe deny-loop 500 keyctl && ./probe deny-distinct'
is "$JAIL_RC" 0 "deny-distinct ran" || jail_diag
calls=$(grep '^call=' <<<"$JAIL_OUT" | sed 's/^call=//; s/ .*//')
ncalls=$(count_lines "$calls")
cmp_num "$ncalls" -ge 90 "the probe made $ncalls distinct denied calls"
is "$(pval denied "$(grep '^calls=' <<<"$JAIL_OUT" | tail -1)")" "$ncalls" "each of them failed with EPERM"
denied=$(events_of seccomp.denied "$JAIL_RUN_DIR")
missing=
while read -r c; do
        n=0
        case $c in
        socket\(*) n=${c#socket\(}; n=${n%\)}; q='select(.syscall == "socket" and .args[0] == $n)' ;;
        ioctl\(*) n=${c#ioctl\(0x}; n=$((16#${n%\)})); q='select(.syscall == "ioctl" and .args[1] % 4294967296 == $n)' ;;
        *) q='select(.syscall == $c)' ;;
        esac
        [[ -n "$(jq -c --arg c "$c" --argjson n "$n" "$q" <<<"$denied" 2>/dev/null | head -1)" ]] || missing+=" $c"
done <<<"$calls"
is "${missing:-none}" none "every distinct denied call has a seccomp.denied event naming it"
sup=$(events_of seccomp.suppressed "$JAIL_RUN_DIR")
cmp_num "$(jq -r '.by_syscall.keyctl // 0' <<<"$sup" 2>/dev/null)" -ge 400 \
        "seccomp.suppressed counts the suppressed repeats per name (keyctl)"
is "$(jq -r '[.by_syscall[]] | add' <<<"$sup" 2>/dev/null)" "$(jq -r .suppressed <<<"$sup" 2>/dev/null)" \
        "the per-name counts add up to the suppressed total"
is "$(jf '.usage.seccomp_denied_by.keyctl')" 501 \
        "run.json counts the denials per name (keyctl: 500 + 1)"
is "$(jf '.usage.seccomp_denied_by["socket(17)"]')" 1 \
        "run.json counts socket denials per family (AF_PACKET: 1)"

# --- the compiled-filter cache is authenticated: a forged entry (the one-instruction ALLOW
# program an agent with the state dir in its workspace wrote, with a header that checks out
# but for the MAC) is rebuilt, and the run is filtered
CACHE=$AGENTJAIL_STATE_DIR/cache/seccomp
SECRET=$AGENTJAIL_RUNTIME_DIR/seccomp-cache.key
run_jail -- ./probe stat "$SECRET"
is "$(pval stat)" ENOENT "the cache's secret is not visible in the jail"
is "$(stat -c '%U %a %s' "$SECRET" 2>&1)" "$(id -un) 600 32" "the secret: 32 bytes, the caller's, 0600"
rm -f "$CACHE"/*.bpf
run_jail -- ./probe syscall getpid
entries=$(ls "$CACHE"/*.bpf 2>/dev/null)
is "$(count_lines "$entries")" 1 "a run leaves its cache entry"
forge() { # FILE MACHEX: magic, version, 1 instruction, the entry's own key; then MAC and ALLOW
        local f=$1 mac=$2 key
        key=$(od -An -v -tx1 -j16 -N32 "$f" | tr -d ' \n')
        { printf 'AJSECBP2\x02\0\0\0\x01\0\0\0'
          printf "$(sed 's/../\\x&/g' <<<"$key$mac")"
          printf '\x06\0\0\0\0\0\xff\x7f'; } >"$f.forged"
        mv "$f.forged" "$f"
}
for how in plain-digest zeros; do
        for f in $entries; do
                if [[ $how == plain-digest ]]; then
                        mac=$(printf '\x06\0\0\0\0\0\xff\x7f' | sha256sum | cut -c1-64)
                else
                        mac=$(printf '0%.0s' {1..64})
                fi
                forge "$f" "$mac"
        done
        is "$(stat -c %s $entries | sort -u)" 88 "$how: every cache entry is now a forged ALLOW program"
        run_jail -- ./probe syscall ptrace unshare getpid
        is "$(pval ptrace)/$(pval unshare)/$(pval getpid)" EPERM/EPERM/OK \
                "$how: the next run is still filtered (ptrace, unshare denied)" || jail_diag
        is "$(find $entries -size 88c)" "" "$how: the forged entries were rebuilt"
done
# A cache dir others could write is not used at all.
rm -f "$CACHE"/*.bpf
chmod 0777 "$CACHE"
run_jail -- ./probe syscall ptrace getpid
is "$(pval ptrace)/$(pval getpid)" EPERM/OK "a run with an untrusted cache dir is filtered"
is "$(ls "$CACHE")" "" "and writes nothing to that cache"
chmod 0700 "$CACHE"

# --- limits.core false (the default): RLIMIT_CORE is 1 byte, below any core file and the
# kernel's mark for "no piped dump": with a piped core_pattern (systemd-coredump, apport) the
# kernel ignores the limit but for that value, and each crash in the jail started the host's
# helper as root, outside the jail's cgroup (tests/vm/test-host-helpers.sh shows it, where the
# pattern may be set). The agent cannot change it, yet a script's `ulimit -c 0` or `ulimit -c
# unlimited` succeeds (without effect) as scripts expect; a read works; a prlimit that asks for
# the old limit with its new one is refused (it would be left unfilled). With limits.core true
# it is the agent's own.
# Where this shell's hard limit is 0 and cannot be raised (no CAP_SYS_RESOURCE in the host's
# namespace) the jail's cannot be 1 either (src/jail-plan.c, jail_core_limit): it is 0 then.
if (ulimit -H -c 1) 2>/dev/null; then want=1/1; else want=0/0; fi
run_jail -- /bin/bash -c 'core() { awk -v OFS=/ "/^Max core file size/ { print \$5, \$6 }" /proc/self/limits; }
        echo "core=$(core)"
        ulimit -c 0; echo "zero=$?:$(core)"
        ulimit -c unlimited; echo "unlimited=$?:$(core)"
        echo "read=$(prlimit --core --output SOFT,HARD --noheadings | awk -v OFS=/ "{ print \$1, \$2 }")"
        python3 -c "import resource; resource.prlimit(0, resource.RLIMIT_CORE, (0, 0))" 2>/dev/null; echo "swap=$?"'
is "$(pval core)" "$want" "the jail's RLIMIT_CORE is 1 byte, soft and hard (this host: $want)" || jail_diag
is "$(pval zero)" "0:$want" "ulimit -c 0 succeeds and leaves it" || jail_diag
is "$(pval unlimited)" "0:$want" "ulimit -c unlimited succeeds and leaves it" || jail_diag
is "$(pval read)" "$want" "prlimit reads it" || jail_diag
isnt "$(pval swap)" 0 "a prlimit64 that would set it and fill in the old one is refused (Python's resource.prlimit)"
ev=$(events_of seccomp.denied "$JAIL_RUN_DIR" | jq -c 'select(.syscall == "prlimit64")' | head -1)
is "$(jq -r .hint <<<"$ev" 2>/dev/null)" "the core dump limit (limits.core is false)" \
        "the refused change is recorded with its reason" || diag "$(cat "$JAIL_RUN_DIR/events.jsonl")"
# Without CAP_SYS_RESOURCE (a container that drops it; rootless) a hard limit of 1 or more is
# still the jail's to lower to 1: the supervisor asked for the init's limit by prlimit(), which
# that capability guards, and took its refusal for a hard limit of 0 (the limit was 0, and a
# piped core_pattern refused every run).
if (ulimit -H -c 1) 2>/dev/null; then
        printf '#!/bin/sh\nexec setpriv --inh-caps=-sys_resource --bounding-set=-sys_resource -- "%s" "$@"\n' \
                "$AGENTJAIL" >"$TEST_TMP/agentjail-no-sys-resource"
        chmod +x "$TEST_TMP/agentjail-no-sys-resource"
        AGENTJAIL=$TEST_TMP/agentjail-no-sys-resource run_jail -- /bin/sh -c 'awk "/^Max core file size/ { print \"core=\" \$5 \"/\" \$6 }" /proc/self/limits'
        is "$JAIL_RC/$(pval core)" "0/1/1" "without CAP_SYS_RESOURCE the jail's RLIMIT_CORE is still 1 byte" ||
                jail_diag
else
        pass "without CAP_SYS_RESOURCE the jail's RLIMIT_CORE is still 1 byte (this shell's hard limit is 0: above)"
fi
run_jail -- /bin/bash -c 'ulimit -c 0; echo ok'
is "$JAIL_RC/$JAIL_OUT" "0/ok" "bash -c 'ulimit -c 0; echo ok' succeeds in a jail" || jail_diag
CORE=$(write_profile core '{"extends": "default", "limits": {"core": true}}')
run_jail -p "$CORE" -- /bin/sh -c 'ulimit -c 0; echo "core=$?:$(ulimit -c)"'
is "$(pval core)" "0:0" "limits.core true: the limit is the agent's to set" || jail_diag

# --- no socket of the jail has the host load a module: a protocol or type the kernel has not
# built in had inet_create() start modprobe on the host, as root, outside the jail's cgroup,
# on every call (tests/vm/test-host-helpers.sh counts them, where kernel.modprobe may be set).
# Protocol 200 has no module anywhere: nothing is loaded here even without the filter.
run_jail -- python3 -c 'import socket
for name, t, p in (("unknown", socket.SOCK_STREAM, 200), ("tcp", socket.SOCK_STREAM, 0), ("udp", socket.SOCK_DGRAM, 17)):
    try:
        socket.socket(socket.AF_INET, t, p).close()
        print(name + "=OK")
    except OSError as e:
        print("%s=%d" % (name, e.errno))'
is "$(pval unknown)/$(pval tcp)/$(pval udp)" "1/OK/OK" \
        "a socket of a protocol the kernel has not built in is refused (EPERM); TCP and UDP are not" || jail_diag
ev=$(events_of seccomp.denied "$JAIL_RUN_DIR" | jq -c 'select(.syscall == "socket")' | head -1)
is "$(jq -r .hint <<<"$ev" 2>/dev/null)" "a protocol or type the kernel would load a module for" \
        "the refusal is recorded with its reason"

# --- the filter applies to every process of the jail, including a shell's children
run_jail -- /bin/sh -c './probe syscall ptrace keyctl'
is "$(pval ptrace)" EPERM "a grandchild process is filtered too (ptrace)"
is "$(pval keyctl)" EPERM "a grandchild process is filtered too (keyctl)"

done_testing

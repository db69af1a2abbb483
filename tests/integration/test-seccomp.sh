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
        ioctl_tiocsti ioctl_tiocsti_high ioctl_tioclinux
        socket_packet socket_netlink socket_vsock socket_bluetooth
        reboot swapon acct settimeofday syslog iopl
)
ALLOWED=(getpid socket_unix socket_inet)

run_jail -- ./probe syscall "${DENIED[@]}" clone3 unknown_1000 "${ALLOWED[@]}" socket_inet6
is "$JAIL_RC" 0 "probe syscall ran in the jail" || jail_diag
out=$JAIL_OUT
dir=$JAIL_RUN_DIR

for s in "${DENIED[@]}"; do
        is "$(pval "$s" "$out")" EPERM "$s is denied with EPERM"
done
is "$(pval clone3 "$out")" ENOSYS "clone3 fails with ENOSYS (so libc falls back to clone)"
like "$(pval unknown_1000 "$out")" '^(ENOSYS|EPERM)$' "an unknown syscall number (1000) is refused"
for s in "${ALLOWED[@]}"; do
        is "$(pval "$s" "$out")" OK "$s is allowed"
done
# Refusing AF_INET6 would break ordinary programs that probe for IPv6 support.
like "$(pval socket_inet6 "$out")" '^(OK|EAFNOSUPPORT)$' "socket(AF_INET6) is not filtered"

# --- other syscall ABIs are no way around the filter (x86-64 only)
if [[ "$(uname -m)" == x86_64 ]]; then
        run_jail -- ./probe syscall i386_ptrace x32_ptrace
        like "$(pval i386_ptrace)" '^(EPERM|ENOSYS|SIGSYS)$' \
                "i386 ptrace via int 0x80 is refused or killed ($(pval i386_ptrace))"
        like "$(pval x32_ptrace)" '^(EPERM|ENOSYS|SIGSYS)$' \
                "x32 ptrace is refused or killed ($(pval x32_ptrace))"
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

# --- the filter applies to every process of the jail, including a shell's children
run_jail -- /bin/sh -c './probe syscall ptrace keyctl'
is "$(pval ptrace)" EPERM "a grandchild process is filtered too (ptrace)"
is "$(pval keyctl)" EPERM "a grandchild process is filtered too (keyctl)"

done_testing

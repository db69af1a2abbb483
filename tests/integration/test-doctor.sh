#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `agentjail doctor` on this host, as root and as an unprivileged user: it finds the
# cgroup layout the kernel has (hybrid: v1 memory/pids/cpu beside a v2 tree at
# /sys/fs/cgroup/unified; pure v2: the root's controllers, or a user's delegated
# subtree), judges a workspace on tmpfs and one on disk, the runtime dir's filesystem
# and mode, exits 1 naming what is not as a default profile needs, and leaves nothing.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root
require_jail
setup_dirs
command -v findmnt >/dev/null || skip_all "findmnt (util-linux) is missing"
command -v setpriv >/dev/null || skip_all "setpriv (util-linux) is missing"

# doctor ARGS...: as root; sets D_RC, D_OUT, D_ERR.
doctor() {
        timeout -k 5 60 "$AGENTJAIL" doctor "$@" >"$TEST_TMP/d.out" 2>"$TEST_TMP/d.err"
        D_RC=$?
        D_OUT=$(cat "$TEST_TMP/d.out")
        D_ERR=$(cat "$TEST_TMP/d.err")
}
# is_json FILE: one JSON document.
is_json() { jq -e . "$1" >/dev/null 2>&1; }
# check NAME FIELD: a field of the named check in $D_OUT (JSON).
check() { jq -r --arg n "$1" '.checks[] | select(.name == $n) | .'"$2" <<<"$D_OUT"; }

# The layout, found here without agentjail.
if [[ $(stat -f -c %T /sys/fs/cgroup) == cgroup2fs ]]; then
        MODE=unified
elif [[ -d /sys/fs/cgroup/unified && $(stat -f -c %T /sys/fs/cgroup/unified) == cgroup2fs ]]; then
        MODE=hybrid
else
        MODE=legacy
fi
TMPFS="$TEST_TMP/tmpfs"
mkdir -p "$TMPFS" "$TEST_TMP/disk-ws"
mount -t tmpfs -o mode=0755,size=16M agentjail-doctor-test "$TMPFS" || exit 1
umount_tmpfs() { umount "$TMPFS" 2>/dev/null; }
mkdir -p "$TMPFS/ws" "$TMPFS/runtime"
chmod 0711 "$TMPFS/runtime"
DISK_FS=$(findmnt -n -o FSTYPE --target "$TEST_TMP/disk-ws")
IFS='.' read -r kmaj kmin _ <<<"$(uname -r)"
# idmap_want FSTYPE: what doctor must say of idmapped mounts there (tmpfs has them from 6.3).
idmap_want() {
        if [[ $1 == tmpfs ]] && ((kmaj < 6 || (kmaj == 6 && kmin < 3))); then echo degraded; else echo OK; fi
}
MOUNTS_BEFORE=$(wc -l </proc/self/mountinfo)

# ---- as root, --json
AGENTJAIL_RUNTIME_DIR="$TMPFS/runtime" doctor --json --workspace "$TEST_TMP/disk-ws"
ok "--json is one JSON document" is_json "$TEST_TMP/d.out"
is "$(jq -r .cgroup.mode <<<"$D_OUT")" "$MODE" "the cgroup mode is the host's ($MODE)"
is "$(jq -r .rootless <<<"$D_OUT")" false "as root"
is "$(jq -r .kernel <<<"$D_OUT")" "$(uname -r)" "the kernel's release"
case $MODE in
hybrid)
        is "$(jq -r .cgroup.v2_mount <<<"$D_OUT")" /sys/fs/cgroup/unified "hybrid: the v2 tree at /sys/fs/cgroup/unified"
        for c in memory pids cpu; do
                mp=$(jq -r --arg c "$c" '.cgroup.v1[$c] // ""' <<<"$D_OUT")
                ok "hybrid: v1 $c is a cgroup v1 hierarchy ($mp)" test "$(stat -f -c %T "$mp" 2>/dev/null)" = cgroupfs
                is "$(check "cgroup $c" status)" OK "hybrid: cgroup $c is usable by root"
                like "$(check "cgroup $c" found)" "^v1 hierarchy at /sys/fs/cgroup/" "hybrid: cgroup $c is a v1 hierarchy"
        done
        ;;
unified)
        is "$(jq -r .cgroup.v2_mount <<<"$D_OUT")" /sys/fs/cgroup "pure v2: the tree at /sys/fs/cgroup"
        is "$(jq -r .cgroup.controllers <<<"$D_OUT")" "$(cat /sys/fs/cgroup/cgroup.controllers)" \
                "pure v2: the root's cgroup.controllers"
        for c in memory pids cpu; do
                want=missing
                grep -qw "$c" /sys/fs/cgroup/cgroup.controllers && want=OK
                is "$(check "cgroup $c" status)" "$want" "pure v2: cgroup $c is $want for root"
        done
        ;;
*)
        is "$(jq -r '.cgroup.v2_mount' <<<"$D_OUT")" null "legacy: no v2 tree"
        ;;
esac
is "$(check "user namespaces" status)" OK "root can make a user namespace"
is "$(check "seccomp notify" status)" OK "seccomp user notification"
like "$(check "idmapped mounts" found)" "workspace $TEST_TMP/disk-ws on $DISK_FS" \
        "the workspace's filesystem is named ($DISK_FS)"
is "$(check "idmapped mounts" status)" "$(idmap_want "$DISK_FS")" "idmapped mounts on $DISK_FS: $(idmap_want "$DISK_FS")"
# Built in, loaded, or a module that loads on first use (as a run's fsopen loads it).
if grep -qw overlay /proc/filesystems || modprobe -q -n overlay 2>/dev/null; then want=OK; else want=missing; fi
is "$(check overlayfs status)" "$want" "overlayfs: $want, as the kernel and its modules say"
is "$(check nf_tables status)" unused "nf_tables: not used by agentjail"
is "$(check landlock status)" unused "landlock: shown, not used by agentjail"
is "$(jq -r .runtime_dir.path <<<"$D_OUT")" "$TMPFS/runtime" "the runtime dir as agentjail resolves it"
is "$(jq -r .runtime_dir.fstype <<<"$D_OUT")" tmpfs "its filesystem"
is "$(check "runtime dir" status)" OK "a runtime dir on tmpfs: OK"
is "$(jq -r .state_dir.path <<<"$D_OUT")" "$AGENTJAIL_STATE_DIR" "the state dir as agentjail resolves it"
is "$(jq -r .state_dir.mode <<<"$D_OUT")" "$(stat -c %04a "$AGENTJAIL_STATE_DIR")" "its mode"
attention=$(jq -r '.attention | join(",")' <<<"$D_OUT")
if [[ -z $attention ]]; then
        is "$D_RC" 0 "everything a default profile needs is OK: exit 0"
else
        is "$D_RC" 1 "exit 1: not as a default profile needs: $attention"
fi

# ---- a workspace on tmpfs, a runtime dir on disk: the text
AGENTJAIL_RUNTIME_DIR="$TEST_TMP/disk-runtime" doctor --workspace "$TMPFS/ws"
is "$D_RC" 1 "a runtime dir on $DISK_FS: exit 1"
like "$D_OUT" "degraded  runtime dir      $TEST_TMP/disk-runtime: not there yet \(agentjail makes it\), on $DISK_FS, not tmpfs" \
        "the runtime dir on disk is degraded, with its filesystem"
like "$D_OUT" "means: every run starts slower" "and what it means"
like "$D_OUT" "Not as a default profile needs: .*runtime dir \(degraded\)" "the last line names it"
want=$(idmap_want tmpfs)
like "$D_OUT" "$want +idmapped mounts  workspace $TMPFS/ws on tmpfs" \
        "a workspace on tmpfs: idmapped mounts $want on Linux $kmaj.$kmin"
for name in kernel cgroups "user namespaces" "seccomp notify" overlayfs landlock nf_tables "state dir"; do
        like "$D_OUT" "(OK|degraded|missing|unused) +$name " "a line for $name"
done

# ---- a runtime dir others can write to
mkdir -p "$TEST_TMP/open-runtime"
chmod 0777 "$TEST_TMP/open-runtime"
AGENTJAIL_RUNTIME_DIR="$TEST_TMP/open-runtime" doctor --json
is "$(check "runtime dir" status)" missing "a runtime dir others can write to: missing"
like "$(check "runtime dir" found)" "other users can write to it" "and why"
is "$D_RC" 1 "exit 1"

# ---- usage
doctor --workspace "$TEST_TMP/no-such-dir"
is "$D_RC" 2 "a --workspace that does not exist: usage error (2)"
like "$D_ERR" "no-such-dir" "it names the directory"
doctor --bogus
is "$D_RC" 2 "an unknown option: 2"
doctor extra
is "$D_RC" 2 "a positional argument: 2"
doctor --help
is "$D_RC" 0 "--help"
like "$D_OUT" "usage: agentjail doctor" "--help prints the usage"

is "$(wc -l </proc/self/mountinfo)" "$MOUNTS_BEFORE" "the idmap probe made no mount"
ok "no probe cgroup is left" test -z "$(find /sys/fs/cgroup -maxdepth 3 -name 'agentjail-doctor.*' 2>/dev/null)"

# ---- as an unprivileged user
NB="$TEST_TMP/nobody"
mkdir -p "$NB/ws"
AJ_NB=$(agentjail_for_others) || exit 1
chown -R 65534:65534 "$NB"
# as_nobody [CGROUP] ARGS...: doctor as uid 65534 (in the v2 cgroup CGROUP when it is a
# directory); sets D_RC, D_OUT, D_ERR.
as_nobody() {
        local cg=
        if [[ -d ${1:-} ]]; then
                cg=$1
                shift
        fi
        (cd "$NB/ws" && exec timeout -k 5 60 sh -c '[ -z "$1" ] || echo $$ >"$1/cgroup.procs" || exit 99; shift;
                exec setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin HOME="$0" \
                AGENTJAIL_RUNTIME_DIR="$0/runtime" "$@"' "$NB" "$cg" "$AJ_NB" doctor "$@") \
                >"$TEST_TMP/d.out" 2>"$TEST_TMP/d.err"
        D_RC=$?
        D_OUT=$(cat "$TEST_TMP/d.out")
        D_ERR=$(cat "$TEST_TMP/d.err")
}

as_nobody --json
ok "rootless: --json is one JSON document" is_json "$TEST_TMP/d.out"
is "$(jq -r .rootless <<<"$D_OUT")" true "rootless"
is "$(jq -r .uid <<<"$D_OUT")" 65534 "as uid 65534"
is "$(jq -r .state_dir.path <<<"$D_OUT")" "$NB/.local/state/agentjail" "rootless: the state dir under its HOME"
is "$(check "idmapped mounts" status)" unused "rootless: idmapped mounts are not used"
if setpriv --reuid=65534 --regid=65534 --clear-groups unshare -U true 2>/dev/null; then
        want=OK
else
        want=missing
fi
is "$(check "user namespaces" status)" "$want" "rootless: user namespaces as unshare -U finds them ($want)"
is "$D_RC" 1 "rootless here: exit 1"
if [[ $MODE == unified ]]; then
        like "$(check "cgroup memory" found)" "is not delegated to you" "pure v2, no delegation: the cgroup is not ours"
        like "$(check "cgroup memory" fix)" "systemd-run --user --scope -p Delegate=yes agentjail run" \
                "and the fix: a delegated scope"
        # A delegated subtree as systemd makes one: the directory and its files are the user's.
        CG=/sys/fs/cgroup/agentjail-doctor-test.$$
        mkdir "$CG" && chown 65534:65534 "$CG" "$CG/cgroup.procs" "$CG/cgroup.subtree_control" "$CG/cgroup.threads"
        as_nobody "$CG" --json
        for c in memory pids cpu; do
                want=missing
                grep -qw "$c" "$CG/cgroup.controllers" && want=OK
                is "$(check "cgroup $c" status)" "$want" "a delegated subtree: cgroup $c $want"
        done
        like "$(check "cgroup memory" found)" "agentjail-doctor-test" "it judges the cgroup it was started in"
        ok "the probe's cgroup is removed" test -z "$(find "$CG" -mindepth 1 -type d)"
        rmdir "$CG"
else
        for c in memory pids cpu; do
                is "$(check "cgroup $c" status)" missing "$MODE: cgroup $c is missing for a user"
                like "$(check "cgroup $c" found)" "writable by root only" "$MODE: v1 $c is writable by root only"
        done
        like "$(check "cgroup memory" fix)" "run agentjail as root" "and what to do"
fi
as_nobody
like "$D_OUT" "agentjail doctor: as a user \(uid 65534\)" "rootless text: its first line"
like "$D_OUT" "Not as a default profile needs: cgroup memory \(missing\)" "rootless text: the last line names what is not"

umount_tmpfs
done_testing

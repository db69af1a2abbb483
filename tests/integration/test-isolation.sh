#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# What a jailed process sees under the default profile: credentials, capabilities, its
# own pid namespace, filesystem view and writability, network, hostname, and that it
# cannot reach host processes or sockets.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

ZERO_CAPS=0000000000000000
# Root-started runs of the default profile take host ids of their own from a pool that
# starts here (src/host-id-pool.h); a run's are in its run.json.
POOL_FIRST=1879048192
POOL_LAST=$((POOL_FIRST + 65535))
# A profile naming host ids (shared by its runs), for host processes of the jail's uid.
NAMED_HOST_ID=1879113000
NAMED_IDS=$(write_profile named-ids '{"extends": "default", "user": {"host_uid": 1879113000, "host_gid": 1879113000}}')

# --- credentials, capabilities, no_new_privs, seccomp
run_jail -- ./probe status
is "$JAIL_RC" 0 "probe status runs in the jail" || jail_diag
status_out=$JAIL_OUT
is "$(pval uid)" 1000 "uid is 1000"
is "$(pval gid)" 1000 "gid is 1000"
is "$(pval euid)" 1000 "euid is 1000"
for c in CapInh CapPrm CapEff CapBnd CapAmb; do
        is "$(pval $c)" "$ZERO_CAPS" "$c is all zero"
done
is "$(pval NoNewPrivs)" 1 "NoNewPrivs is 1"
is "$(pval Seccomp)" 2 "Seccomp is 2 (filter mode)"
is "$(pval hostname)" agentjail "hostname is agentjail"
is "$(pval cwd)" "$WORKSPACE" "cwd is the workspace, at its host path"

# --- pid namespace and sessions
pid=$(pval pid "$status_out")
cmp_num "$pid" -le 5 "the command's pid is small (its own pid namespace): $pid"
is "$(pval sid "$status_out")" "$pid" "the command leads its own session (sid == pid)"
is "$(pval pgid "$status_out")" "$pid" "the command leads its own process group"

run_jail -- ./probe pids
pids_out=$JAIL_OUT
n=$(count_lines "$pids_out")
cmp_num "$n" -ge 1 "/proc lists at least the probe"
cmp_num "$n" -le 4 "/proc lists only the jail's few processes (got $n)"
cmp_num "$(sort -n <<<"$pids_out" | tail -1)" -le 10 "no host pid numbers in the jail's /proc"
host_only=$$
unlike "$pids_out" "(^|"$'\n'")$host_only("$'\n'"|$)" "the test shell's pid ($host_only) is not visible"

run_jail -- ./probe zombie-parent
is "$(pval grandchild_state)" gone "an orphaned grandchild is reaped by the jail's init" || jail_diag
is "$(pval zombies)" 0 "no zombies left in the jail"

# --- filesystem view
run_jail -- ./probe stat /sys
is "$(pval stat)" ENOENT "/sys is absent"

run_jail -- ./probe ls /root
like "$JAIL_OUT" '^(ls=(ENOENT|EACCES))?$' "host /root is invisible"

run_jail -- ./probe stat /work
is "$(pval stat)" ENOENT "host /work is invisible"

run_jail -- ./probe read /var/lib/dpkg/status
unlike "$(pval read)" '^OK$' "host /var/lib/dpkg is invisible"

run_jail -- ./probe read /etc/shadow
unlike "$(pval read)" '^OK$' "/etc/shadow is not readable"

run_jail -- ./probe ls /home
home_ls=$JAIL_OUT
for h in /home/*; do
        [[ -e "$h" ]] || continue
        h=${h#/home/}
        [[ "$h" == agent ]] && continue
        unlike "$home_ls" "(^|"$'\n'")$h("$'\n'"|$)" "host home directory /home/$h is invisible"
done

run_jail -- ./probe stat "$AGENTJAIL_STATE_DIR"
is "$(pval stat)" ENOENT "agentjail's state directory is invisible"

run_jail -- ./probe ls "$TEST_TMP"
is "$JAIL_OUT" workspace "only the workspace of its parent directory is visible"

run_jail -- ./probe read /etc/os-release
is "$(pval read)" OK "system files are readable (/etc/os-release)"

run_jail -- /bin/cat /etc/passwd
like "$JAIL_OUT" '(^|'$'\n'')agent:[^:]*:1000:1000:[^:]*:/home/agent:' "/etc/passwd has agent (1000) with home /home/agent"
isnt "$JAIL_OUT" "$(cat /etc/passwd)" "/etc/passwd is generated, not the host's"
cmp_num "$(count_lines "$JAIL_OUT")" -le 5 "the generated /etc/passwd has only a few entries"

run_jail -- ./probe env
is "$(pval HOME)" /home/agent "HOME is /home/agent"

# --- writes
for p in /usr/agentjail-probe /etc/agentjail-probe /agentjail-probe /bin/agentjail-probe /var/agentjail-probe; do
        run_jail -- ./probe write "$p"
        like "$(pval write)" '^(EROFS|EACCES|EPERM|ENOENT)$' "writing $p fails ($(pval write))"
        [[ -e "$p" ]] && rm -f "$p" && fail "the write to $p reached the host"
done

rand=$RANDOM$RANDOM
run_jail -- ./probe write "$WORKSPACE/ws-file-$rand"
is "$(pval write)" OK "workspace is writable"
if [[ -f "$WORKSPACE/ws-file-$rand" ]]; then
        pass "the workspace write is visible on the host"
        is "$(stat -c %u:%g "$WORKSPACE/ws-file-$rand")" "$(stat -c %u:%g "$WORKSPACE")" \
                "the file is owned by the workspace owner on the host (idmapped)"
        is "$(cat "$WORKSPACE/ws-file-$rand")" x "the file has what the jail wrote"
else
        fail "the workspace write is visible on the host"
fi
run_jail -- ./probe stat "$WORKSPACE"
like "$JAIL_OUT" 'uid=1000 gid=1000' "inside, the workspace belongs to the agent user"

# Root's projects usually live below a 0700 directory (/root/project): the jail's user
# cannot traverse that on the host, yet the workspace must still work.
mkdir -p "$TEST_TMP/private0700/project"
chmod 0700 "$TEST_TMP/private0700"
cp "$PROBE" "$TEST_TMP/private0700/project/probe"
cd "$TEST_TMP/private0700/project" || exit 1
run_jail -- ./probe write ./in-private
is "$JAIL_RC:$(pval write)" 0:OK "a workspace below a 0700 root-owned directory works" || jail_diag
cd "$WORKSPACE" || exit 1

run_jail -- ./probe write "/tmp/agentjail-private-$rand"
is "$(pval write)" OK "/tmp is writable"
ok "the jail's /tmp is private (nothing on the host's /tmp)" test ! -e "/tmp/agentjail-private-$rand"
rm -f "/tmp/agentjail-private-$rand"

run_jail -- ./probe write "/home/agent/home-file-$rand"
is "$(pval write)" OK "\$HOME is writable"

# --- extra binds
mkdir -p "$TEST_TMP/extra-ro" "$TEST_TMP/extra-rw"
echo data >"$TEST_TMP/extra-ro/file"
run_jail --ro "$TEST_TMP/extra-ro" -- ./probe read "$TEST_TMP/extra-ro/file"
is "$(pval read):$(pval bytes)" OK:5 "--ro PATH makes a host file readable" || jail_diag
run_jail --ro "$TEST_TMP/extra-ro" -- ./probe write "$TEST_TMP/extra-ro/file"
like "$(pval write)" '^(EROFS|EACCES)$' "--ro PATH is not writable"
is "$(cat "$TEST_TMP/extra-ro/file")" data "the --ro file is unchanged on the host"
run_jail --rw "$TEST_TMP/extra-rw" -- ./probe write "$TEST_TMP/extra-rw/new"
is "$(pval write)" OK "--rw PATH is writable" || jail_diag
ok "the --rw write reached the host" test -f "$TEST_TMP/extra-rw/new"
run_jail -- ./probe stat "$TEST_TMP/extra-ro"
is "$(pval stat)" ENOENT "without --ro, the directory is not there"

# --- /dev and /proc
run_jail -- ./probe write /dev/null
is "$(pval write)" OK "/dev/null is writable"
run_jail -- ./probe read /dev/urandom-does-not-exist
is "$(pval read)" ENOENT "(control) a missing /dev node is ENOENT"
for n in /dev/mem /dev/kmsg /dev/sda /dev/vda /dev/port /dev/cpu /dev/kvm /dev/vsock /dev/userfaultfd /dev/loop-control /dev/fuse; do
        [[ -e "$n" ]] || continue
        run_jail -- ./probe stat "$n"
        is "$(pval stat)" ENOENT "host device $n is not in the jail's /dev"
done
# Every devpts instance but the host's draws on one pool (kernel.pty.max less kernel.pty.reserve,
# 3072 by default) that no cgroup divides: unbounded, one jail took it all and the next jail
# started with a terminal failed (exit 125), as would any container. The jail's instance has
# max=64, and its file limit is well above that, so the pty bound is what stops it.
run_jail -- ./probe ptys
is "$(pval ptys_stop)" ENOSPC "the jail's devpts instance runs out of ptys (ENOSPC)"
is "$(pval ptys)" 64 "a jail holds at most 64 pseudo-terminals, not the host's pool"
run_jail -- ./probe write /proc/sys/kernel/hostname
like "$(pval write)" '^(EROFS|EACCES|EPERM)$' "/proc/sys is not writable"
run_jail -- ./probe read /proc/kcore
unlike "$(pval read)" '^OK$' "/proc/kcore is not readable"

# --- environment: only what the profile passes
AGENTJAIL_TEST_SECRET="secret-$rand" LANG=C.UTF-8 run_jail -- ./probe env
unlike "$JAIL_OUT" "secret-$rand" "host environment variables do not leak into the jail"
like "$JAIL_OUT" '(^|'$'\n'')LANG=C\.UTF-8('$'\n''|$)' "LANG (in env.pass) is passed"
like "$JAIL_OUT" '(^|'$'\n'')PATH=/usr/local/bin:/usr/bin:/bin:/opt/agentjail/bin('$'\n''|$)' \
        "PATH is the profile's, then where \`agentjail meter\` is"
like "$JAIL_OUT" '(^|'$'\n'')AGENTJAIL_BROKER=/run/agentjail/broker\.sock('$'\n''|$)' "AGENTJAIL_BROKER names the broker socket"
unlike "$JAIL_OUT" '(^|'$'\n'')AGENTJAIL_STATE_DIR=' "agentjail's own settings do not leak"

# --- host uid of the jailed process
start_jail_bg -- ./probe sleep 20
if jpid=$(find_jailed "$BG_PID" probe 10); then
        pass "found the jailed probe from the host (pid $jpid)"
        uids=$(awk '/^Uid:/ { print $2, $3, $4, $5 }' "/proc/$jpid/status")
        gids=$(awk '/^Gid:/ { print $2 }' "/proc/$jpid/status")
        if ((EUID == 0)); then
                id=$(jf .host_uid "$(wait_run_dir 10)/run.json")
                cmp_num "$id" -ge "$POOL_FIRST" "run.json host_uid ($id) is in the pool of per-run ids"
                cmp_num "$id" -le "$POOL_LAST" "run.json host_uid ($id) is in the pool of per-run ids (end)"
                is "$uids" "$id $id $id $id" "the jailed process runs as the run's host uid ($id)"
                is "$gids" "$id" "the jailed process runs as the run's host gid ($id)"
        else
                is "$uids" "$EUID $EUID $EUID $EUID" "rootless: the jailed process runs as the caller's uid"
                skip "the jailed process runs as the run's host uid" "not root"
                skip "run.json host_uid is in the pool of per-run ids" "not root"
                skip "run.json host_uid is in the pool of per-run ids (end)" "not root"
                skip "the jailed process runs as the run's host gid" "not root"
        fi
        isnt "$(awk '{ print $6 }' "/proc/$jpid/stat")" "$(awk '{ print $6 }' "/proc/$BG_PID/stat")" \
                "the jailed process is in another session than agentjail"
        isnt "$(readlink "/proc/$jpid/ns/pid")" "$(readlink /proc/self/ns/pid)" "it has its own pid namespace"
        isnt "$(readlink "/proc/$jpid/ns/net")" "$(readlink /proc/self/ns/net)" "it has its own network namespace"
        isnt "$(readlink "/proc/$jpid/ns/mnt")" "$(readlink /proc/self/ns/mnt)" "it has its own mount namespace"
        isnt "$(readlink "/proc/$jpid/ns/ipc")" "$(readlink /proc/self/ns/ipc)" "it has its own ipc namespace"
        isnt "$(readlink "/proc/$jpid/ns/user")" "$(readlink /proc/self/ns/user)" "it has its own user namespace"
        isnt "$(readlink "/proc/$jpid/ns/cgroup")" "$(readlink /proc/self/ns/cgroup)" "it has its own cgroup namespace"
else
        fail "found the jailed probe from the host" "descendants: $(descendants "$BG_PID" | tr '\n' ' ')"
fi
kill_bg

# --- network
run_jail -- ./probe ifaces
is "$JAIL_OUT" "iface=lo up=1" "only lo, and it is up"

abstract="agentjail-test-$rand"
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind("\0" + sys.argv[1])
s.listen(8)
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.bind(("127.0.0.1", 0))
t.listen(8)
print("port=%d" % t.getsockname()[1], flush=True)
time.sleep(60)
' "$abstract" >"$TEST_TMP/listener.out" 2>&1 &
BG_PIDS+=($!)
if wait_for_output "$TEST_TMP/listener.out" '^port=' 10; then
        port=$(pval port "$(cat "$TEST_TMP/listener.out")")
        is "$(pval connect "$("$PROBE" connect-unix-abstract "$abstract")")" OK \
                "control: the host abstract socket accepts from the host"
        run_jail -- ./probe connect-unix-abstract "$abstract"
        like "$(pval connect)" '^(ECONNREFUSED|ENOENT|EPERM|EACCES)$' \
                "the host abstract unix socket is unreachable from the jail ($(pval connect))"
        is "$(pval connect "$("$PROBE" connect-tcp 127.0.0.1 "$port")")" OK \
                "control: the host TCP listener on 127.0.0.1:$port accepts from the host"
        run_jail -- ./probe connect-tcp 127.0.0.1 "$port"
        like "$(pval connect)" '^(ECONNREFUSED|ENETUNREACH|EPERM|EACCES|ETIMEDOUT)$' \
                "the host's 127.0.0.1:$port is unreachable from the jail ($(pval connect))"
else
        fail "started a host listener" "$(cat "$TEST_TMP/listener.out")"
fi
run_jail -- ./probe connect-tcp 1.1.1.1 443
like "$(pval connect)" '^(ENETUNREACH|EHOSTUNREACH|ECONNREFUSED|EPERM|EACCES|ETIMEDOUT)$' \
        "no route out of the jail ($(pval connect))"
run_jail -- ./probe connect-unix /run/systemd/private
like "$(pval connect)" '^(ENOENT|EACCES|ECONNREFUSED)$' "host /run sockets are not reachable by path"
kill_bg

# --- hostname
host_before=$(hostname)
run_jail -- ./probe sethostname "evil-$rand"
is "$(hostname)" "$host_before" "the host's hostname is unchanged after sethostname in the jail"
like "$(pval hostname)" "^(agentjail|evil-$rand)$" "the jail's hostname stays its own"
[[ "$(hostname)" != "$host_before" ]] && hostname "$host_before"

# --- kill(-1, SIGKILL) inside does not reach the host
# Outside a pid namespace and as root, kill(-1) would take the whole machine down: only
# run it after this very launcher proved both in a jail.
run_jail -- ./probe status
if [[ "$(pval pid)" =~ ^[0-9]+$ && "$(pval pid)" -le 5 && "$(pval euid)" =~ ^[1-9][0-9]*$ &&
        "$(pval CapEff)" == "$ZERO_CAPS" ]]; then
        kill_all_safe=1
else
        kill_all_safe=0
        fail "kill(-1) test: jail not isolated enough to run it safely (not run)" "$JAIL_OUT"
fi
((EUID == 0)) || { kill_all_safe=0; skip "kill(-1) test" "needs root for host processes of other uids"; }
((kill_all_safe)) && {
sleep 300 &
root_sleeper=$!
BG_PIDS+=("$root_sleeper")
setpriv --reuid=$NAMED_HOST_ID --regid=$NAMED_HOST_ID --clear-groups sleep 300 &
mapped_sleeper=$!
BG_PIDS+=("$mapped_sleeper")
setpriv --reuid=1000 --regid=1000 --clear-groups sleep 300 &
thousand_sleeper=$!
BG_PIDS+=("$thousand_sleeper")
sleep 0.2
run_jail -p "$NAMED_IDS" -- ./probe kill-all
is "$(pval kill_all)" sent "probe kill-all ran" || jail_diag
sleep 0.3
ok "a host process of root survives kill(-1) in the jail" kill -0 "$root_sleeper"
ok "a host process of uid $NAMED_HOST_ID (the jail's host uid) survives" kill -0 "$mapped_sleeper"
ok "a host process of uid 1000 survives" kill -0 "$thousand_sleeper"
ok "the agentjail supervisor itself survived (exit 0)" test "$JAIL_RC" -eq 0
kill_bg
}

# --- the run's runtime dir is root's alone: a host process running as the jail's host uid
# (user.host_uid: a profile that allows "host_ids" may share it with a user's subordinate
# range, and a user with newuidmap can be it) cannot reach the run's broker socket by its host path
start_jail_bg -- ./probe sleep 20
sock_up() { local i; for ((i = 0; i < 200; i++)); do [[ -S $1 ]] && return 0; sleep 0.05; done; return 1; }
if rd=$(wait_run_dir 10) && sock_up "$AGENTJAIL_RUNTIME_DIR/${rd##*/}/jail/broker.sock"; then
        rt="$AGENTJAIL_RUNTIME_DIR/${rd##*/}"
        is "$(stat -c %a "$rt")" 700 "the run's runtime dir is 0700"
        id=$(jf .host_uid "$rd/run.json")
        got=$(setpriv --reuid="$id" --regid="$id" --clear-groups /usr/bin/python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1]); print("connected")
except OSError as e:
    print(e.errno)' "$rt/jail/broker.sock" 2>&1)
        is "$got" 13 "a host process of the run's host uid ($id) cannot connect to its broker socket (EACCES)"
else
        fail "a jail for the runtime dir check starts" "$(cat "$TEST_TMP/bg.err")"
fi
kill_bg

# --- host ids someone else may run as (an account here; a user's subordinate range alike,
# unit-doctor): the run refuses them before it makes anything, unless the profile allows
# it, and then the run records it
if ((EUID == 0)); then
        P=$(write_profile shared-ids '{"extends": "default", "user": {"host_uid": 65534, "host_gid": 65534}}')
        runs_before=$(ls "$AGENTJAIL_STATE_DIR/runs" 2>/dev/null | wc -l)
        run_jail -p "$P" -- /bin/echo SHOULD-NOT-RUN
        cmp_num "$JAIL_RC" -ne 0 "a run whose host ids belong to an account is refused (exit $JAIL_RC)"
        unlike "$JAIL_OUT" 'SHOULD-NOT-RUN' "its command never ran"
        like "$JAIL_ERR" "shared-ids.json: user.host_uid 65534, host_gid 65534: someone else may run as these ids: user [^ ]+ has uid 65534 \\(/etc/passwd line [0-9]+\\)" \
                "the refusal names the profile, the field and who has the id"
        like "$JAIL_ERR" 'add "host_ids" to the profile.s "allow_degraded"' "and how to run anyway"
        is "$(ls "$AGENTJAIL_STATE_DIR/runs" 2>/dev/null | wc -l)" "$runs_before" "a refused run leaves no run dir"
        P=$(write_profile shared-ids-ok '{"extends": "default", "user": {"host_uid": 65534, "host_gid": 65534},
                "allow_degraded": ["host_ids"]}')
        run_jail -p "$P" -- /bin/echo RAN
        is "$JAIL_RC" 0 "allowed by the profile, the run starts"
        like "$JAIL_OUT" RAN "and its command runs"
        is "$(events_of degraded | jq -r 'select(.what == "host_ids") | .why')" \
                "$(awk -F: '$3 == 65534 { printf "user %s has uid 65534 (/etc/passwd line %d)", $1, NR; exit }' /etc/passwd); $(awk -F: '$3 == 65534 { printf "group %s has gid 65534 (/etc/group line %d)", $1, NR; exit }' /etc/group)" \
                "the run records the shared ids as degraded"
        is "$(jq -r '.degraded[] | select(.what == "host_ids") | .what' "$JAIL_RUN_DIR/run.json")" host_ids \
                "run.json lists it"

        # That account (uid 65534, on the host) may signal the jail's processes, as the
        # profile allowed, but must not own the jail's user namespace: its owner has every
        # capability in it (ptrace of the jail's processes, setns into it and on into the
        # jail's mounts and network), where a process of the same uid outside has none.
        start_jail_bg -p "$P" -- /bin/sleep 20
        if jpid=$(find_jailed "$BG_PID" sleep 10); then
                ns_try='
import ctypes, fcntl, os, struct, sys
try:
    fd = os.open("/proc/%s/ns/user" % sys.argv[1], os.O_RDONLY)
except OSError as e:
    sys.exit("refused: " + e.strerror)
if sys.argv[2] == "owner":
    print(struct.unpack("I", fcntl.ioctl(fd, 0xb704, bytes(4)))[0])  # NS_GET_OWNER_UID
elif ctypes.CDLL(None, use_errno=True).setns(fd, 0x10000000) == 0:  # CLONE_NEWUSER
    print("entered")
else:
    sys.exit("refused: " + os.strerror(ctypes.get_errno()))'
                is "$(/usr/bin/python3 -c "$ns_try" "$jpid" owner 2>&1)" 0 \
                        "the jail's user namespace is root's, not the shared host uid's (65534)"
                like "$(setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c "$ns_try" "$jpid" enter 2>&1)" \
                        '^refused: ' "a host process of uid 65534 cannot enter the jail's user namespace"
                like "$(setpriv --reuid=65534 --regid=65534 --clear-groups cat "/proc/$jpid/environ" 2>&1)" \
                        'Permission denied' "nor read its processes' environment (ptrace access)"
        else
                fail "a jail with shared host ids starts in the background" "$(cat "$TEST_TMP/bg.err")"
        fi
        kill_bg
fi

done_testing

#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Started by an unprivileged user: user namespaces give everything that needs no
# privilege; limits this host will not let an unprivileged user enforce make the run
# refuse to start, unless the profile allows running without them, and then the run
# says what is not enforced and records it.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_root # to become another user for the test
setup_dirs
command -v setpriv >/dev/null || skip_all "setpriv (util-linux) is missing"

NB="$TEST_TMP/nobody"
mkdir -p "$NB/ws" "$NB/state" "$NB/runtime"
cp "$PROBE" "$NB/ws/probe"
AJ_NB=$(agentjail_for_others "$NB") || exit 1
chown -R 65534:65534 "$NB"
cat >"$NB/degraded.json" <<'JSON'
{"extends": "default", "allow_degraded": ["limits"]}
JSON
chmod 0644 "$NB/degraded.json"

as_nobody() {
        (cd "$NB/ws" && timeout -k 5 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
                env -i PATH=/usr/bin:/bin HOME="$NB" AGENTJAIL_STATE_DIR="$NB/state" \
                AGENTJAIL_RUNTIME_DIR="$NB/runtime" "$AJ_NB" "$@") \
                >"$TEST_TMP/nb.out" 2>"$TEST_TMP/nb.err"
        NB_RC=$?
        NB_OUT=$(cat "$TEST_TMP/nb.out")
        NB_ERR=$(cat "$TEST_TMP/nb.err")
}

# Unprivileged user namespaces must work here for the rest to mean anything.
if ! setpriv --reuid=65534 --regid=65534 --clear-groups unshare -U true 2>/dev/null; then
        skip_all "unprivileged user namespaces are not available"
fi

as_nobody run -- ./probe status
is "$NB_RC" 125 "rootless with limits it cannot enforce: the run refuses to start (125)"
like "$NB_ERR" "Cannot enforce the profile's limits" "it says which protection is missing"
like "$NB_ERR" "allow_degraded" "and how to run without it"

as_nobody run -p "$NB/degraded.json" -- /bin/sh -c './probe status; ./probe write ./made-by-agent; ./probe ifaces'
is "$NB_RC" 0 "rootless with allow_degraded: the run starts" || diag "$NB_ERR"
like "$NB_ERR" "not enforced" "the operator is told what is not enforced"
is "$(pval CapEff "$NB_OUT")" 0000000000000000 "no capabilities"
is "$(pval NoNewPrivs "$NB_OUT")" 1 "no_new_privs"
is "$(pval Seccomp "$NB_OUT")" 2 "seccomp filter"
is "$(pval uid "$NB_OUT")" 1000 "the agent's uid inside"
like "$NB_OUT" "iface=lo up=1" "its own network namespace with lo"
unlike "$NB_OUT" "iface=eth" "no host interfaces"
is "$(stat -c %u "$NB/ws/made-by-agent" 2>/dev/null)" 65534 "files it writes belong to the invoking user"
run_dir=$(ls -td "$NB"/state/runs/*/ 2>/dev/null | head -1)
ok "the run records the degraded protection" grep -q '"type":"degraded"' "$run_dir/events.jsonl"
is "$(jq -r '.degraded[0].what' "$run_dir/run.json")" limits "run.json lists it"
is "$(jq -r '.host_uid' "$run_dir/run.json")" 65534 "run.json: the jail maps to the invoking user"
# The group is the operator's primary group, which may be shared (useradd -N: "users").
is "$(stat -c %a "$run_dir")" 700 "the run's records are the operator's alone (0700, not group-readable)"
# A profile that names host ids asks for a jail that is not the operator; a rootless jail is
# the invoking user. It ran as the invoker, the ids dropped without a word.
cat >"$NB/host-ids.json" <<'JSON'
{"extends": "default", "allow_degraded": ["limits"], "user": {"host_uid": 5000, "host_gid": 5000}}
JSON
jq '.allow_degraded += ["host_ids"]' "$NB/host-ids.json" >"$NB/host-ids-degraded.json"
chmod 0644 "$NB"/host-ids*.json
as_nobody run -p "$NB/host-ids.json" -- ./probe status
is "$NB_RC" 125 "rootless with user.host_uid in the profile: the run refuses to start (125)"
like "$NB_ERR" "user.host_uid 5000.*need agentjail started as root" "it says why"
as_nobody run -p "$NB/host-ids-degraded.json" -- ./probe status
is "$NB_RC" 0 "with host_ids in allow_degraded: the run starts" || diag "$NB_ERR"
is "$(pval uid "$NB_OUT")" 1000 "as the agent"
run_dir=$(ls -td "$NB"/state/runs/*/ 2>/dev/null | head -1)
is "$(jq -r 'select(.type == "degraded" and .what == "host_ids") | .what' "$run_dir/events.jsonl")" host_ids \
        "the run records the host ids as degraded"
is "$(jq -r '.host_uid' "$run_dir/run.json")" 65534 "run.json: the jail maps to the invoking user"

# The profile file a run was started with, inside its workspace (`-p ./x.json`, or a name
# found in ./profiles): the agent rewrote it, and the operator's next run of it was the
# agent's.
cp "$NB/degraded.json" "$NB/ws/project.json"
chown 65534:65534 "$NB/ws/project.json"
as_nobody run -p ./project.json -- /bin/sh -c 'echo "{\"extends\": \"default\", \"seccomp\": {\"allow\": [\"ptrace\"]}}" >project.json'
is "$NB_RC" 125 "a workspace holding the run's own profile file: the run refuses to start (125)"
like "$NB_ERR" "the run's profile file" "it names the profile file"
is "$(cat "$NB/ws/project.json")" "$(cat "$NB/degraded.json")" "the profile file is unchanged"
rm -f "$NB/ws/project.json"
# The same for a file its extends chain reads.
cp "$NB/degraded.json" "$NB/ws/base.json"
echo '{"extends": "./ws/base.json"}' >"$NB/top.json"
chmod 0644 "$NB/top.json" "$NB/ws/base.json"
as_nobody run -p "$NB/top.json" -- ./probe status
is "$NB_RC" 125 "a workspace holding a file the profile extends: refused (125)"
like "$NB_ERR" "base.json', the run's profile file" "it names that file"
rm -f "$NB/ws/base.json"

# /run/agentjail is the operator's directory, so the agent's too (same host uid): bound
# writable, the agent replaced the broker socket there, filled the host's /tmp and left a
# directory of mode 0 the run's end could not remove.
as_nobody run -p "$NB/degraded.json" -- /bin/sh -c './probe write /run/agentjail/planted
        ./probe connect-unix /run/agentjail/broker.sock'
is "$NB_RC" 0 "rootless: a run that tries the runtime dir ends" || diag "$NB_ERR"
is "$(pval write "$NB_OUT")" EROFS "the agent cannot write in its runtime dir (/run/agentjail)"
is "$(pval connect "$NB_OUT")" OK "but connects to its broker socket there"
ok "nothing is left in the runtime dir" test -z "$(ls -A "$NB/runtime" 2>/dev/null | grep -vx -e .root -e seccomp-cache.key)"
ok "the shared mount point is empty on the host" test -z "$(ls -A "$NB/runtime/.root" 2>/dev/null)"

# The kernel counts inotify instances and pending signals (POSIX timers) per host uid across
# user namespaces: a rootless jail's are the invoker's. A jail that took them all (128
# instances) left the user's own processes and the user's other runs without one; it gets a
# quarter of each now.
(cd "$NB/ws" && exec timeout -k 5 60 setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin \
        HOME="$NB" AGENTJAIL_STATE_DIR="$NB/state" AGENTJAIL_RUNTIME_DIR="$NB/runtime" \
        "$AJ_NB" run -p "$NB/degraded.json" -- /bin/sh -c './probe inotify-hog 30 & ./probe timer-hog 30') \
        </dev/null >"$TEST_TMP/hog.out" 2>"$TEST_TMP/hog.err" &
HOG_PID=$!
BG_PIDS+=("$HOG_PID")
if wait_for_output "$TEST_TMP/hog.out" '^timers=' 60 && wait_for_output "$TEST_TMP/hog.out" '^inotify_instances=' 10; then
        hog_out=$(cat "$TEST_TMP/hog.out")
        host_instances=$(cat /proc/sys/fs/inotify/max_user_instances)
        cmp_num "$(sed -n 's/^inotify_instances=\([0-9]*\).*/\1/p' <<<"$hog_out")" -le $((host_instances / 4)) \
                "rootless: the jail holds at most a quarter of the user's inotify instances ($host_instances)"
        host_sigpending=$(ulimit -i) # the runs' RLIMIT_SIGPENDING: ours, inherited
        cmp_num "$(sed -n 's/^timers=\([0-9]*\).*/\1/p' <<<"$hog_out")" -le $((host_sigpending / 4)) \
                "rootless: and at most a quarter of its pending signals ($host_sigpending)"
        as_nobody run -p "$NB/degraded.json" -- /bin/sh -c './probe inotify; ./probe timer'
        like "$NB_OUT" "inotify=OK" "the user's next rootless run still gets an inotify instance" || diag "$NB_ERR"
        like "$NB_OUT" "timer=OK" "and a timer"
        nb_probe=$(cd "$NB/ws" && setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c './probe inotify; ./probe timer')
        like "$nb_probe" "inotify=OK" "so does the user on the host"
        like "$nb_probe" "timer=OK" "a timer too"
else
        fail "the rootless hog started" "$(cat "$TEST_TMP/hog.out" "$TEST_TMP/hog.err")"
fi
kill -TERM "$HOG_PID" 2>/dev/null
wait_exit "$HOG_PID" 15
kill_bg

# The same for processes (RLIMIT_NPROC, per host uid): without a pids cgroup (allowed
# degraded) a fork bomb took every process the user may have; under a limit of 400 the
# jail gets 100.
(cd "$NB/ws" && timeout -k 5 60 prlimit --nproc=400:400 setpriv --reuid=65534 --regid=65534 --clear-groups \
        env -i PATH=/usr/bin:/bin HOME="$NB" AGENTJAIL_STATE_DIR="$NB/state" AGENTJAIL_RUNTIME_DIR="$NB/runtime" \
        "$AJ_NB" run -p "$NB/degraded.json" -- ./probe forkbomb 2000) >"$TEST_TMP/nb.out" 2>"$TEST_TMP/nb.err"
is "$?" 0 "rootless: a fork bomb's run ends" || diag "$(cat "$TEST_TMP/nb.err")"
cmp_num "$(sed -n 's/^forks=\([0-9]*\).*/\1/p' "$TEST_TMP/nb.out")" -lt 100 \
        "rootless: the fork bomb stops below a quarter of the user's RLIMIT_NPROC (400)"
is "$(sed -n 's/.*errno=//p' "$TEST_TMP/nb.out")" EAGAIN "it failed with EAGAIN"

# And for locked shared memory (SHM_LOCK, RLIMIT_MEMLOCK per host uid): a jail that locked
# the user's 8 MiB left the user none.
(cd "$NB/ws" && exec timeout -k 5 60 prlimit --memlock=8388608:8388608 setpriv --reuid=65534 --regid=65534 \
        --clear-groups env -i PATH=/usr/bin:/bin HOME="$NB" AGENTJAIL_STATE_DIR="$NB/state" \
        AGENTJAIL_RUNTIME_DIR="$NB/runtime" "$AJ_NB" run -p "$NB/degraded.json" -- ./probe shm-lock 8388608 30) \
        </dev/null >"$TEST_TMP/shm.out" 2>"$TEST_TMP/shm.err" &
SHM_PID=$!
BG_PIDS+=("$SHM_PID")
if wait_for_output "$TEST_TMP/shm.out" '^ready$' 30; then
        unlike "$(cat "$TEST_TMP/shm.out")" "shm_lock=OK" "rootless: the jail cannot lock the user's whole RLIMIT_MEMLOCK (8 MiB)"
        like "$(cd "$NB/ws" && prlimit --memlock=8388608:8388608 setpriv --reuid=65534 --regid=65534 --clear-groups \
                ./probe shm-lock 4096 0)" "shm_lock=OK" "the user on the host still locks a page"
        as_nobody run -p "$NB/degraded.json" -- ./probe shm-lock 1048576 0
        like "$NB_OUT" "shm_lock=OK" "and the user's next run locks 1 MiB" || diag "$NB_ERR"
else
        fail "the rootless shm-lock run started" "$(cat "$TEST_TMP/shm.out" "$TEST_TMP/shm.err")"
fi
kill -TERM "$SHM_PID" 2>/dev/null
wait_exit "$SHM_PID" 15
kill_bg

# The control socket: a rootless jail's agent has the owner's uid on the host. One in the
# jail's user namespace reaching its run's socket thawed or killed its own run; it is
# refused, while the owner outside still controls the run. (nsenter as the owner: it
# owns the jail's user namespace, so may enter it.)
(cd "$NB/ws" && exec setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin HOME="$NB" \
        AGENTJAIL_STATE_DIR="$NB/state" AGENTJAIL_RUNTIME_DIR="$NB/runtime" \
        timeout -k 5 60 "$AJ_NB" run -p "$NB/degraded.json" --name rl-live -- ./probe sleep 30) \
        </dev/null >"$TEST_TMP/rl.out" 2>"$TEST_TMP/rl.err" &
RL_PID=$!
BG_PIDS+=("$RL_PID")
JPID=$(find_jailed "$RL_PID" probe 10)
if [[ -n "$JPID" ]] && command -v nsenter >/dev/null; then
        deadline=$((SECONDS + 10))
        until ls "$NB"/runtime/*/control.sock >/dev/null 2>&1 || ((SECONDS >= deadline)); do sleep 0.05; done
        as_nobody inspect rl-live --json
        is "$(jq -r .live <<<"$NB_OUT")" true "rootless: the owner inspects the live run" || diag "$NB_ERR"
        # A raw client, as an agent would use (agentjail's own refuses sooner: from in there,
        # root's directories above the state dir are the overflow uid's, not root's).
        (timeout -k 5 30 setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin \
                nsenter --user --target "$JPID" --preserve-credentials -- /usr/bin/python3 -I -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(5)
print(s.makefile().read())  # refused at accept, before any request (sending one raced the close)
' "$(ls "$NB"/runtime/*/control.sock | head -1)") >"$TEST_TMP/nb.out" 2>"$TEST_TMP/nb.err"
        like "$(cat "$TEST_TMP/nb.out")" '"ok": *false' "rootless: kill from the jail's user namespace, with the owner's uid: refused" ||
                diag "$(cat "$TEST_TMP/nb.out" "$TEST_TMP/nb.err")"
        like "$(cat "$TEST_TMP/nb.out")" "another user namespace" "the refusal says why"
        as_nobody inspect rl-live --json
        is "$(jq -r .live <<<"$NB_OUT")" true "the run still lives"
        # Another user made the owner's runtime root first (/tmp/agentjail-UID: runs
        # refuse it, operator commands went on to use it): its socket answered "killed"
        # for a run that went on. The operator's command now refuses it.
        PY=$(PATH=/usr/bin:/bin command -v python3)
        rl_id=$(basename "$(dirname "$(ls "$NB"/runtime/*/control.sock | head -1)")")
        if [[ -n $PY ]]; then
                mkdir -p "$TEST_TMP/squat/$rl_id" && chown -R 4242:4242 "$TEST_TMP/squat"
                setpriv --reuid=4242 --regid=4242 --clear-groups "$PY" -I -c '
import os, socket, sys
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1] + "/control.sock")
os.chmod(sys.argv[1] + "/control.sock", 0o777)
s.listen(4)
while True:
    c, _ = s.accept()
    open(sys.argv[1] + "/got", "ab").write(c.recv(8192))
    c.sendall(b"{\"ok\":true}\n")
    c.close()
' "$TEST_TMP/squat/$rl_id" &
                BG_PIDS+=("$!")
                deadline=$((SECONDS + 10))
                until [[ -S $TEST_TMP/squat/$rl_id/control.sock ]] || ((SECONDS >= deadline)); do sleep 0.05; done
                (cd "$NB/ws" && timeout -k 5 30 setpriv --reuid=65534 --regid=65534 --clear-groups env -i \
                        PATH=/usr/bin:/bin HOME="$NB" AGENTJAIL_STATE_DIR="$NB/state" \
                        AGENTJAIL_RUNTIME_DIR="$TEST_TMP/squat" "$AJ_NB" kill rl-live) \
                        >"$TEST_TMP/nb.out" 2>"$TEST_TMP/nb.err"
                is "$?" 1 "rootless: kill through a runtime root another user made: refused" ||
                        diag "$(cat "$TEST_TMP/nb.out" "$TEST_TMP/nb.err")"
                like "$(cat "$TEST_TMP/nb.err")" "refusing the control socket" "the refusal names the socket"
                ok "the other user's socket got no request" test ! -s "$TEST_TMP/squat/$rl_id/got"
                as_nobody inspect rl-live --json
                is "$(jq -r .live <<<"$NB_OUT")" true "the run still lives"
        else
                skip "kill through a squatted runtime root" "python3 is missing"
        fi
        as_nobody kill rl-live
        is "$NB_RC" 0 "the owner outside kills it" || diag "$NB_ERR"
        wait_exit "$RL_PID" 15
        isnt "$WAIT_RC" 124 "and it ends"
else
        fail "a rootless jail starts for the control test" "jailed pid '${JPID}': $(head -c 500 "$TEST_TMP/rl.err")"
fi

done_testing

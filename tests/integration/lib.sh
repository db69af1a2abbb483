# SPDX-License-Identifier: Apache-2.0
# Shared helpers for the integration tests: TAP output, assertions, per-file temporary
# state, starting jails and reading what they left in the run directory.
#
# Environment (set by tests/meson.build): AGENTJAIL, PROBE, AGENTJAIL_SOURCE_DIR,
# AGENTJAIL_BUILD_DIR. AGENTJAIL_TEST_STRICT=1 turns "cannot test here" into a failure.

set -u
set -o pipefail

: "${AGENTJAIL:?AGENTJAIL must point to the built agentjail binary}"
: "${PROBE:?PROBE must point to the built probe binary}"
AGENTJAIL_SOURCE_DIR=${AGENTJAIL_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
export AGENTJAIL_SOURCE_DIR

TAP_COUNT=0
TAP_FAILED=0
TEST_TMP=
WORKSPACE=
BG_PIDS=()
BG_BEFORE=
RUN_IDS=()
# How long one jail may take before the harness gives up on it (seconds); after
# JAIL_MAX_TIMEOUTS hung runs the file bails out instead of waiting on every one.
JAIL_TIMEOUT=${JAIL_TIMEOUT:-20}
JAIL_MAX_TIMEOUTS=${JAIL_MAX_TIMEOUTS:-2}
JAIL_TIMEOUTS=0
# A factor for the timing parameters a test gives agentjail itself, where the test's own
# steps must fit in them (test-operator's approval timeout): the TCG test VM
# (tests/vm/run-in-vm.sh) sets AGENTJAIL_TEST_TIME_SCALE; 1 elsewhere.
TEST_TIME_SCALE=${AGENTJAIL_TEST_TIME_SCALE:-1}
if [[ ! $TEST_TIME_SCALE =~ ^[1-9][0-9]?$ ]]; then
        echo "Bail out! AGENTJAIL_TEST_TIME_SCALE must be an integer from 1 to 99"
        exit 1
fi

# ----------------------------------------------------------------------------- TAP

diag() {
        local line
        while IFS= read -r line; do
                printf '# %s\n' "$line"
        done <<<"$*"
}

pass() {
        TAP_COUNT=$((TAP_COUNT + 1))
        printf 'ok %d - %s\n' "$TAP_COUNT" "$1"
}

# fail DESC [DIAG...]: returns 1, and so does every assertion that failed, so that
# `is ... || jail_diag` prints the diagnostics.
fail() {
        TAP_COUNT=$((TAP_COUNT + 1))
        TAP_FAILED=$((TAP_FAILED + 1))
        printf 'not ok %d - %s\n' "$TAP_COUNT" "$1"
        shift
        local d
        for d in "$@"; do
                diag "$d"
        done
        return 1
}

skip() {
        TAP_COUNT=$((TAP_COUNT + 1))
        printf 'ok %d - %s # SKIP %s\n' "$TAP_COUNT" "$1" "$2"
}

# ok DESC CMD...: passes when CMD exits 0. What CMD prints goes to stderr, the
# test's log, not into the TAP stream on stdout.
ok() {
        local desc=$1
        shift
        if "$@" >&2; then
                pass "$desc"
        else
                fail "$desc" "command failed: $*"
        fi
}

# is ACTUAL EXPECTED DESC
is() {
        if [[ "$1" == "$2" ]]; then
                pass "$3"
        else
                fail "$3" "got:      '$1'" "expected: '$2'"
        fi
}

isnt() {
        if [[ "$1" != "$2" ]]; then
                pass "$3"
        else
                fail "$3" "got '$1', which it must not be"
        fi
}

# like ACTUAL ERE DESC
like() {
        if [[ "$1" =~ $2 ]]; then
                pass "$3"
        else
                fail "$3" "got:      '$1'" "expected to match: /$2/"
        fi
}

unlike() {
        if [[ "$1" =~ $2 ]]; then
                fail "$3" "got:      '$1'" "expected NOT to match: /$2/"
        else
                pass "$3"
        fi
}

# cmp_num A OP B DESC   (OP: -lt -le -eq -ne -ge -gt)
cmp_num() {
        local a=$1 op=$2 b=$3 r=1
        if [[ "$a" =~ ^-?[0-9]+$ && "$b" =~ ^-?[0-9]+$ ]]; then
                case $op in
                -lt) ((a < b)) && r=0 ;;
                -le) ((a <= b)) && r=0 ;;
                -eq) ((a == b)) && r=0 ;;
                -ne) ((a != b)) && r=0 ;;
                -ge) ((a >= b)) && r=0 ;;
                -gt) ((a > b)) && r=0 ;;
                esac
        fi
        if ((r == 0)); then
                pass "$4"
        else
                fail "$4" "expected: '$a' $op '$b'"
        fi
}

# Dump what the last jail said, for failed assertions.
jail_diag() {
        diag "agentjail exit status: ${JAIL_RC:-?}"
        [[ -s "${TEST_TMP}/jail.out" ]] && diag "stdout: $(head -c 2000 "${TEST_TMP}/jail.out")"
        [[ -s "${TEST_TMP}/jail.err" ]] && diag "stderr: $(head -c 2000 "${TEST_TMP}/jail.err")"
        return 0
}

done_testing() {
        check_file_leftovers
        printf '1..%d\n' "$TAP_COUNT"
        if ((TAP_FAILED > 0)); then
                diag "$TAP_FAILED of $TAP_COUNT tests failed"
                exit 1
        fi
        diag "all $TAP_COUNT tests passed"
        exit 0
}

# ------------------------------------------------------------------- environment

# Can a jail be started here at all? Root can always create user namespaces;
# otherwise unprivileged user namespaces must be enabled.
require_jail() {
        local why=
        if [[ ! -x "$AGENTJAIL" ]]; then
                why="agentjail binary '$AGENTJAIL' is missing"
        elif [[ ! -x "$PROBE" ]]; then
                why="probe binary '$PROBE' is missing"
        elif ! command -v jq >/dev/null; then
                why="jq is not installed"
        elif ((EUID != 0)); then
                if ! unshare --user --map-root-user true 2>/dev/null; then
                        why="not root and unprivileged user namespaces are unavailable"
                elif ! rootless_limits_ok; then
                        why="not root and no delegated cgroup here, so the profiles' limits cannot be enforced"
                fi
        fi
        [[ -z "$why" ]] && return 0
        skip_all "$why"
}

# skip_all WHY: this whole file cannot test here. A TAP plan of 0 says so; with
# AGENTJAIL_TEST_STRICT=1 it bails out (a failure) instead. The exit status is
# AGENTJAIL_TEST_SKIP_STATUS: 77 (the GNU convention, scripts/vm-test) unless set;
# tests/meson.build sets 0, since meson's TAP protocol reads the skip from the plan
# and counts any other non-zero status as an error.
skip_all() {
        if [[ "${AGENTJAIL_TEST_STRICT:-0}" == 1 ]]; then
                echo "Bail out! $1 (AGENTJAIL_TEST_STRICT=1)"
                exit 1
        fi
        echo "1..0 # SKIP $1"
        exit "${AGENTJAIL_TEST_SKIP_STATUS:-77}"
}

# npm_reachable PKG LOG: whether the npm registry answers for PKG within 60 s, asked twice (its output
# in LOG). A file asks first, so that an unreachable registry fails it in a minute with
# the reason, not at meson's time limit with its output and temporary files lost.
npm_reachable() {
        # Twice: one registry answer lost in a minute (seen once in CI, the next run fine)
        # should not skip what the suite is there to run.
        timeout 60 npm view "$1" version >"$2" 2>&1 || timeout 60 npm view "$1" version >"$2" 2>&1
}

# npm_why LOG: the error code npm gave, for a message.
npm_why() {
        grep -m1 -o 'code [A-Z_0-9]*' "$1" || { [[ -s $1 ]] && tail -c 200 "$1"; } || echo "no answer in 60 s"
}

# Rootless, agentjail refuses (fails closed) when it cannot enforce a profile's limits,
# which is the norm outside a delegated cgroup v2 subtree.
rootless_limits_ok() {
        local tmp err rc
        tmp=$(mktemp -d) || return 1
        mkdir "$tmp/ws" || return 1
        err=$(cd "$tmp/ws" && AGENTJAIL_STATE_DIR="$tmp/state" AGENTJAIL_RUNTIME_DIR="$tmp/runtime" \
                timeout -k 5 20 "$AGENTJAIL" run -- /bin/true 2>&1 >/dev/null)
        rc=$?
        rm -rf --one-file-system "$tmp"
        ! [[ $rc == 125 && "$err" == *"Cannot enforce the profile's limits"* ]]
}

# A copy of the agentjail binary another uid can run: the build may sit under a directory
# only root may enter (a clone in /root). It links its libraries statically, all but libc,
# so a copy runs anywhere. With HOME_DIR, the shipped profiles also go to
# HOME_DIR/.config/agentjail/profiles, where that uid's runs look first (the source
# tree's profiles/ may be out of its reach too). Prints the copy's path.
agentjail_for_others() {
        local bin="$TEST_TMP/bin/agentjail"
        if [[ ! -x $bin ]]; then
                install -d -m 0755 "$TEST_TMP/bin" && install -m 0755 "$AGENTJAIL" "$bin" || return 1
        fi
        if [[ -n ${1:-} ]]; then
                mkdir -p "$1/.config/agentjail/profiles" &&
                        cp "$AGENTJAIL_SOURCE_DIR"/profiles/*.json "$1/.config/agentjail/profiles/" || return 1
        fi
        echo "$bin"
}

require_root() {
        ((EUID == 0)) && return 0
        skip_all "these tests need root"
}

# Fresh state/runtime/workspace directories for this test file; the workspace (with a
# copy of the probe) becomes the cwd, so it is what the default profile binds.
setup_dirs() {
        TEST_TMP=$(mktemp -d /tmp/agentjail-test.XXXXXXXX) || exit 1
        # Like a project under /srv: the jail's user may traverse the parents.
        chmod 0755 "$TEST_TMP"
        trap cleanup EXIT
        trap 'exit 130' INT
        trap 'exit 143' TERM
        export AGENTJAIL_STATE_DIR="$TEST_TMP/state"
        export AGENTJAIL_RUNTIME_DIR="$TEST_TMP/runtime"
        WORKSPACE="$TEST_TMP/workspace"
        mkdir -p "$AGENTJAIL_STATE_DIR" "$AGENTJAIL_RUNTIME_DIR" "$WORKSPACE" "$TEST_TMP/profiles"
        cp "$PROBE" "$WORKSPACE/probe"
        chmod 0755 "$WORKSPACE/probe"
        cd "$WORKSPACE" || exit 1
}

# Processes still running from this test file's directories (by executable or cwd).
stray_pids() {
        local p exe cwd self=" " q=$BASHPID
        [[ -n "$TEST_TMP" ]] || return 0
        # This shell and the subshells between it and here are not strays.
        while [[ -n "$q" && "$q" != 0 ]]; do
                self+="$q "
                [[ "$q" == "$$" ]] && break
                q=$(awk '{ print $4 }' "/proc/$q/stat" 2>/dev/null)
        done
        for p in /proc/[0-9]*; do
                p=${p#/proc/}
                [[ "$self" == *" $p "* ]] && continue
                exe=$(readlink "/proc/$p/exe" 2>/dev/null) || continue
                cwd=$(readlink "/proc/$p/cwd" 2>/dev/null) || cwd=
                if [[ "$exe" == "$TEST_TMP"/* || "$exe" == "$AGENTJAIL" || "$exe" == "$PROBE" ||
                        "$cwd" == "$TEST_TMP"/* ]]; then
                        echo "$p"
                fi
        done
}

# Mount points below this file's temporary directory.
stray_mounts() {
        [[ -n "$TEST_TMP" ]] || return 0
        awk -v t="$TEST_TMP/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo
}

# cgroup directories of the runs this file started that still exist.
stray_cgroups() {
        local id d
        for id in "${RUN_IDS[@]}"; do
                for d in /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id"; do
                        [[ -d "$d" ]] && echo "$d"
                done
        done
        return 0
}

# Part of every file's plan: nothing of this file's runs may outlive them.
check_file_leftovers() {
        local procs mounts cgroups rt
        [[ -n "$TEST_TMP" ]] || return 0
        # Our own subshells must not count as strays by their cwd.
        cd / || return 0
        kill_bg
        collect_run_ids
        procs=$(wait_gone_pids 5)
        # A killed supervisor's jail is torn down asynchronously: allow it the same 5 s.
        local deadline=$((SECONDS + 5))
        while cgroups=$(stray_cgroups) && [[ -n "$cgroups" ]] && ((SECONDS < deadline)); do
                sleep 0.1
        done
        mounts=$(stray_mounts)
        # .root is the mount point every jail mounts its root on in its own namespace: it
        # stays, and must stay empty on the host. seccomp-cache.key is the seccomp cache's
        # secret, kept for the next runs.
        rt=$(find "$AGENTJAIL_RUNTIME_DIR" -mindepth 1 -maxdepth 1 ! -name .root ! -name seccomp-cache.key 2>/dev/null;
             find "$AGENTJAIL_RUNTIME_DIR/.root" -mindepth 1 -maxdepth 1 2>/dev/null)
        if [[ -z "$procs$mounts$cgroups$rt" ]]; then
                pass "no leftover processes, mounts, cgroups or runtime entries from this file"
        else
                fail "no leftover processes, mounts, cgroups or runtime entries from this file" \
                        "processes: ${procs//$'\n'/ }" "mounts: ${mounts//$'\n'/ }" \
                        "cgroups: ${cgroups//$'\n'/ }" "runtime dir: ${rt//$'\n'/ }"
        fi
}

# Stray processes, after waiting up to $1 seconds for them to go away by themselves.
wait_gone_pids() {
        local deadline=$((SECONDS + $1)) procs
        while :; do
                procs=$(stray_pids)
                [[ -z "$procs" || $SECONDS -ge $deadline ]] && break
                sleep 0.1
        done
        echo $procs
}

# Succeeds once process $1 (not a child of ours) is gone, within $2 seconds.
wait_pid_gone() {
        local deadline=$((SECONDS + $2))
        while [[ -d /proc/$1 ]] && ((SECONDS < deadline)); do
                sleep 0.1
        done
        [[ ! -d /proc/$1 ]]
}

kill_bg() {
        local p
        for p in "${BG_PIDS[@]}"; do
                kill -KILL "$p" 2>/dev/null
        done
        for p in "${BG_PIDS[@]}"; do
                wait "$p" 2>/dev/null
        done
        BG_PIDS=()
        return 0
}

cleanup() {
        local p m d id
        [[ -n "$TEST_TMP" && -d "$TEST_TMP" ]] || return 0
        cd / || true
        kill_bg
        for p in $(stray_pids); do
                kill -KILL "$p" 2>/dev/null
        done
        # A jail that outlived its supervisor must not keep its cgroup: kill what is in it
        # (cgroup.kill on v2) and remove the directories, children first.
        collect_run_ids
        for id in "${RUN_IDS[@]}"; do
                for d in /sys/fs/cgroup/unified/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id"; do
                        [[ -w "$d/cgroup.kill" ]] && echo 1 >"$d/cgroup.kill" 2>/dev/null
                done
                for d in /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id"; do
                        [[ -d "$d" ]] || continue
                        find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
                done
        done
        # Never let rm descend into a leftover bind mount of host directories.
        for m in $(stray_mounts | sort -r); do
                umount -l "$m" 2>/dev/null
        done
        if [[ -z "$(stray_mounts)" ]]; then
                rm -rf --one-file-system "$TEST_TMP"
        else
                echo "# leaving $TEST_TMP: mounts below it could not be removed" >&2
        fi
}

# --------------------------------------------------------------------- running jails

# Remember every run id seen in the state dir (for cgroup checks and cleanup).
collect_run_ids() {
        local d id known
        [[ -d "${AGENTJAIL_STATE_DIR:-}/runs" ]] || return 0
        for d in "$AGENTJAIL_STATE_DIR"/runs/*/; do
                [[ -d "$d" ]] || continue
                id=$(basename "$d")
                for known in "${RUN_IDS[@]}"; do
                        [[ "$known" == "$id" ]] && continue 2
                done
                RUN_IDS+=("$id")
        done
}

list_run_dirs() {
        local d
        for d in "$AGENTJAIL_STATE_DIR"/runs/*/; do
                [[ -d "$d" ]] && echo "${d%/}"
        done
        return 0
}

# The run directory that appeared since the listing in $1 (newest by run.json "started"
# when several did).
new_run_dir() {
        local before=$1 d best='' best_started='' started
        while IFS= read -r d; do
                [[ -n "$d" ]] || continue
                grep -qxF "$d" <<<"$before" && continue
                started=$(jq -r '.started // ""' "$d/run.json" 2>/dev/null)
                if [[ -z "$best" || "$started" > "$best_started" ]]; then
                        best=$d
                        best_started=$started
                fi
        done < <(list_run_dirs)
        echo "$best"
}

# run_jail [RUN-ARGS...] -- CMD...: runs `agentjail run RUN-ARGS -- CMD` in the workspace.
# Sets JAIL_RC, JAIL_OUT, JAIL_ERR, JAIL_RUN_DIR, JAIL_RUN_ID. stdin comes from
# $JAIL_STDIN (a file) or /dev/null.
run_jail() {
        local before
        before=$(list_run_dirs)
        timeout -k 5 "$JAIL_TIMEOUT" "$AGENTJAIL" run "$@" \
                <"${JAIL_STDIN:-/dev/null}" >"$TEST_TMP/jail.out" 2>"$TEST_TMP/jail.err"
        JAIL_RC=$?
        JAIL_OUT=$(cat "$TEST_TMP/jail.out")
        JAIL_ERR=$(cat "$TEST_TMP/jail.err")
        JAIL_RUN_DIR=$(new_run_dir "$before")
        JAIL_RUN_ID=${JAIL_RUN_DIR##*/}
        collect_run_ids
        if ((JAIL_RC == 124)); then
                JAIL_TIMEOUTS=$((JAIL_TIMEOUTS + 1))
                diag "agentjail run $* timed out after ${JAIL_TIMEOUT}s"
                if ((JAIL_TIMEOUTS >= JAIL_MAX_TIMEOUTS)); then
                        fail "agentjail run does not hang" "$JAIL_TIMEOUTS runs timed out; bailing out"
                        echo "Bail out! agentjail hangs"
                        exit 1
                fi
        fi
        return 0
}

# Start `agentjail run ARGS...` in the background with SIGINT at its default disposition
# (bash starts background jobs with SIGINT ignored). Sets BG_PID; output goes to
# $TEST_TMP/bg.out and bg.err.
start_jail_bg() {
        BG_BEFORE=$(list_run_dirs)
        env --default-signal=INT,QUIT "$AGENTJAIL" run "$@" \
                </dev/null >"$TEST_TMP/bg.out" 2>"$TEST_TMP/bg.err" &
        BG_PID=$!
        BG_PIDS+=("$BG_PID")
}

# wait_for_output FILE REGEX [SECONDS]: poll until FILE has a line matching REGEX.
wait_for_output() {
        local deadline=$((SECONDS + ${3:-10}))
        while ((SECONDS < deadline)); do
                grep -Eq "$2" "$1" 2>/dev/null && return 0
                sleep 0.05
        done
        return 1
}

# tmux_setup: a tmux server of this file's own, T running tmux on it, killed at exit. A
# missing tmux (part of scripts/setup's packages) is a broken test machine.
tmux_setup() {
        if ! command -v tmux >/dev/null; then
                fail "tmux is installed (scripts/setup installs it)"
                done_testing
        fi
        TMUX_SOCK="$TEST_TMP/tmux.sock"
        printf 'set -g remain-on-exit on\nset -g status off\nset -g history-limit 2000\n' >"$TEST_TMP/tmux.conf"
        trap 'T kill-server 2>/dev/null; cleanup' EXIT
}
T() { tmux -S "$TMUX_SOCK" -f "$TEST_TMP/tmux.conf" "$@"; }

# wait_exit PID SECONDS: wait for a background child, killing it past the deadline.
# Sets WAIT_RC (the child's status, or 124 on timeout).
wait_exit() {
        local pid=$1 deadline=$((SECONDS + $2))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
                if [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]]; then
                        break
                fi
                sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null && [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]]; then
                kill -KILL "$pid" 2>/dev/null
                wait "$pid" 2>/dev/null
                WAIT_RC=124
                return 1
        fi
        wait "$pid"
        WAIT_RC=$?
        return 0
}

# All descendants of a host pid.
descendants() {
        local kids k
        kids=$(pgrep -P "$1")
        for k in $kids; do
                echo "$k"
                descendants "$k"
        done
}

# find_jailed PARENT COMM [SECONDS]: host pid of a descendant of PARENT named COMM.
find_jailed() {
        local deadline=$((SECONDS + ${3:-10})) p
        while ((SECONDS < deadline)); do
                for p in $(descendants "$1"); do
                        if [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == "$2" ]]; then
                                echo "$p"
                                return 0
                        fi
                done
                sleep 0.05
        done
        return 1
}

# find_jailed_argv PID ARGV [SECONDS]: the first descendant of PID whose command line, its
# arguments joined by spaces, is ARGV (the same program may run in another test's jail).
find_jailed_argv() {
        local deadline=$((SECONDS + ${3:-10})) p
        while ((SECONDS < deadline)); do
                for p in $(descendants "$1"); do
                        if [[ "$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)" == "$2 " ]]; then
                                echo "$p"
                                return 0
                        fi
                done
                sleep 0.05
        done
        return 1
}

# The run directory of the jail last started by start_jail_bg (waits for its run.json).
wait_run_dir() {
        local deadline=$((SECONDS + ${1:-10})) d
        while ((SECONDS < deadline)); do
                for d in "$AGENTJAIL_STATE_DIR"/runs/*/; do
                        grep -qxF "${d%/}" <<<"$BG_BEFORE" && continue
                        if [[ -f "$d/run.json" ]]; then
                                collect_run_ids
                                echo "${d%/}"
                                return 0
                        fi
                done
                sleep 0.05
        done
        return 1
}

# ---------------------------------------------------------------------- reading results

# pval KEY [TEXT]: value of the first `KEY=value` token in TEXT (default: $JAIL_OUT).
pval() {
        local text=${2-$JAIL_OUT}
        awk -v k="$1" '{
                for (i = 1; i <= NF; i++)
                        if (index($i, k "=") == 1) { print substr($i, length(k) + 2); exit }
        }' <<<"$text"
}

# jf FILTER [FILE]: jq -r on a file of the last run (default run.json); jfc: compact JSON.
jf() {
        local file=${2:-$JAIL_RUN_DIR/run.json}
        jq -r "$1" "$file" 2>/dev/null
}

jfc() {
        local file=${2:-$JAIL_RUN_DIR/run.json}
        jq -c "$1" "$file" 2>/dev/null
}

# events_of TYPE [RUN_DIR]: the events of that type, one compact JSON per line.
events_of() {
        local dir=${2:-$JAIL_RUN_DIR}
        jq -c --arg t "$1" 'select(.type == $t)' "$dir/events.jsonl" 2>/dev/null
}

count_lines() {
        if [[ -z "$1" ]]; then
                echo 0
        else
                wc -l <<<"$1" | tr -d ' '
        fi
}

# A test profile in the file's profile dir; prints its path.
# aj ARGS...: an operator's agentjail command (not run), bounded in time; sets OUT, ERR, RC.
aj() {
        timeout -k 5 30 "$AGENTJAIL" "$@" >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
        RC=$?
        OUT=$(cat "$TEST_TMP/op.out")
        ERR=$(cat "$TEST_TMP/op.err")
}

op_diag() {
        diag "exit status: $RC"
        diag "stdout: $(head -c 1500 "$TEST_TMP/op.out")"
        diag "stderr: $(head -c 1500 "$TEST_TMP/op.err")"
}

write_profile() {
        local body=$2 path="$TEST_TMP/profiles/$1.json"
        printf '%s\n' "$body" >"$path"
        echo "$path"
}

# cgroup directories of a run (v2 unified first, then v1 controllers).
cgroup_v2_dir() {
        if [[ -d /sys/fs/cgroup/unified ]]; then
                echo "/sys/fs/cgroup/unified/agentjail/$1"
        else
                echo "/sys/fs/cgroup/agentjail/$1"
        fi
}

# A test CA (DIR/ca.pem) and a server certificate for localhost, 127.0.0.1 and IP (optional)
# signed by it (DIR/srv.pem, DIR/srv.key), made at test time: no private key is committed.
mkcert() {
        local dir=$1 san="DNS:localhost,IP:127.0.0.1${2:+,IP:$2}"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
                -subj "/CN=agentjail test CA" -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null &&
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=localhost" \
                        -keyout "$dir/srv.key" -out "$dir/srv.csr" 2>/dev/null &&
                printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" >"$dir/ext" &&
                openssl x509 -req -in "$dir/srv.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
                        -days 1 -extfile "$dir/ext" -out "$dir/srv.pem" 2>/dev/null
}

# Waits (bounded, 5 s) until FILE exists and is not empty.
wait_file() {
        local i
        for ((i = 0; i < 100; i++)); do
                [[ -s "$1" ]] && return 0
                sleep 0.05
        done
        return 1
}

# test_host_up NET: a test host in a network namespace of its own, reached over a veth pair
# (root only): its address TH_IP and this host's end TH_HOSTIP, both in NET (the first three
# parts of a documentation /24, such as 198.51.100); TH_NS names the namespace. Removed by
# test_host_down, and at exit.
test_host_up() {
        # A test file killed outright (meson's time limit sends SIGKILL) cannot remove its
        # test host: remove those whose file is gone, or their route would take this one's
        # packets. Then a /30 that no interface here has.
        local ns pid base=$((4 * ($$ % 63))) tries
        for ns in $(ip netns list 2>/dev/null | awk '/^ajth-[0-9]+/ { print $1 }'); do
                pid=${ns#ajth-}
                if ! kill -0 "$pid" 2>/dev/null; then
                        ip link del "ajh$pid" 2>/dev/null
                        ip netns del "$ns" 2>/dev/null
                fi
        done
        # Not one whose addresses are this host's already (a machine on 192.0.2.2/24 took the
        # test host's 192.0.2.2 for itself: every connection to it was refused).
        local mine
        mine=$(ip -o -4 addr show | awk '{ sub("/.*", "", $4); print $4 }')
        for ((tries = 0; tries < 63; tries++)); do
                grep -qxE "$1\.($base|$((base + 1))|$((base + 2))|$((base + 3)))" <<<"$mine" || break
                base=$(((base + 4) % 252))
        done
        TH_NS="ajth-$$" TH_VH="ajh$$" TH_VT="ajt$$"
        TH_HOSTIP="$1.$((base + 1))" TH_IP="$1.$((base + 2))"
        trap 'test_host_down; cleanup' EXIT
        ip netns add "$TH_NS" && ip link add "$TH_VH" type veth peer name "$TH_VT" &&
                ip link set "$TH_VT" netns "$TH_NS" &&
                ip addr add "$TH_HOSTIP/30" dev "$TH_VH" && ip link set "$TH_VH" up &&
                ip -n "$TH_NS" addr add "$TH_IP/30" dev "$TH_VT" && ip -n "$TH_NS" link set "$TH_VT" up &&
                ip -n "$TH_NS" link set lo up
}

# test_dns NS BIND NAME ADDRESS [--delay S] [--log FILE]: tests/helpers/test-dns.py (NAME's A
# record is ADDRESS) in network namespace NS, in the background (BG_PIDS); 0 once it listens.
test_dns() {
        local ns=$1
        shift
        ip netns exec "$ns" python3 "$AGENTJAIL_SOURCE_DIR/tests/helpers/test-dns.py" "$@" >/dev/null 2>&1 &
        BG_PIDS+=("$!")
        for _ in $(seq 100); do
                ip netns exec "$ns" ss -Hlun 'sport = :53' | grep -q . && return 0
                sleep 0.05
        done
        return 1
}

test_host_down() {
        [[ -n ${TH_NS:-} ]] || return 0
        ip link del "$TH_VH" 2>/dev/null
        ip netns del "$TH_NS" 2>/dev/null
        return 0
}

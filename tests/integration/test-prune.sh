#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `agentjail prune`: finished runs' directories removed by age (--older-than) or count
# (--keep); live runs, runs whose state is unknown, quarantined runs and overlay runs with
# pending changes kept (the last two unless asked); --dry-run removes nothing; a symlink in
# runs/ is refused, never followed; a removal that fails is exit 1; usage errors exit 2.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root # the overlay run is built in the host's user namespace
setup_dirs

AJ=$AGENTJAIL
RUNS=$AGENTJAIL_STATE_DIR/runs
cp "$AGENTJAIL_SOURCE_DIR/tests/helpers/broker-client.py" "$WORKSPACE/client.py"

# past DAYS: an RFC 3339 time DAYS days ago, as run.json writes them.
past() { date -u -d "$1 days ago" +%Y-%m-%dT%H:%M:%S.000000000Z; }
# set_ended ID DAYS: the run ended DAYS days ago, as far as its run.json says.
set_ended() {
        jq --arg t "$(past "$2")" '.ended = $t' "$RUNS/$1/run.json" >"$TEST_TMP/run.json.tmp" &&
                mv "$TEST_TMP/run.json.tmp" "$RUNS/$1/run.json"
}
# ids FILTER: the ids of a --json document's list, sorted, space-separated.
ids() { jq -r "[$1[].id] | sort | join(\" \")" <<<"$OUT"; }
sorted() { tr ' ' '\n' <<<"$*" | sort | tr '\n' ' ' | sed 's/ $//'; }

# ------------------------------------------------------------------ usage
aj prune
is "$RC" 2 "prune without a rule is a usage error (no accidental wipe)"
like "$ERR" "--older-than DURATION, --keep N or both" "and says which rules there are"
aj prune --older-than soon
is "$RC" 2 "--older-than with a bad duration: usage error"
like "$ERR" "--older-than: expected a duration" "the error names the option"
aj prune --keep -1
is "$RC" 2 "--keep with a negative count: usage error"
aj prune --keep many
is "$RC" 2 "--keep with a word: usage error"
aj prune --keep 1 stray
is "$RC" 2 "an extra argument: usage error"
aj prune --keep
is "$RC" 2 "--keep without a value: usage error"
aj prune --help
is "$RC" 0 "prune --help exits 0"
like "$OUT" "--discard-pending" "and lists the options"

aj prune --keep 0
is "$RC" 0 "an empty state dir: nothing to do, exit 0" || op_diag
like "$OUT" "removed 0 runs" "and says so"

# ------------------------------------------------------------------ the runs
# Oldest first: a quarantined run (a breach with on_breach "kill"), an overlay run with a
# pending change, an overlay run that changed nothing, three plain runs; then a live one.
QP=$(write_profile capkill '{"extends": "default", "on_breach": "kill", "meters": {"tokens": 3000}}')
run_jail -p "$QP" --name pr-breach -- python3 ./client.py tokens 10 1000 200
is "$JAIL_RC" 123 "the breached run was killed" || jail_diag
Q=$JAIL_RUN_ID
is "$(jf .state)" quarantined "and stays quarantined"

OV=$(write_profile overlay '{"extends": "default", "filesystem": {"workspace": {"path": ".", "mode": "overlay"}}}')
run_jail -p "$OV" --name pr-overlay -- /bin/sh -c 'echo work >agent-work.txt'
is "$JAIL_RC" 0 "an overlay run with a change" || jail_diag
P=$JAIL_RUN_ID
is "$(jf .workspace.changes)" pending "its changes are pending"
run_jail -p "$OV" --name pr-overlay-none -- /bin/true
is "$JAIL_RC" 0 "an overlay run that changed nothing" || jail_diag
E=$JAIL_RUN_ID

PLAIN=()
for n in a b c; do
        run_jail --name "pr-$n" -- /bin/true
        is "$JAIL_RC" 0 "a quick run pr-$n" || jail_diag
        PLAIN+=("$JAIL_RUN_ID")
done
A=${PLAIN[0]} B=${PLAIN[1]} C=${PLAIN[2]}

start_jail_bg --name pr-live -- /bin/sh -c 'while [ ! -e stop ]; do sleep 0.1; done; echo live-done'
L_DIR=$(wait_run_dir 10)
L=${L_DIR##*/}
deadline=$((SECONDS + 10))
until [[ -S "$AGENTJAIL_RUNTIME_DIR/$L/control.sock" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
ok "the live run serves its control socket" test -S "$AGENTJAIL_RUNTIME_DIR/$L/control.sock"

# A run directory whose run.json is unreadable: its state cannot be told.
U=abcdef000001
mkdir "$RUNS/$U" && echo '{"id": ' >"$RUNS/$U/run.json"

# ------------------------------------------------------------------ --dry-run
aj prune --keep 0 --dry-run
is "$RC" 0 "--dry-run exits 0" || op_diag
for id in $A $B $C $E; do
        like "$OUT" "would remove +$id +pr-" "--dry-run names $id"
done
like "$OUT" "kept +$Q +pr-breach .*quarantined" "--dry-run: the quarantined run is kept, and why"
like "$OUT" "kept +$P +pr-overlay .*pending" "--dry-run: the pending overlay run is kept, and why"
like "$OUT" "kept +$L +pr-live .*live: never pruned" "--dry-run: the live run is kept, and why"
like "$OUT" "kept +$U .*state unknown" "--dry-run: the unreadable run is kept, and why"
like "$OUT" "would remove 4 runs, freeing [0-9.]+[BKMG] \\([0-9]+ bytes\\)" "--dry-run: the total it would free"
n=0
for id in $Q $P $E $A $B $C $L $U; do [[ -d $RUNS/$id ]] && n=$((n + 1)); done
is "$n" 8 "--dry-run removed nothing"

aj prune --keep 0 --dry-run --json
is "$(jq -r .dry_run <<<"$OUT")" true "--dry-run --json says it is one"
is "$(ids .removed)" "$(sorted "$A $B $C $E")" "--dry-run --json: what would go"
is "$(jq -r --arg id "$Q" '.skipped[] | select(.id == $id) | .reason' <<<"$OUT")" quarantined \
        "--json: the quarantined run's reason"
is "$(jq -r --arg id "$L" '.skipped[] | select(.id == $id) | "\(.reason) \(.state)"' <<<"$OUT")" "live running" \
        "--json: the live run's reason and state"
cmp_num "$(jq -r .bytes_freed <<<"$OUT")" -gt 0 "--json: the bytes it would free"
is "$(jq -r '[.removed[].bytes] | add' <<<"$OUT")" "$(jq -r .bytes_freed <<<"$OUT")" "--json: the total is the runs' sum"

# ------------------------------------------------------------------ --keep
aj prune --keep 1
is "$RC" 0 "--keep 1 exits 0" || op_diag
for id in $A $B $E; do
        ok "--keep 1 removed $id" test ! -e "$RUNS/$id"
        like "$OUT" "removed +$id " "--keep 1 lists $id as removed"
done
ok "--keep 1 kept the newest finished run" test -d "$RUNS/$C"
unlike "$OUT" "$C" "the kept newest run is not listed (the rule did not choose it)"
for id in $Q $P $L $U; do
        ok "--keep 1 left $id alone" test -f "$RUNS/$id/run.json"
done
like "$OUT" "removed 3 runs, freed [0-9.]+[BKMG] \\([0-9]+ bytes\\); 5 kept \\(4 listed above with why\\)" "the total freed and what stays"
ok "the live run still runs" kill -0 "$BG_PID"

# ------------------------------------------------------------------ --older-than
set_ended "$C" 10
aj prune --older-than 7d --json
is "$RC" 0 "--older-than exits 0" || op_diag
is "$(ids .removed)" "$C" "--older-than 7d: only the run that ended 10 days ago"
is "$(jq -r '.removed[0] | "\(.time_of) \(.age_seconds >= 864000)"' <<<"$OUT")" "ended true" \
        "--json: the age is from run.json's end time"
ok "its directory is gone" test ! -e "$RUNS/$C"
is "$(ids .skipped)" "" "nothing else was old enough to be chosen"

# Quarantined and pending runs, old: kept and said why, unless asked.
set_ended "$Q" 3
set_ended "$P" 3
aj prune --older-than 1d --json
is "$(ids .removed)" "" "old quarantined and pending runs are kept by default"
is "$(jq -r '[.skipped[] | "\(.id)=\(.reason)"] | sort | join(" ")' <<<"$OUT")" \
        "$(sorted "$Q=quarantined $P=pending")" "each with its reason"
aj prune --older-than 1d --quarantined
is "$RC" 0 "--quarantined exits 0" || op_diag
ok "--quarantined removed the quarantined run" test ! -e "$RUNS/$Q"
ok "but not the pending overlay run" test -d "$RUNS/$P/workspace/upper"
aj prune --older-than 1d --discard-pending
is "$RC" 0 "--discard-pending exits 0" || op_diag
ok "--discard-pending removed the pending overlay run" test ! -e "$RUNS/$P"
ok "the workspace never got the discarded change" test ! -e "$WORKSPACE/agent-work.txt"

# ------------------------------------------------------------------ a symlink is refused
mkdir "$TEST_TMP/victim" && echo precious >"$TEST_TMP/victim/file"
S=abcdef000002
ln -s "$TEST_TMP/victim" "$RUNS/$S"
aj prune --keep 0 --json
is "$RC" 0 "a symlink in runs/ is not a failure of what was chosen" || op_diag
is "$(jq -r --arg id "$S" '.skipped[] | select(.id == $id) | .reason' <<<"$OUT")" refused "the symlink is refused"
ok "its target is untouched" test -f "$TEST_TMP/victim/file"
ok "the symlink itself is left for the operator" test -L "$RUNS/$S"
aj prune --keep 0
like "$OUT" "kept +$S .*symlink.*not followed" "the text says so"
rm -f "$RUNS/$S"

# ------------------------------------------------------------------ a removal that fails: exit 1
run_jail --name pr-mounted -- /bin/true
M=$JAIL_RUN_ID
mkdir "$RUNS/$M/mnt"
if mount --bind "$TEST_TMP/victim" "$RUNS/$M/mnt"; then
        aj prune --keep 0
        is "$RC" 1 "a run that cannot be removed fully: exit 1" || op_diag
        like "$OUT" "failed +$M " "it is listed as failed"
        like "$ERR" "cannot remove '$RUNS/$M': .*what is left is '$RUNS/.removing-$M'" \
                "and named on stderr, with what is left" || op_diag
        ok "prune never crosses a mount in a run directory" test -f "$TEST_TMP/victim/file"
        aj ps --all
        unlike "$OUT" "$M" "a half-removed run is out of sight, not a run without its record"
        umount "$RUNS/.removing-$M/mnt"
        aj prune --keep 0
        is "$RC" 0 "once the mount is gone, the next prune finishes it" || op_diag
        like "$OUT" "removed +$M .*the rest of an earlier removal" "and says so"
        ok "the run directory is gone" test ! -e "$RUNS/$M"
        ok "and its leftover" test ! -e "$RUNS/.removing-$M"
else
        fail "a bind mount in a run directory, for a removal that fails"
fi

# ------------------------------------------------------------------ the live run was never touched
ok "the live run's directory is still there" test -f "$RUNS/$L/run.json"
touch "$WORKSPACE/stop"
wait_exit "$BG_PID" 15
is "$WAIT_RC" 0 "the live run ends cleanly after all the prunes"
like "$(cat "$TEST_TMP/bg.out")" live-done "its command ran to the end"
is "$(jf .status "$RUNS/$L/run.json")" exited "its record is complete"
aj logs "$L" --verify
is "$RC" 0 "its event chain is intact" || op_diag

# A lost run (run.json says running, its supervisor is gone) has no end time: its start counts.
LOST=abcdef000003
mkdir "$RUNS/$LOST"
sh -c 'exit 0' &
dead=$!
wait "$dead"
jq --arg id "$LOST" --argjson pid "$dead" --arg s "$(past 10)" '.id = $id | .name = "pr-lost"
        | .status = "running" | .state = "running" | .supervisor_pid = $pid | .exit = null | .ended = null
        | .started = $s' "$RUNS/$L/run.json" >"$RUNS/$LOST/run.json"
aj prune --older-than 7d --json
is "$(ids .removed)" "$LOST" "--older-than: a lost run that started 10 days ago goes, the run that just ended stays"
is "$(jq -r '.removed[0] | "\(.state) \(.time_of)"' <<<"$OUT")" "lost started" "by its start time, and --json says so"

aj prune --keep 0 --json
is "$(ids .removed)" "$L" "once it ended, it may go"
is "$(ls "$RUNS")" "$U" "only the run of unknown state is left"

# ------------------------------------------------------------------ a squatted control socket
# A finished run whose runtime dir another user made, serving control.sock there (what a
# runtime root others can write allows): the socket fails the operator's checks (EPERM),
# and a socket that does not answer is no better. Either made the run "live", kept by
# prune forever. A run is live while its supervisor or watchdog holds its live.lock.
run_jail --name pr-squatted -- /bin/true
is "$JAIL_RC" 0 "a quick run pr-squatted" || jail_diag
SQ=$JAIL_RUN_ID
SQ_DIR=$AGENTJAIL_RUNTIME_DIR/$SQ
mkdir "$SQ_DIR" && chmod 0777 "$SQ_DIR" && chown 65534:65534 "$SQ_DIR"
setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1] + "/control.sock")
s.listen(16)
time.sleep(120)' "$SQ_DIR" &
SQ_PID=$!
BG_PIDS+=("$SQ_PID")
deadline=$((SECONDS + 10))
until [[ -S "$SQ_DIR/control.sock" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
ok "another user serves the finished run's control socket" test -S "$SQ_DIR/control.sock"
aj ps --all --json
is "$(jq -r --arg id "$SQ" '.runs[] | select(.id == $id) | "\(.state) \(.live)"' <<<"$OUT")" "exited false" \
        "ps: the run is not live for the socket someone else serves"
aj prune --keep 0 --json
is "$(ids .removed)" "$SQ" "prune removes the finished run whatever serves its socket" || op_diag
kill -KILL "$SQ_PID" 2>/dev/null
wait "$SQ_PID" 2>/dev/null
rm -rf "$SQ_DIR"

# ------------------------------------------------------------------ a runtime root others can write
# prune's reaps remove what dead runs left under the runtime root (their runtime dirs). A run
# refuses a runtime root others can write (their symlinks and directories may be in it), and
# prune removed under it all the same; now it refuses it too, removing nothing.
run_jail --name pr-rtroot -- /bin/true
is "$JAIL_RC" 0 "a quick run pr-rtroot" || jail_diag
RT=$JAIL_RUN_ID
mkdir "$AGENTJAIL_RUNTIME_DIR/$RT" # what the dead run left on the host
rt_mode=$(stat -c %a "$AGENTJAIL_RUNTIME_DIR")
chmod 0777 "$AGENTJAIL_RUNTIME_DIR"
aj prune --keep 0
chmod "$rt_mode" "$AGENTJAIL_RUNTIME_DIR"
is "$RC" 125 "prune refuses a runtime root others can write" || op_diag
like "$ERR" "refusing the runtime directory '$AGENTJAIL_RUNTIME_DIR': other users can write to it .*nothing was removed" \
        "... saying why"
ok "... the dead run's runtime dir stays" test -d "$AGENTJAIL_RUNTIME_DIR/$RT"
ok "... and its run directory" test -d "$RUNS/$RT"
aj prune --keep 0 --json
is "$(ids .removed)" "$RT" "the runtime root ours alone again, prune removes the run" || op_diag
ok "... and its runtime dir" test ! -e "$AGENTJAIL_RUNTIME_DIR/$RT"

# ------------------------------------------------------------------ a runtime root not there
# A runtime root missing when prune looks (/tmp/agentjail-UID after a reboot) was taken for
# "nothing to reap", then looked under by the reaps: another user who made it meanwhile, a
# symlink to a directory of ours holding names like run ids, had each of those removed. prune
# is held here (strace delays its open of a run.json, read after the look and before the
# reaps) while the other user tries; it made the root, as a run does, so the name is taken.
if ! command -v strace >/dev/null; then
        skip "a runtime root made meanwhile by another user" "no strace to hold prune"
else
        run_jail --name pr-rtgone -- /bin/true
        is "$JAIL_RC" 0 "a quick run pr-rtgone" || jail_diag
        RT=$JAIL_RUN_ID
        victim=$TEST_TMP/victim
        mkdir -p "$victim/$RT" "$RUNS/ffffffffffff"
        touch "$victim/$RT/kept"
        echo '{}' >"$RUNS/ffffffffffff/run.json"
        mv "$AGENTJAIL_RUNTIME_DIR" "$TEST_TMP/runtime.saved"
        timeout -k 5 60 strace -f -qq -o "$TEST_TMP/strace.log" -P "$RUNS/ffffffffffff/run.json" \
                -e trace=openat -e inject=openat:delay_enter=3000000 \
                "$AGENTJAIL" prune --older-than 30d >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err" &
        PR_PID=$!
        for _ in $(seq 200); do # strace logs the open as it starts delaying it
                grep -q 'ffffffffffff/run.json' "$TEST_TMP/strace.log" 2>/dev/null && break
                sleep 0.05
        done
        ok "prune was held at its read of the run records" grep -q 'ffffffffffff/run.json' "$TEST_TMP/strace.log"
        ln -s "$victim" "$AGENTJAIL_RUNTIME_DIR" 2>/dev/null
        wait "$PR_PID"
        ok "a directory of the invoker's named like a run id stays, whoever made the runtime root meanwhile" \
                test -e "$victim/$RT/kept"
        ok "... prune made the runtime root, a directory" test -d "$AGENTJAIL_RUNTIME_DIR" -a ! -L "$AGENTJAIL_RUNTIME_DIR"
        rm -rf "$RUNS/ffffffffffff"
        rm -rf "$AGENTJAIL_RUNTIME_DIR"
        mv "$TEST_TMP/runtime.saved" "$AGENTJAIL_RUNTIME_DIR"
fi

# ------------------------------------------------------------------ records that are not files
# A FIFO in place of run.json or events.jsonl (only the invoker can put one there) held prune,
# ps and inspect for ever, each waiting in open(2) for a writer: the run's records are opened
# without waiting and refused unless they are regular files, the file named. Last: --keep 0.
FI=eeeeeeeeeeee
mkdir "$RUNS/$FI"
mkfifo "$RUNS/$FI/run.json" "$RUNS/$FI/events.jsonl"
aj prune --keep 0 --json
is "$RC" 0 "prune finishes past a FIFO run.json" || op_diag
is "$(jq -r --arg id "$FI" '.skipped[] | select(.id == $id) | .reason' <<<"$OUT")" unknown \
        "... and keeps the run: its state cannot be told"
like "$(jq -r --arg id "$FI" '.skipped[] | select(.id == $id) | .message' <<<"$OUT")" \
        "'$RUNS/$FI/run.json': not a regular file" "... naming the file"
aj ps --all
is "$RC" 0 "ps finishes past it" || op_diag
like "$ERR" "run $FI: its record is unreadable: '$RUNS/$FI/run.json': not a regular file" "... naming the file"
aj inspect "$FI"
is "$RC" 0 "inspect finishes past it (and a FIFO events.jsonl)" || op_diag
aj logs "$FI"
is "$RC" 1 "logs refuses a FIFO events.jsonl" || op_diag
like "$ERR" "cannot open '$RUNS/$FI/events.jsonl': not a regular file" "... naming it"
rm -rf "${RUNS:?}/$FI"

done_testing

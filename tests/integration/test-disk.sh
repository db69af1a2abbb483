#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# limits.disk_free: the free space a run leaves where its agent writes to disk. A run that
# would start below it is refused; an agent that fills the workspace's filesystem (rw), or
# the state dir through its overlay workspace, is frozen and quarantined before the
# filesystem is full, so the run's own records are still written; a thaw is refused until
# there is room (or the reserve is lowered); 0 turns it off. Small tmpfs mounts stand in
# for the disks.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

((EUID == 0)) || { skip "disk_free" "needs root to mount the small filesystems"; done_testing; exit 0; }

# small DIR MB: a tmpfs of MB MiB on DIR (cleanup unmounts what is below TEST_TMP)
small() {
        mkdir -p "$1" && mount -t tmpfs -o "size=$2m,mode=0755" tmpfs "$1"
}
free_mb() { df -Pm "$1" | awk 'NR == 2 { print $4 }'; }

# The agent writes $1 files of $2 MiB, one every 50 ms, and says when it is done. (A file
# larger than the reserve could fill the filesystem in one go, between two looks.)
WRITER='i=0; while [ $i -lt "$1" ]; do i=$((i + 1)); head -c $(($2 * 1048576)) /dev/zero >chunk$i || exit 9; sleep 0.05; done; echo agent-done'

# --- rw: the workspace's filesystem; breach before it is full; thawed once there is room
SMALL_WS="$TEST_TMP/small-ws"
small "$SMALL_WS" 64 || { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
cp "$PROBE" "$SMALL_WS/probe"
P=$(write_profile disk24 '{"extends": "default", "limits": {"disk_free": "24M"}}')
cd "$SMALL_WS" || exit 1
start_jail_bg -p "$P" --name filler -- /bin/sh -c "$WRITER" writer 12 4
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 20; then
        pass "filling the workspace's filesystem past disk_free freezes the run"
else
        fail "filling the workspace's filesystem past disk_free freezes the run" "$(cat "$TEST_TMP/bg.err")"
fi
breach=$(events_of cap.breach "$RUN_DIR")
is "$(jq -r .cap <<<"$breach")" disk_free "the breach names the cap disk_free"
is "$(jq -r .request.filesystem <<<"$breach")" "the workspace '$SMALL_WS'" "and the filesystem"
is "$(jq -r .limit <<<"$breach" | cut -d. -f1)" 25165824 "its limit is the reserve, in bytes"
cmp_num "$(jq -r .value <<<"$breach" | cut -d. -f1)" -lt 25165824 "its value is the free space, below it"
cmp_num "$(free_mb "$SMALL_WS")" -ge 8 "the filesystem was not filled ($(free_mb "$SMALL_WS") MiB free)"
n=$(ls "$SMALL_WS" | grep -c '^chunk')
sleep 0.4
is "$(ls "$SMALL_WS" | grep -c '^chunk')" "$n" "the frozen agent writes nothing more"
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .cap "$RUN_DIR/incident.json")" disk_free "incident.json names the cap"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json says quarantined"
like "$(cat "$TEST_TMP/bg.err")" "breached its disk_free cap \\([0-9]+ < 25165824\\)" \
        "the warning says the free space went below the limit"

"$AGENTJAIL" thaw "$RUN_ID" >"$TEST_TMP/thaw.out" 2>&1
cmp_num "$?" -ne 0 "a thaw with no room made is refused"
like "$(cat "$TEST_TMP/thaw.out")" "the workspace '$SMALL_WS' has [0-9.]+ MiB free, less than the 24.0 MiB the run must leave there; thawed, it would be stopped again at once: make room first" \
        "and says how much room the run needs"
sleep 0.3
is "$(jf .state "$RUN_DIR/run.json")" quarantined "the run stays frozen"
is "$(ls "$SMALL_WS" | grep -c '^chunk')" "$n" "and wrote nothing"

rm -f "$SMALL_WS"/chunk[1-8]
"$AGENTJAIL" thaw "$RUN_ID" >"$TEST_TMP/thaw.out" 2>&1
is "$?" 0 "thaw after making room succeeds"
wait_exit "$BG_PID" 20
is "$WAIT_RC" 0 "the agent finishes once there is room"
like "$(cat "$TEST_TMP/bg.out")" agent-done "and said so"
is "$(grep -c '"type":"freeze"' "$RUN_DIR/events.jsonl")" 1 "frozen once"
kill_bg

# --- thaw --raise disk_free=0: the operator lets it run on (recorded)
rm -f "$SMALL_WS"/chunk*
start_jail_bg -p "$P" --name raised -- /bin/sh -c "$WRITER" writer 11 4
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 20 || fail "the second filler is frozen" "$(cat "$TEST_TMP/bg.err")"
"$AGENTJAIL" thaw "$RUN_ID" --raise disk_free=+64M >"$TEST_TMP/thaw.out" 2>&1
cmp_num "$?" -ne 0 "thaw --raise disk_free=+64M is refused (a reserve is set, not added to)"
like "$(cat "$TEST_TMP/thaw.out")" "disk_free: expected a size" "and says what it expects"
"$AGENTJAIL" thaw "$RUN_ID" --raise disk_free=0 >"$TEST_TMP/thaw.out" 2>&1
is "$?" 0 "thaw --raise disk_free=0 succeeds"
wait_exit "$BG_PID" 20
is "$WAIT_RC" 0 "with the reserve off the agent finishes"
ok "the raise is recorded" grep -q '"type":"caps.raise".*disk_free' "$RUN_DIR/events.jsonl"
kill_bg
rm -f "$SMALL_WS"/chunk*

# --- a run that would start below its reserve is refused; by default 5% of the filesystem
head -c $((62 * 1024 * 1024)) /dev/zero >"$SMALL_WS/fill" 2>/dev/null
run_jail -- /bin/echo SHOULD-NOT-RUN
cmp_num "$JAIL_RC" -ne 0 "a run on a filesystem with less free than 5% of it is refused (exit $JAIL_RC)"
unlike "$JAIL_OUT" SHOULD-NOT-RUN "its command never ran"
like "$JAIL_ERR" "limits.disk_free: the workspace '$SMALL_WS' has [0-9.]+ [KM]iB free, less than the 3.2 MiB the run must leave there \\(5% of it, at most 1 GiB, by default\\)" \
        "the refusal names the field, the filesystem, its free space and the reserve"
P0=$(write_profile disk0 '{"extends": "default", "limits": {"disk_free": 0}}')
run_jail -p "$P0" -- /bin/echo RAN
is "$JAIL_RC" 0 "disk_free 0: not watched, the run starts"
like "$JAIL_OUT" RAN "and its command runs"
rm -f "$SMALL_WS/fill"
# --- the bound: a watch, not a kernel limit. One write(2) of 56 MiB on the 64 MiB
# filesystem against a reserve of 24 MiB: the call in flight at the look goes on below the
# reserve until it ends (a freeze lets it finish) or is cut (a kill's SIGKILL stops it).
# (docs/profiles.md, limits.disk_free)
rm -f "$SMALL_WS"/chunk* "$SMALL_WS/fill"
ONE_WRITE='import mmap, os
m = mmap.mmap(-1, 56 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=mmap.PROT_READ)
fd = os.open("one", os.O_WRONLY | os.O_CREAT, 0o644)
print("wrote", os.write(fd, m), flush=True)'
for on in kill freeze; do
        P=$(write_profile "disk24-$on" "{\"extends\": \"default\", \"limits\": {\"disk_free\": \"24M\"}, \"on_breach\": \"$on\"}")
        start_jail_bg -p "$P" -- python3 -c "$ONE_WRITE"
        RUN_DIR=$(wait_run_dir 10)
        wait_for_output "$RUN_DIR/events.jsonl" '"type":"(freeze|kill)"' 20
        wait_for_output "$RUN_DIR/run.json" '"quarantined"' 10
        free=$(free_mb "$SMALL_WS")
        if [[ $on == kill ]]; then
                wait_exit "$BG_PID" 20
                # Cut, not finished: the whole write leaves about 8 MiB free (what the freeze
                # case below sees). How far below the reserve the cut comes is what the write
                # copies between the look and the SIGKILL, up to 5 ms of it: 1 to 5 MiB here on
                # tmpfs, more on a busy machine (CI saw 19 MiB left).
                cmp_num "$free" -ge 16 "on_breach kill: SIGKILL cuts the one write in flight, far from its end (${free} MiB free of 24)"
        else
                # (the write may still be copying when the freeze is recorded)
                deadline=$((SECONDS + 5))
                while ((free >= 16 && SECONDS < deadline)); do
                        sleep 0.1
                        free=$(free_mb "$SMALL_WS")
                done
                cmp_num "$free" -lt 16 "on_breach freeze: the one write in flight finishes below the reserve (${free} MiB free of 24)"
                "$AGENTJAIL" kill "${RUN_DIR##*/}" >/dev/null 2>&1
                wait_exit "$BG_PID" 20
        fi
        is "$(jf .state "$RUN_DIR/run.json")" quarantined "on_breach $on: the run's record says quarantined"
        rm -f "$SMALL_WS/one"
done
kill_bg
cd "$WORKSPACE" || exit 1
umount "$SMALL_WS"

# --- overlay: the upper layer is in the state dir; the run's records keep their room
SMALL_STATE="$TEST_TMP/small-state"
small "$SMALL_STATE" 64 || { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
OV=$(write_profile ov '{"extends": "default", "filesystem": {"workspace": {"mode": "overlay"}}}')
saved_state=$AGENTJAIL_STATE_DIR
export AGENTJAIL_STATE_DIR="$SMALL_STATE"
start_jail_bg -p "$OV" --name ovfill -- /bin/sh -c "$WRITER" writer 80 1
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 20; then
        pass "filling the state dir through an overlay workspace freezes the run"
else
        fail "filling the state dir through an overlay workspace freezes the run" "$(cat "$TEST_TMP/bg.err")"
fi
is "$(jq -r .request.filesystem <<<"$(events_of cap.breach "$RUN_DIR")")" \
        "the overlay of the workspace '$WORKSPACE' (its upper layer, in the run directory)" \
        "the breach names the overlay's upper layer"
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json is still written: quarantined"
"$AGENTJAIL" kill "$RUN_ID" >/dev/null 2>&1
wait_exit "$BG_PID" 20
is "$WAIT_RC" 123 "killed by the operator: exit 123"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "the ended run's record says quarantined"
ok "its events verify" "$AGENTJAIL" logs "$RUN_ID" --verify
ok "the workspace itself was not written" test ! -e "$WORKSPACE/chunk1"
"$AGENTJAIL" discard "$RUN_ID" >/dev/null 2>&1
kill_bg
export AGENTJAIL_STATE_DIR="$saved_state"
umount "$SMALL_STATE"

# --- one write fills the state dir through the overlay before disk_free looks: the room kept
# for the records (records.room) still takes the breach's events, incident.json and run.json
small "$SMALL_STATE" 64 || { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
export AGENTJAIL_STATE_DIR="$SMALL_STATE"
# One write(2) of all that is free: tmpfs's fallocate gives every page back when it fails, on
# ENOSPC (the supervisor's records took a page after the df) or EINTR (the breach's freeze
# arrived while it allocated: 62 MiB free again, seen once under load); a write is cut short
# only by a fatal signal, and on ENOSPC keeps what it wrote.
FILL='dd if=/dev/zero of=big bs="$(df -B1 --output=avail . | tail -1)" count=1 iflag=fullblock 2>/dev/null
[ -s big ] || exit 9; echo filled; sleep 30'
start_jail_bg -p "$OV" --name onewrite -- /bin/sh -c "$FILL"
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"quarantine"' 20; then
        pass "one fallocate filling the state dir through an overlay workspace quarantines the run"
else
        fail "one fallocate filling the state dir through an overlay workspace quarantines the run" \
                "$(cat "$TEST_TMP/bg.err")"
fi
cmp_num "$(($(stat -c %s "$RUN_DIR/workspace/upper/big" 2>/dev/null || echo 0) >> 20))" -ge 55 \
        "the agent's one write took all the free space"
cmp_num "$(free_mb "$SMALL_STATE")" -le 2 "what is free is the room the records were kept ($(free_mb "$SMALL_STATE") MiB)"
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .cap "$RUN_DIR/incident.json")" disk_free "incident.json is written, in the room kept for the records"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json is written: quarantined"
is "$(jq -r '[.[] | .cap] | join(" ")' <<<"$(events_of cap.breach "$RUN_DIR" | jq -s .)")" disk_free \
        "the breach is recorded once"
"$AGENTJAIL" kill "$RUN_ID" >/dev/null 2>&1
wait_exit "$BG_PID" 20
is "$WAIT_RC" 123 "killed by the operator: exit 123"
is "$(jf .state "$RUN_DIR/run.json")" quarantined "the ended run's record says quarantined"
is "$(jf .events.end "$RUN_DIR/run.json")" run.exit "run.json anchors the chain at run.exit"
ok "its events verify" "$AGENTJAIL" logs "$RUN_ID" --verify
ok "the records' room is gone with the run" test ! -e "$RUN_DIR/records.room"
"$AGENTJAIL" discard "$RUN_ID" >/dev/null 2>&1
kill_bg
# Unwatched (disk_free 0), the state dir filled, and then the supervisor killed: its watchdog
# writes supervisor.lost and the anchor in the room, which nothing had used yet.
OV0=$(write_profile ov0 '{"extends": "default", "filesystem": {"workspace": {"mode": "overlay"}},
        "limits": {"disk_free": 0}}')
start_jail_bg -p "$OV0" --name onewrite-lost -- /bin/sh -c "$FILL"
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
wait_for_output "$TEST_TMP/bg.out" filled 20 || fail "the unwatched filler fills the state dir" "$(cat "$TEST_TMP/bg.err")"
is "$(free_mb "$SMALL_STATE")" 0 "the state dir is full"
kill -KILL "$(jf .supervisor_pid "$RUN_DIR/run.json")"
wait_exit "$BG_PID" 20
for _ in $(seq 100); do
        [[ $(jf .events.end "$RUN_DIR/run.json") == supervisor.lost ]] && break
        sleep 0.05
done
is "$(jf .events.end "$RUN_DIR/run.json")" supervisor.lost "the supervisor killed on the full disk: the watchdog anchors the chain at supervisor.lost"
ok "its events verify" "$AGENTJAIL" logs "$RUN_ID" --verify
rm -rf "$RUN_DIR"
kill_bg
export AGENTJAIL_STATE_DIR="$saved_state"
umount "$SMALL_STATE"

# --- a mount inside the workspace goes into the jail with it (a recursive bind): watched too
small "$SMALL_STATE" 64 || { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
small "$SMALL_STATE/sub" 16 || { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
cd "$SMALL_STATE" || exit 1
start_jail_bg --name subfill -- /bin/sh -c "cd sub && $WRITER" writer 16 1
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 20; then
        pass "filling a filesystem mounted inside the workspace freezes the run"
else
        fail "filling a filesystem mounted inside the workspace freezes the run" "$(cat "$TEST_TMP/bg.err")"
fi
is "$(jq -r .request.filesystem <<<"$(events_of cap.breach "$RUN_DIR")")" \
        "the mount '$SMALL_STATE/sub' in the workspace '$SMALL_STATE'" "the breach names the mount"
"$AGENTJAIL" kill "$RUN_ID" >/dev/null 2>&1
wait_exit "$BG_PID" 20
kill_bg
cd "$WORKSPACE" || exit 1
umount "$SMALL_STATE/sub"
umount "$SMALL_STATE"

# --- inodes: empty files cost no bytes, but a filesystem has only so many; the state dir
# through an overlay workspace's upper layer keeps 5% of its inodes for the run's records
mkdir -p "$SMALL_STATE" && mount -t tmpfs -o size=64m,nr_inodes=2000,mode=0755 tmpfs "$SMALL_STATE" ||
        { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
export AGENTJAIL_STATE_DIR="$SMALL_STATE"
start_jail_bg -p "$OV" --name inodes -- /bin/sh -c \
        'i=0; while [ $i -lt 3000 ]; do i=$((i + 1)); touch f$i 2>/dev/null || exit 9; done; echo agent-done'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 20; then
        pass "making empty files until the state dir is short of inodes freezes the run"
else
        fail "making empty files until the state dir is short of inodes freezes the run" "$(cat "$TEST_TMP/bg.err")"
fi
breach=$(events_of cap.breach "$RUN_DIR")
is "$(jq -r .request.short_of <<<"$breach")" inodes "the breach says it is short of inodes"
is "$(jq -r .limit <<<"$breach" | cut -d. -f1)" 100 "its limit is the inode reserve (5% of 2000)"
cmp_num "$(df -Pi "$SMALL_STATE" | awk 'NR == 2 { print $4 }')" -gt 0 "the filesystem still has free inodes"
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json is still written: quarantined"
"$AGENTJAIL" thaw "$RUN_ID" >"$TEST_TMP/thaw.out" 2>&1
cmp_num "$?" -ne 0 "a thaw with no inodes freed is refused"
like "$(cat "$TEST_TMP/thaw.out")" "has [0-9]+ free inodes, fewer than the 100 \\(5% of them, at most 1048576\\) the run must leave there; thawed, it would be stopped again at once: remove files first" \
        "and says how many inodes the run needs"
"$AGENTJAIL" kill "$RUN_ID" >/dev/null 2>&1
wait_exit "$BG_PID" 20
is "$(jf .state "$RUN_DIR/run.json")" quarantined "the ended run's record says quarantined"
ok "its events verify" "$AGENTJAIL" logs "$RUN_ID" --verify
"$AGENTJAIL" discard "$RUN_ID" >/dev/null 2>&1
kill_bg
export AGENTJAIL_STATE_DIR="$saved_state"
umount "$SMALL_STATE"

# --- an rw workspace elsewhere: the run directory is watched still (the agent's output is
# logged there, up to logs.output_bytes, more than this state dir has)
small "$SMALL_STATE" 48 || { fail "a small tmpfs can be mounted" "mount failed"; done_testing; exit 1; }
export AGENTJAIL_STATE_DIR="$SMALL_STATE"
start_jail_bg --name outfill -- /bin/sh -c \
        'i=0; while [ $i -lt 60 ]; do i=$((i + 1)); head -c 1048576 /dev/zero || exit 9; sleep 0.05; done; echo agent-done >&2'
RUN_DIR=$(wait_run_dir 10)
RUN_ID=${RUN_DIR##*/}
if wait_for_output "$RUN_DIR/events.jsonl" '"type":"freeze"' 20; then
        pass "logging the agent's output until the state dir is nearly full freezes the run"
else
        fail "logging the agent's output until the state dir is nearly full freezes the run" "$(cat "$TEST_TMP/bg.err")"
fi
is "$(jq -r .request.filesystem <<<"$(events_of cap.breach "$RUN_DIR")")" \
        "the run directory '$RUN_DIR' (its logs, events and recorded bodies)" "the breach names the run directory"
wait_for_output "$RUN_DIR/incident.json" '"cap"' 5
is "$(jf .state "$RUN_DIR/run.json")" quarantined "run.json is still written: quarantined"
"$AGENTJAIL" kill "$RUN_ID" >/dev/null 2>&1
wait_exit "$BG_PID" 20
is "$(jf .state "$RUN_DIR/run.json")" quarantined "the ended run's record says quarantined"
"$AGENTJAIL" discard "$RUN_ID" >/dev/null 2>&1
kill_bg
export AGENTJAIL_STATE_DIR="$saved_state"
umount "$SMALL_STATE"

done_testing

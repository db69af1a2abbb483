#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# ^C at a real terminal (a tmux pane) when the jail has no terminal of its own (stdin not
# a terminal, stdout piped): the terminal signals agentjail's process group, agentjail
# forwards the signal to the command's, and the command gets it once. The jail's init is
# in agentjail's process group from the clone until it reads GO and calls setsid(), so a
# ^C then reaches init too: init drops what it was sent before it left the operator's
# session, and the supervisor holds what it takes until init reports the command forked
# (src/spawn.c drop_pending_signals, src/supervisor/supervise.c forward_signal).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

tmux_setup

# The pane: a non-interactive shell (no job control: agentjail, the reader of its output
# and the shell are one process group, the terminal's foreground one) that traps SIGINT,
# so agentjail starts with its default action; the reader ignores it and stays.
cat >"$TEST_TMP/drive.sh" <<'EOF'
trap ':' INT
name=$1
shift
cd "$WORKSPACE" || exit 1
"$AGENTJAIL" run -p default -- "$@" </dev/null 2>>"$TEST_TMP/$name.err" | (trap '' INT; cat >/dev/null)
echo "${PIPESTATUS[0]}" >"$TEST_TMP/$name.rc"
EOF

# pane_start NAME CMD...: `agentjail run -- CMD | cat` in a new terminal; sets SUP (the
# supervisor's pid) once it has exec'd agentjail.
pane_start() {
        local name=$1 cmd pane comm p kids deadline=$((SECONDS + 10))
        shift
        cmd=$(printf '%q ' env TEST_TMP="$TEST_TMP" WORKSPACE="$WORKSPACE" AGENTJAIL="$AGENTJAIL" \
                AGENTJAIL_STATE_DIR="$AGENTJAIL_STATE_DIR" AGENTJAIL_RUNTIME_DIR="$AGENTJAIL_RUNTIME_DIR" \
                bash "$TEST_TMP/drive.sh" "$name" "$@")
        T new-session -d -s "$name" -x 80 -y 24 "$cmd"
        pane=$(T display-message -p -t "$name" '#{pane_pid}')
        SUP=
        # Without a fork per look: the jail's init leaves the process group some 10 ms after
        # agentjail's exec.
        while [[ -z $SUP ]] && ((SECONDS < deadline)); do
                read -r -a kids <"/proc/$pane/task/$pane/children" 2>/dev/null
                for p in "${kids[@]}"; do
                        read -r comm 2>/dev/null <"/proc/$p/comm" && [[ $comm == agentjail ]] && SUP=$p
                done
        done
        [[ -n $SUP ]]
}

# pane_rc NAME [SECONDS]: the run's exit status, once the pane's shell has it.
pane_rc() {
        local deadline=$((SECONDS + ${2:-15}))
        while [[ ! -s "$TEST_TMP/$1.rc" ]] && ((SECONDS < deadline)); do
                sleep 0.05
        done
        cat "$TEST_TMP/$1.rc" 2>/dev/null || echo none
}

pgid_of() {
        local st
        read -r -a st <"/proc/$1/stat" 2>/dev/null && echo "${st[4]}"
}

# catch_init: stop the jail's init of supervisor $SUP while it is still in $SUP's process
# group (it has not read GO: setsid() comes right after); sets INIT. Fails when it was
# too late (the caller tries again with a new run).
catch_init() {
        local c comm kids deadline=$((SECONDS + 10)) sup_pgid
        sup_pgid=$(pgid_of "$SUP")
        INIT=
        while ((SECONDS < deadline)); do
                # (no newline at its end: read's status says nothing)
                read -r -a kids <"/proc/$SUP/task/$SUP/children" 2>/dev/null
                [[ -e /proc/$SUP ]] || return 1
                for c in "${kids[@]}"; do
                        read -r comm 2>/dev/null <"/proc/$c/comm" && [[ $comm == agentjail-init ]] || continue
                        kill -STOP "$c"
                        if [[ $(pgid_of "$c") == "$sup_pgid" ]]; then
                                INIT=$c
                                return 0
                        fi
                        kill -CONT "$c"
                        return 1
                done
        done
        return 1
}

# start_caught NAME CMD...: a run whose init is stopped before its setsid() (a few tries).
start_caught() {
        local name=$1 try
        shift
        for try in 1 2 3 4 5 6 7 8 9 10; do
                rm -f "$TEST_TMP/$name.rc"
                pane_start "$name" "$@" || return 1
                catch_init && return 0
                kill -TERM "$SUP" 2>/dev/null
                pane_rc "$name" >/dev/null
                T kill-session -t "$name" 2>/dev/null
        done
        return 1
}

# Whether signal $2 is pending on process $1 (its shared pending set).
pending() {
        local k v
        while read -r k v; do
                [[ $k == ShdPnd: ]] && (((16#$v >> ($2 - 1)) & 1)) && return 0
        done <"/proc/$1/status"
        return 1
}

# ---------------------------------------------------------------------------------------
# (a) the command running: each ^C reaches it once, and the run goes on as the command
# decides (its trap keeps it); SIGTERM then ends it as documented
pane_start a sh -c 'trap "echo INT >>$PWD/count" INT; echo ready >$PWD/ready; while :; do sleep 0.1; done' ||
        fail "agentjail starts in the pane"
wait_file "$WORKSPACE/ready" 15 || fail "the command runs"
counts=
for i in 1 2 3; do
        T send-keys -t a C-c
        deadline=$((SECONDS + 5))
        while (($(wc -l <"$WORKSPACE/count" 2>/dev/null || echo 0) < i)) && ((SECONDS < deadline)); do
                sleep 0.05
        done
        sleep 0.5 # a second copy would have come by now
        counts+="$(wc -l <"$WORKSPACE/count" 2>/dev/null || echo 0) "
done
is "$counts" "1 2 3 " "three ^C at the terminal: the command got each once"
kill -0 "$SUP" 2>/dev/null && pass "the run goes on (the command trapped them)" ||
        fail "the run goes on (the command trapped them)"
kill -TERM "$SUP"
is "$(pane_rc a)" 143 "SIGTERM to agentjail then ends the run (143)"

# ---------------------------------------------------------------------------------------
# (b) ^C while the jail starts, its init still in agentjail's process group: it reaches
# init directly and agentjail; the command gets it as it starts (once: a first copy ends
# it). init is held (SIGSTOP) before its setsid() while agentjail goes on, takes the ^C
# and would forward it before init drops what it was sent in the operator's session.
if start_caught b sh -c 'echo ran >$PWD/ran-b; sleep 5'; then
        T send-keys -t b C-c
        deadline=$((SECONDS + 5))
        until pending "$INIT" 2 || ((SECONDS >= deadline)); do
                sleep 0.05
        done
        pending "$INIT" 2 && pass "the terminal's ^C reached the jail's init, still in agentjail's process group" ||
                fail "the terminal's ^C reached the jail's init, still in agentjail's process group"
        sleep 1 # agentjail's start-up goes on meanwhile; its loop takes the ^C
        kill -CONT "$INIT"
        is "$(pane_rc b)" 130 "the command got the ^C as it started: the run ends by SIGINT (130)"
else
        fail "the jail's init caught before its setsid() (10 tries)"
fi

# ---------------------------------------------------------------------------------------
# (c) what reached init alone while it was in the operator's process group is not passed
# on: agentjail's own copy is the one the command gets (here agentjail got none)
if start_caught c sh -c 'sleep 1; echo ran >$PWD/ran-c'; then
        kill -INT "$INIT"
        kill -CONT "$INIT"
        is "$(pane_rc c)" 0 "a signal sent to init before its setsid() only does not reach the command"
        is "$(cat "$WORKSPACE/ran-c" 2>/dev/null)" ran "which ran to its end"
else
        fail "the jail's init caught before its setsid() (10 tries)"
fi

T kill-server 2>/dev/null
done_testing

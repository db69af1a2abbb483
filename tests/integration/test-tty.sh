#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# A terminal of its own: run from a real terminal (a tmux pane), the jail gets a new
# pseudo-terminal and never the operator's; interactive and full-screen programs work,
# the size follows the window, ^C/^Z and job control work in the jail, the transcript is
# kept, and the operator's terminal settings are the same afterwards on every way out
# (normal exit, ^C, `agentjail kill`, a SIGKILLed supervisor).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

tmux_setup

# The pane runs this script: the terminal's settings around one agentjail run. With a
# NAME.hold file it waits for NAME.go before it looks again (the watchdog's restore).
cat >"$TEST_TMP/drive.sh" <<'EOF'
name=$1
shift
cd "$WORKSPACE" || exit 1
stty -g >"$TEST_TMP/$name.before"
"$AGENTJAIL" run "$@"
echo $? >"$TEST_TMP/$name.rc.tmp"
if [[ -f "$TEST_TMP/$name.readleft" ]]; then
        sleep 0.3
        read -t 0.5 -n 200 -rs left
        printf '%q\n' "$left" >"$TEST_TMP/$name.left"
fi
if [[ -f "$TEST_TMP/$name.hold" ]]; then
        for _ in $(seq 300); do
                [[ -f "$TEST_TMP/$name.go" ]] && break
                sleep 0.1
        done
fi
stty -g >"$TEST_TMP/$name.after"
mv "$TEST_TMP/$name.rc.tmp" "$TEST_TMP/$name.rc"
echo "DRIVER-DONE-$name"
EOF

PANE=
# pane_wait NAME REGEX [SECONDS]: poll the pane's screen and history until they match
# (sets PANE; empty lines at the end are dropped).
pane_wait() {
        local deadline=$((SECONDS + ${3:-15}))
        while :; do
                PANE=$(T capture-pane -p -S - -t "$1" 2>/dev/null | tr -d '\r' | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}')
                [[ "$PANE" =~ $2 ]] && return 0
                ((SECONDS < deadline)) || return 1
                sleep 0.1
        done
}

# pane_start NAME AGENTJAIL-RUN-ARGS...: a new 80x24 terminal running `agentjail run ARGS`.
pane_start() {
        local name=$1 cmd
        shift
        BG_BEFORE=$(list_run_dirs)
        cmd=$(printf '%q ' env TEST_TMP="$TEST_TMP" WORKSPACE="$WORKSPACE" AGENTJAIL="$AGENTJAIL" \
                AGENTJAIL_STATE_DIR="$AGENTJAIL_STATE_DIR" AGENTJAIL_RUNTIME_DIR="$AGENTJAIL_RUNTIME_DIR" \
                bash "$TEST_TMP/drive.sh" "$name" "$@")
        T new-session -d -s "$name" -x 80 -y 24 "$cmd"
}

# pane_done NAME [SECONDS]: wait for the driver to finish; sets PANE_RC.
pane_done() {
        PANE_RC=
        if pane_wait "$1" "DRIVER-DONE-$1" "${2:-20}"; then
                PANE_RC=$(cat "$TEST_TMP/$1.rc")
                return 0
        fi
        diag "pane $1 did not finish:" "$PANE"
        return 1
}

settings_kept() {
        local before after
        before=$(cat "$TEST_TMP/$1.before" 2>/dev/null)
        after=$(cat "$TEST_TMP/$1.after" 2>/dev/null)
        if [[ -n "$before" && "$before" == "$after" ]]; then
                pass "the operator's terminal settings are the same after $2"
        else
                fail "the operator's terminal settings are the same after $2" "before: $before" "after:  $after"
        fi
}

pane_tty() { T display-message -p -t "$1" '#{pane_tty}'; }

# Host pids of the processes in the jail of run dir $1.
jail_pids() {
        local p
        for p in $(jq -r '.cgroup.paths[]?' "$1/run.json" 2>/dev/null); do
                [[ -f "$p/cgroup.procs" ]] && cat "$p/cgroup.procs"
        done | sort -u
}

# wait_jailed RUN_DIR COMM [SECONDS]: host pid of the jail's process named COMM.
wait_jailed() {
        local deadline=$((SECONDS + ${3:-15})) p
        while ((SECONDS < deadline)); do
                for p in $(jail_pids "$1"); do
                        if [[ "$(cat "/proc/$p/comm" 2>/dev/null)" == "$2" ]]; then
                                echo "$p"
                                return 0
                        fi
                done
                sleep 0.1
        done
        return 1
}

proc_state() { awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null; }

# wait_state PID STATE-ERE [SECONDS]
wait_state() {
        local deadline=$((SECONDS + ${3:-10}))
        while ((SECONDS < deadline)); do
                [[ "$(proc_state "$1")" =~ $2 ]] && return 0
                sleep 0.1
        done
        return 1
}

# ---------------------------------------------------------------------------------------
# (a) a terminal that is the jail's own; the operator's is not an fd in the jail and the
# jail cannot reconfigure it
cat >"$WORKSPACE/ident.sh" <<'EOF'
tty
[ -t 0 ] && echo STDIN-IS-A-TERMINAL
echo "SIZE $(stty size)"
python3 -c 'import fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b"x")
    print("TIOCSTI allowed")
except OSError as e:
    print("TIOCSTI errno", e.errno)'
stty cols 33 rows 11 -echo
echo RECONFIGURED
read -r line
echo "READ:$line"
EOF
pane_start ident -- sh ./ident.sh
if pane_wait ident 'RECONFIGURED'; then
        run_dir=$(wait_run_dir)
        optty=$(pane_tty ident)
        like "$PANE" $'(^|\n)/dev/pts/[0-9]+\n' "in the jail, tty(1) names a terminal of the jail's devpts"
        like "$PANE" 'STDIN-IS-A-TERMINAL' "in the jail, stdin is a terminal"
        like "$PANE" 'SIZE 24 80' "the jail's terminal starts with the window's size (24x80)"
        like "$PANE" 'TIOCSTI errno 1' "TIOCSTI on the jail's own terminal is denied (EPERM)"
        is "$(stty -F "$optty" size)" "24 80" "the jail's stty did not resize the operator's terminal"
        like "$(stty -F "$optty" -a)" '-icanon' "while the jail runs, the operator's terminal is in raw mode"
        # Every fd of every process in the jail, seen from the host: none is the operator's
        # terminal (same filesystem device and inode as the pane's tty).
        op_id=$(stat -L -c '%d:%i' "$optty")
        pids=$(jail_pids "$run_dir")
        nfds=0 hits=()
        for p in $pids; do
                for f in /proc/"$p"/fd/*; do
                        id=$(stat -L -c '%d:%i' "$f" 2>/dev/null) || continue
                        nfds=$((nfds + 1))
                        [[ "$id" == "$op_id" ]] && hits+=("$p:${f##*/}")
                done
        done
        cmp_num "$(wc -w <<<"$pids")" -ge 2 "the jail's processes are visible from the host (init, the command)"
        cmp_num "$nfds" -ge 4 "their fds could be examined"
        is "${hits[*]}" "" "the operator's terminal is not an fd of any process in the jail"
        cmd_pid=$(wait_jailed "$run_dir" sh 5)
        isnt "$(stat -L -c '%d:%i' "/proc/$cmd_pid/fd/0" 2>/dev/null)" "$op_id" "the command's stdin is not the operator's terminal"
        T send-keys -t ident 'typed-line' Enter
        if pane_done ident; then
                is "$PANE_RC" 0 "the jailed script exits 0"
                like "$PANE" 'READ:typed-line' "input typed at the operator's terminal reaches the jail"
                unlike "$PANE" $'\ntyped-line' "the jail's -echo applies to the jail's terminal (not echoed)"
                settings_kept ident "a normal exit (the jail had changed its own terminal's settings)"
                is "$(jf .tty "$run_dir/run.json")" true "run.json records the run had a tty"
                is "$(events_of run.start "$run_dir" | jq -r .tty)" true "the run.start event records the tty"
                log=$(tr -d '\r' <"$run_dir/tty.log" 2>/dev/null)
                like "$log" 'RECONFIGURED' "tty.log has the jail's output"
                like "$log" 'READ:typed-line' "tty.log has the output after the input"
                ok "no stdout.log in tty mode (the transcript is tty.log)" test ! -e "$run_dir/stdout.log"
        fi
else
        fail "the jail in a terminal started" "$PANE"
fi

# ---------------------------------------------------------------------------------------
# (b) interactive programs: the python3 REPL, a full-screen curses program, vi
pane_start repl -- python3 -q
if pane_wait repl '(^|\n)>>> ?$'; then
        T send-keys -t repl '1+1' Enter
        pane_wait repl $'>>> 1\\+1\n2\n>>>'
        like "$PANE" $'>>> 1\\+1\n2\n>>>' "the python3 REPL answers 1+1 with 2"
        T send-keys -t repl C-d
        pane_done repl && is "$PANE_RC" 0 "the REPL ends on ^D, agentjail exits 0"
        settings_kept repl "the REPL"
else
        fail "the python3 REPL started in the jail" "$PANE"
fi

cat >"$WORKSPACE/tui.py" <<'EOF'
import curses

def main(scr):
    h, w = scr.getmaxyx()
    scr.addstr(h - 1, 0, "BOTTOM %dx%d" % (w, h))
    scr.addstr(0, 0, "TOP press a key")
    scr.refresh()
    key = scr.getkey()
    scr.addstr(1, 0, "GOT %s" % key)
    scr.refresh()
    scr.getkey()

curses.wrapper(main)
print("TUI-DONE")
EOF
pane_start tui -- python3 tui.py
if pane_wait tui 'BOTTOM 80x24'; then
        PANE=$(T capture-pane -p -t tui)
        is "$(sed -n 24p <<<"$PANE")" "BOTTOM 80x24" "a curses program draws on the last line of a 24-line screen"
        is "$(sed -n 1p <<<"$PANE" | sed 's/ *$//')" "TOP press a key" "... and on the first"
        T send-keys -t tui k
        pane_wait tui 'GOT k'
        like "$PANE" 'GOT k' "a key press reaches the curses program unbuffered"
        T send-keys -t tui q
        pane_done tui && is "$PANE_RC" 0 "the curses program exits 0"
        like "$PANE" 'TUI-DONE' "the screen is back after the full-screen program"
        settings_kept tui "a full-screen program"
else
        fail "a curses program started in the jail" "$PANE"
fi

if command -v vi >/dev/null; then
        pane_start vi -- vi vi-file.txt
        if pane_wait vi $'\n~'; then
                T send-keys -t vi i 'typed in vi' Escape
                T send-keys -t vi ':wq' Enter
                pane_done vi && is "$PANE_RC" 0 "vi exits 0"
                is "$(cat "$WORKSPACE/vi-file.txt" 2>/dev/null)" "typed in vi" "vi wrote what was typed into it"
                settings_kept vi "vi"
        else
                fail "vi started in the jail" "$PANE"
        fi
else
        fail "vi is installed (scripts/setup installs vim-tiny)"
fi

# ---------------------------------------------------------------------------------------
# (c) the size follows the window
pane_start resize -- sh -i
if pane_wait resize '(^|\n)\$ ?$'; then
        T send-keys -t resize 'echo S1 $(stty size)' Enter
        pane_wait resize 'S1 24 80'
        like "$PANE" 'S1 24 80' "the jail's shell sees 24x80"
        T resize-window -t resize -x 100 -y 30
        got=
        for i in 1 2 3 4 5 6 7 8 9 10; do
                T send-keys -t resize "echo S2-$i \$(stty size)" Enter
                if pane_wait resize "S2-$i [0-9]+ [0-9]+" 5 && [[ "$PANE" =~ S2-$i\ ([0-9]+\ [0-9]+) ]]; then
                        got=${BASH_REMATCH[1]}
                        [[ "$got" == "30 100" ]] && break
                fi
        done
        is "$got" "30 100" "after the window is resized to 100x30, stty size in the jail says 30 100"
        T send-keys -t resize 'exit' Enter
        pane_done resize && is "$PANE_RC" 0 "the shell exits 0"
else
        fail "an interactive sh started in the jail" "$PANE"
fi

# ---------------------------------------------------------------------------------------
# (e) ^C and ^Z in a jailed interactive bash: the line discipline signals the jail's
# foreground job; the shell survives and has job control
pane_start job -- bash --norc --noprofile -i
if pane_wait job '\$ ?$'; then
        run_dir=$(wait_run_dir)
        T send-keys -t job 'sleep 100' Enter
        if sp=$(wait_jailed "$run_dir" sleep); then
                T send-keys -t job C-c
                wait_state "$sp" '^$' 10
                is "$(proc_state "$sp")" "" "^C ends the jail's sleep"
                T send-keys -t job 'echo alive-$((6*7))' Enter
                pane_wait job 'alive-42'
                like "$PANE" $'\nalive-42' "the jailed bash survives ^C"
        else
                fail "sleep started in the jailed bash" "$PANE"
        fi
        T send-keys -t job 'sleep 100' Enter
        if sp=$(wait_jailed "$run_dir" sleep); then
                T send-keys -t job C-z
                wait_state "$sp" '^T$' 10
                is "$(proc_state "$sp")" T "^Z stops the jail's foreground job"
                pane_wait job 'Stopped'
                like "$PANE" 'Stopped.*sleep 100' "the jailed bash reports the stopped job"
                T send-keys -t job 'fg' Enter
                wait_state "$sp" '^[SR]$' 10
                like "$(proc_state "$sp")" '^[SR]$' "fg continues it in the foreground"
                T send-keys -t job C-c
                wait_state "$sp" '^$' 10
                T send-keys -t job 'echo back-$((6*7))' Enter
                pane_wait job 'back-42'
                like "$PANE" $'\nback-42' "^C ends it after fg, and the shell is back"
        else
                fail "the second sleep started in the jailed bash" "$PANE"
        fi
        unlike "$PANE" 'no job control|cannot set terminal process group' "bash has job control in the jail"
        T send-keys -t job 'exit' Enter
        pane_done job && is "$PANE_RC" 0 "the jailed bash exits 0"
        settings_kept job "job control in the jail"
        like "$(tr -d '\r' <"$run_dir/tty.log")" 'alive-42' "the transcript has the session"
else
        fail "bash -i started in the jail" "$PANE"
fi

# ---------------------------------------------------------------------------------------
# (d) the operator's terminal on every way out: ^C, agentjail kill, SIGKILL of the supervisor
pane_start ctrlc -- sleep 100
if run_dir=$(wait_run_dir) && wait_jailed "$run_dir" sleep >/dev/null; then
        T send-keys -t ctrlc C-c
        pane_done ctrlc && is "$PANE_RC" 130 "^C ends a jailed sleep: 130"
        settings_kept ctrlc "^C"
else
        fail "the jail for ^C started" "$PANE"
fi

pane_start kill -- sleep 100
if run_dir=$(wait_run_dir) && wait_jailed "$run_dir" sleep >/dev/null; then
        like "$(stty -F "$(pane_tty kill)" -a)" '-icanon' "raw mode is on before the kill"
        aj kill "${run_dir##*/}"
        pane_done kill && is "$PANE_RC" 123 "agentjail kill ends the run: 123"
        settings_kept kill "agentjail kill"
else
        fail "the jail for agentjail kill started" "$PANE"
fi

touch "$TEST_TMP/kill9.hold"
pane_start kill9 -- sleep 100
if run_dir=$(wait_run_dir) && wait_jailed "$run_dir" sleep >/dev/null; then
        like "$(stty -F "$(pane_tty kill9)" -a)" '-icanon' "raw mode is on before the supervisor is killed"
        kill -KILL "$(jf .supervisor_pid "$run_dir/run.json")"
        deadline=$((SECONDS + 15))
        until grep -q '"supervisor.lost"' "$run_dir/events.jsonl" || ((SECONDS >= deadline)); do
                sleep 0.1
        done
        touch "$TEST_TMP/kill9.go"
        pane_done kill9 && is "$PANE_RC" 137 "the SIGKILLed supervisor: 137"
        like "$(events_of supervisor.lost "$run_dir")" 'supervisor.lost' "the watchdog took over"
        settings_kept kill9 "a SIGKILLed supervisor (the watchdog restores them)"
else
        fail "the jail for the supervisor's SIGKILL started" "$PANE"
fi

# Signals sent to agentjail with kill(1) still reach the command in tty mode.
for sig in INT TERM; do
        pane_start "sig$sig" -- sleep 100
        if run_dir=$(wait_run_dir) && wait_jailed "$run_dir" sleep >/dev/null; then
                kill -"$sig" "$(jf .supervisor_pid "$run_dir/run.json")"
                pane_done "sig$sig" && is "$PANE_RC" $((128 + $(kill -l "$sig"))) "SIG$sig sent to agentjail ends the jailed sleep"
                settings_kept "sig$sig" "SIG$sig to agentjail"
        else
                fail "the jail for SIG$sig started" "$PANE"
        fi
done

# The operator's terminal goes away (the window is closed): the jail is hung up too.
pane_start hup -- sleep 100
if run_dir=$(wait_run_dir) && wait_jailed "$run_dir" sleep >/dev/null; then
        T kill-session -t hup
        deadline=$((SECONDS + 15))
        until [[ "$(jf .status "$run_dir/run.json")" == exited ]] || ((SECONDS >= deadline)); do
                sleep 0.1
        done
        is "$(jf .status "$run_dir/run.json")" exited "a run whose terminal is closed ends"
        is "$(jf .exit.signal "$run_dir/run.json")" 1 "... with SIGHUP, as at any terminal"
else
        fail "the jail for the hang-up started" "$PANE"
fi

# A flood of output: all of it reaches the transcript, in order, and the run ends.
pane_start flood -- sh -c 'yes | head -n 100000; echo FLOOD-DONE'
if pane_done flood 60; then
        run_dir=$(new_run_dir "$BG_BEFORE")
        is "$PANE_RC" 0 "a jail writing 100000 lines to its terminal exits 0"
        is "$(tr -d '\r' <"$run_dir/tty.log" | grep -c '^y$')" 100000 "tty.log has every line of the flood"
        like "$(tail -c 20 "$run_dir/tty.log" | tr -d '\r')" 'FLOOD-DONE' "... and what came after it"
fi

# The terminal answers the jail's last queries (device attributes, the cursor's position)
# once it has read them, after a flood maybe after the jail has ended: none of it is left
# for the operator's shell, and neither a control string left open nor a rendition or
# character set the jail left set hides what is printed next. The jail's own DA1 answer
# first is not taken for agentjail's.
cat >"$WORKSPACE/queries.sh" <<'EOF'
printf '\033[c'
head -c 300000 /dev/zero | tr '\0' x
printf '\033[8m\033(0\033[6n\033[c\033P1|open'
EOF
for i in 1 2 3; do
        touch "$TEST_TMP/answers$i.readleft"
        pane_start "answers$i" -- sh ./queries.sh
        if pane_done "answers$i" 15; then
                is "$PANE_RC" 0 "a jail asking its terminal questions exits 0 ($i)"
                shown=$(T capture-pane -p -e -t "answers$i" | grep -a 'DRIVER-DONE')
                unlike "$shown" $'\e\\[8m|\x0e' "what the shell prints after the run is neither concealed nor in line drawing ($i)"
        else
                fail "what the shell prints after the run is shown (no control string left open) ($i)"
        fi
        is "$(cat "$TEST_TMP/answers$i.left" 2>/dev/null)" "''" "no answer to its queries is left for the operator's shell ($i)"
        settings_kept "answers$i" "queries to the terminal ($i)"
done

# The jail asks its terminal for the clipboard (OSC 52 with '?'): a terminal set to answer
# (tmux's set-clipboard on) typed the operator's paste buffer into the jail, base64. The same
# script outside the jail shows that this tmux answers; through agentjail the question never
# reaches it, and the operator is told.
cat >"$WORKSPACE/clip.sh" <<'EOF'
stty raw -echo
printf '\033]52;c;?\007'
timeout --foreground 1 dd bs=1 count=200 of="$1" 2>/dev/null
stty sane
printf 'CLIP-ASKED\n'
EOF
T set-option -g set-clipboard on
T set-buffer SECRET-PASTE
SECRET64=$(printf SECRET-PASTE | base64)
T new-session -d -s clipctl -x 80 -y 24 "cd $(printf %q "$WORKSPACE") && sh ./clip.sh clip.ctl; echo CTL-DONE"
if pane_wait clipctl CTL-DONE 15 && grep -q "$SECRET64" "$WORKSPACE/clip.ctl" 2>/dev/null; then
        pass "outside a jail, this tmux answers a clipboard read with its paste buffer"
        pane_start clip -- sh ./clip.sh clip.got
        if pane_done clip 15; then
                is "$PANE_RC" 0 "a jail asking for the clipboard exits 0"
                unlike "$(cat "$WORKSPACE/clip.got" 2>/dev/null)" "$SECRET64" "the jail got no clipboard"
                like "$(T capture-pane -p -J -S - -t clip)" "asked your terminal 1 time for your clipboard" \
                        "the operator is told"
                like "$(cat "$(wait_run_dir 5)/tty.log" 2>/dev/null)" $'\e\\]52;c;\\?' "the transcript keeps the question"
        fi
else
        fail "outside a jail, this tmux answers a clipboard read with its paste buffer" \
                "$(od -c "$WORKSPACE/clip.ctl" 2>&1 | head -5)"
fi
T set-option -g set-clipboard external
rm -f "$WORKSPACE/clip.sh" "$WORKSPACE/clip.ctl" "$WORKSPACE/clip.got"

# ---------------------------------------------------------------------------------------
# --no-tty from a terminal: the jail's output goes through pipes, but still to this terminal,
# and what it left set (a control string open, concealed text, line drawing) would hide
# agentjail's messages after the run and the shell's prompt, as with a terminal of its own.
pane_start notty-hide --no-tty -- sh -c 'printf "\033[8m\033(0\033P1|open"'
if pane_done notty-hide 15; then
        is "$PANE_RC" 0 "--no-tty: a jail leaving its terminal concealed exits 0"
        shown=$(T capture-pane -p -e -t notty-hide | grep -a 'DRIVER-DONE')
        unlike "$shown" $'\e\\[8m|\x0e' "--no-tty: what the shell prints after the run is neither concealed nor in line drawing"
else
        fail "--no-tty: what the shell prints after the run is shown (no control string left open)"
fi

# While the run goes on, agentjail's own messages share the terminal with the jail's output:
# one the jail left a control string open or the rendition concealed for (a breach it
# crossed next: "freezing it") is still shown, with a terminal of its own and without.
WARN_PROFILE=$(write_profile tty-warn '{"extends": "default", "meters": {"tokens": 1000}}')
for mode in -t --no-tty; do
        name=warn${mode//-/}
        pane_start "$name" "$mode" -p "$WARN_PROFILE" -- sh -c \
                'printf "\033[8m\033P1|open"; agentjail meter tokens --model m --input 5000 --output 1; sleep 100'
        if run_dir=$(wait_run_dir 10) && pane_wait "$name" 'breached its tokens cap' 10; then
                shown=$(T capture-pane -p -e -t "$name" | grep -a 'breached its tokens cap')
                unlike "$shown" $'\e\\[8m' "$mode: agentjail's warning is not concealed by the jail's rendition"
        else
                fail "$mode: agentjail's warning is shown though the jail left a control string open" "$PANE"
        fi
        [[ -n "$run_dir" ]] && aj kill "${run_dir##*/}"
        pane_done "$name" 15 || true
done

# --no-tty from a terminal: no pty, and stdin is /dev/null (not the operator's terminal)
pane_start notty --no-tty -- sh -c '[ -t 0 ] || echo STDIN-NOT-A-TERMINAL; cat; echo CAT-SAW-EOF'
if pane_done notty; then
        is "$PANE_RC" 0 "--no-tty: the command exits 0"
        like "$PANE" 'STDIN-NOT-A-TERMINAL' "--no-tty: stdin is not a terminal"
        like "$PANE" 'CAT-SAW-EOF' "--no-tty: stdin is /dev/null (cat ends at once)"
        run_dir=$(new_run_dir "$BG_BEFORE")
        is "$(jf .tty "$run_dir/run.json")" false "--no-tty: run.json says no tty"
        like "$(cat "$run_dir/stdout.log")" 'CAT-SAW-EOF' "--no-tty: output goes to stdout.log as before"
fi

T kill-server 2>/dev/null

# ---------------------------------------------------------------------------------------
# Without a terminal: pipes as before; with -t, a pty fed from the (non-terminal) stdin
run_jail -- sh -c '[ -t 0 ] || echo no-terminal; [ -t 1 ] || echo stdout-not-a-terminal'
is "$JAIL_RC" 0 "without a terminal the run works as before" || jail_diag
like "$JAIL_OUT" 'no-terminal' "stdin from /dev/null is not a terminal"
like "$JAIL_OUT" 'stdout-not-a-terminal' "stdout is a pipe"
is "$(jf .tty)" false "run.json: tty false"
ok "no tty.log without a terminal" test ! -e "$JAIL_RUN_DIR/tty.log"

printf 'from-a-file\n' >"$TEST_TMP/stdin.txt"
JAIL_STDIN="$TEST_TMP/stdin.txt" run_jail -t -- sh -c 'tty; read -r x; echo "got:$x"'
is "$JAIL_RC" 0 "-t with a file as stdin works" || jail_diag
like "$JAIL_OUT" '/dev/pts/[0-9]+' "-t: the jail has a terminal"
like "$(tr -d '\r' <<<"$JAIL_OUT")" 'got:from-a-file' "-t: the file's bytes are typed into the jail's terminal"
is "$(jf .tty)" true "-t: run.json says tty"
like "$(tr -d '\r' <"$JAIL_RUN_DIR/tty.log" 2>/dev/null)" 'got:from-a-file' "-t: the transcript is in tty.log"

done_testing

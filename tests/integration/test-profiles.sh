#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Every shipped profile starts a working jail; `agentjail profile list|show|check`
# behave as documented (exit 0 ok, 1 invalid, 2 usage; errors at file:line:col).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
setup_dirs

SHIPPED=(default strict python node)

# --- profile list / show
out=$(timeout 20 "$AGENTJAIL" profile list 2>&1)
rc=$?
is "$rc" 0 "profile list exits 0"
for p in "${SHIPPED[@]}"; do
        like "$out" "(^|[^a-z])$p([^a-z]|\$)" "profile list includes $p"
done

for p in "${SHIPPED[@]}"; do
        out=$(timeout 20 "$AGENTJAIL" profile show "$p" 2>&1)
        is "$?" 0 "profile show $p exits 0" || diag "$out"
done
out=$(timeout 20 "$AGENTJAIL" profile show strict 2>&1)
like "$out" '512M|536870912' "profile show strict shows its 512M memory limit"
out=$(timeout 20 "$AGENTJAIL" profile show agentjail-no-such-profile 2>&1)
is "$?" 1 "profile show of an unknown profile exits 1"

# --- a profile the agent planted
# ./profiles is on the search path and the current directory is usually the agent's
# workspace: a profile there is the agent's text. list, list --json and show print its
# description escaped (text) or with C1 and bidi controls as \u escapes (JSON), so it
# cannot set a window title, erase a line or reorder one on the operator's terminal.
# raw_controls FILE: ESC, BEL, the C1 CSI as UTF-8, or the right-to-left override?
raw_controls() { LC_ALL=C grep -q $'\x1b\|\x07\|\xc2\x9b\|\xe2\x80\xae' "$1"; }
run_jail -- /bin/sh -c 'mkdir -p profiles && printf "%s\n" \
        "{\"extends\": \"default\", \"description\": \"ok \\u001b]0;OWNED\\u0007\\u009b2J \\u202eevil\"}" \
        >profiles/planted.json'
is "$JAIL_RC" 0 "an agent plants ./profiles/planted.json" || jail_diag
timeout 20 "$AGENTJAIL" profile list >"$TEST_TMP/pl.out" 2>&1
ok "profile list: the planted description is escaped" \
        grep -qF 'planted      ./profiles/planted.json  ok \x1b]0;OWNED\x07\u009b2J \u202eevil' "$TEST_TMP/pl.out" ||
        diag "$(cat -A "$TEST_TMP/pl.out")"
ok "profile list: no ESC, BEL, C1 or bidi control" eval '! raw_controls "$TEST_TMP/pl.out"'
timeout 20 "$AGENTJAIL" profile list --json >"$TEST_TMP/pl.out" 2>&1
ok "profile list --json: no ESC, BEL, C1 or bidi control" eval '! raw_controls "$TEST_TMP/pl.out"'
is "$(jq -r '.[] | select(.name == "planted") | .description' "$TEST_TMP/pl.out")" \
        "$(printf 'ok \033]0;OWNED\007\302\2332J \342\200\256evil')" "profile list --json: the same JSON for a parser"
timeout 20 "$AGENTJAIL" profile show planted >"$TEST_TMP/pl.out" 2>"$TEST_TMP/pl.err"
is "$?" 0 "profile show of the planted profile exits 0"
ok "profile show: no ESC, BEL, C1 or bidi control" eval '! raw_controls "$TEST_TMP/pl.out"'
is "$(jq -r .description "$TEST_TMP/pl.out")" "$(printf 'ok \033]0;OWNED\007\302\2332J \342\200\256evil')" \
        "profile show: the same JSON for a parser"
rm -rf profiles

# --- profile check
for p in "${SHIPPED[@]}"; do
        f="$AGENTJAIL_SOURCE_DIR/profiles/$p.json"
        out=$(timeout 20 "$AGENTJAIL" profile check "$f" 2>&1)
        is "$?" 0 "profile check of the shipped $p.json exits 0" || diag "$out"
done

good=$(write_profile good '{ "extends": "default", "limits": { "pids": 40 } }')
out=$(timeout 20 "$AGENTJAIL" profile check "$good" 2>&1)
is "$?" 0 "profile check of a valid test profile exits 0" || diag "$out"

syntax=$(write_profile syntax '{
  "extends": "default",
  "limits": { "pids": 32,, }
}')
out=$(timeout 20 "$AGENTJAIL" profile check "$syntax" 2>&1)
is "$?" 1 "profile check of a JSON syntax error exits 1"
like "$out" "$syntax:3:[0-9]+" "the syntax error is reported at file:3:col"

unknown=$(write_profile unknown '{
  "extends": "default",
  "limits": { "pids": 32 },
  "bogus_key": true
}')
out=$(timeout 20 "$AGENTJAIL" profile check "$unknown" 2>&1)
is "$?" 1 "profile check of an unknown key exits 1"
like "$out" "$unknown:4:[0-9]+" "the unknown key is reported at file:4:col"
like "$out" 'bogus_key' "the message names the unknown key"

nested=$(write_profile nested '{
  "extends": "default",
  "limits": {
    "pids": 32,
    "memroy": "1G"
  }
}')
out=$(timeout 20 "$AGENTJAIL" profile check "$nested" 2>&1)
is "$?" 1 "profile check of a misspelt nested key exits 1"
like "$out" "$nested:5:[0-9]+" "the nested unknown key is reported at file:5:col"

badval=$(write_profile badval '{
  "extends": "default",
  "limits": { "memory": "lots" }
}')
out=$(timeout 20 "$AGENTJAIL" profile check "$badval" 2>&1)
is "$?" 1 "profile check of a bad memory value exits 1"
like "$out" "$badval:3:[0-9]+" "the bad value is reported at file:3:col"

badparent=$(write_profile badparent '{ "extends": "agentjail-no-such-parent" }')
out=$(timeout 20 "$AGENTJAIL" profile check "$badparent" 2>&1)
is "$?" 1 "profile check of a profile extending a missing parent exits 1"

out=$(timeout 20 "$AGENTJAIL" profile check 2>&1)
is "$?" 2 "profile check without a file exits 2"
out=$(timeout 20 "$AGENTJAIL" profile check "$TEST_TMP/profiles/does-not-exist.json" 2>&1)
is "$?" 1 "profile check of a missing file exits 1"
out=$(timeout 20 "$AGENTJAIL" profile frobnicate 2>&1)
is "$?" 2 "an unknown profile subcommand exits 2"

# --- each shipped profile runs a jail
for p in "${SHIPPED[@]}"; do
        run_jail -p "$p" -- ./probe status
        is "$JAIL_RC" 0 "profile $p: probe status runs" || jail_diag
        is "$(pval uid)" 1000 "profile $p: runs as uid 1000"
        is "$(pval CapEff)" 0000000000000000 "profile $p: no effective capabilities"
        is "$(pval Seccomp)" 2 "profile $p: seccomp filter on"
        is "$(jf .profile.name)" "$p" "profile $p: run.json names it"
done

# --- strict: read-only workspace, tight limits
run_jail -p strict -- ./probe write ./strict-file
is "$(pval write)" EROFS "strict: writing the workspace fails with EROFS" || jail_diag
ok "strict: nothing appeared in the workspace" test ! -e "$WORKSPACE/strict-file"
run_jail -p strict -- ./probe write /tmp/strict-tmp
is "$(pval write)" OK "strict: /tmp is still writable"
if ((EUID == 0)); then
        start_jail_bg -p strict -- ./probe sleep 20
        if find_jailed "$BG_PID" probe 10 >/dev/null && rdir=$(wait_run_dir 5); then
                id=${rdir##*/}
                if [[ -d /sys/fs/cgroup/unified ]]; then
                        mem=$(cat "/sys/fs/cgroup/memory/agentjail/$id/memory.limit_in_bytes" 2>/dev/null)
                        pmax=$(cat "/sys/fs/cgroup/pids/agentjail/$id/pids.max" 2>/dev/null)
                else
                        mem=$(cat "/sys/fs/cgroup/agentjail/$id/memory.max" 2>/dev/null)
                        pmax=$(cat "/sys/fs/cgroup/agentjail/$id/pids.max" 2>/dev/null)
                fi
                is "$mem" $((512 * 1024 * 1024)) "strict: the run's memory limit is 512M"
                is "$pmax" 64 "strict: the run's pids.max is 64"
        else
                fail "strict: the background run started" "$(cat "$TEST_TMP/bg.err")"
        fi
        kill_bg
        run_jail -p strict -- ./probe forkbomb 500
        cmp_num "$(pval forks)" -lt 64 "strict: pids are capped below 64 (forks=$(pval forks))"
        cmp_num "$(pval forks)" -ge 40 "strict: but not much lower (forks=$(pval forks))"
fi

# --- a profile file passed by path, extending a shipped one
run_jail -p "$good" -- ./probe forkbomb 500
if ((EUID == 0)); then
        cmp_num "$(pval forks)" -lt 40 "a profile given by path applies its limits (forks=$(pval forks))"
fi
is "$(jf .profile.path)" "$good" "run.json records the profile's path"

done_testing

#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `agentjail eval`: the shipped example suite passes; a suite with passing and failing
# cases (each assertion kind failing once) gives the right table, JUnit XML (parsed with
# python3's xml.etree), JSON and exit status; each case is a real run whose id is
# reported; fixtures (a directory, a tarball) are copied, never touched; -j 2 runs cases
# at once; a timed-out case is stopped (SIGTERM, then agentjail's kill) and its run
# cleaned up; an overlay run's changes are what its assertions see; a flooding case costs
# at most 1 MiB of log; Ctrl-C stops the runs; bad suites exit 125 with FILE:LINE:COL.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root # the overlay case: overlay workspaces are root's
setup_dirs
command -v python3 >/dev/null || skip_all "python3 is not installed"

# Scratch workspaces go here, so that the test can see they are removed.
export TMPDIR="$TEST_TMP/tmp"
mkdir -p "$TMPDIR"
EXAMPLE="$AGENTJAIL_SOURCE_DIR/examples/evals"

# eval ARGS...: runs `agentjail eval` (stdin /dev/null); sets EVAL_RC, EVAL_OUT, EVAL_ERR.
eval_run() {
        timeout -k 5 120 "$AGENTJAIL" eval "$@" </dev/null >"$TEST_TMP/eval.out" 2>"$TEST_TMP/eval.err"
        EVAL_RC=$?
        EVAL_OUT=$(cat "$TEST_TMP/eval.out")
        EVAL_ERR=$(cat "$TEST_TMP/eval.err")
        collect_run_ids
}

eval_diag() {
        diag "exit status: $EVAL_RC"
        diag "stdout: $EVAL_OUT"
        diag "stderr: $EVAL_ERR"
}

# The table's row of a case (its first line).
row() { grep -E "^$1 " <<<"$EVAL_OUT" | head -1; }

fixture_digest() { (cd "$1" && find . -printf '%p %m %s\n' | sort && find . -type f -exec sha256sum {} + | sort); }

# ---- the shipped example suite
before=$(fixture_digest "$EXAMPLE/fixtures/triage")
eval_run "$EXAMPLE/triage.json" --junit "$TEST_TMP/triage.xml"
is "$EVAL_RC" 0 "the shipped example suite passes (exit 0)" || eval_diag
like "$EVAL_OUT" $'triage: 3 passed, 0 failed, 0 errors' "its table sums up 3 passed"
like "$(row 'labels crashes as bugs')" '^labels crashes as bugs +pass +[0-9.]+s +[0-9a-f]{12} *$' \
        "a passing row: case, pass, time, run id, no reason"
is "$(fixture_digest "$EXAMPLE/fixtures/triage")" "$before" "the fixture directory is untouched by the runs"
is "$(python3 -c 'import sys, xml.etree.ElementTree as E
s = E.parse(sys.argv[1]).getroot().find("testsuite")
print(s.get("tests"), s.get("failures"), len(s.findall("testcase")), len(s.findall("testcase/failure")))' \
        "$TEST_TMP/triage.xml" 2>&1)" "3 0 3 0" "its JUnit XML: 3 testcases, no failure"
is "$(ls -A "$TMPDIR")" "" "no scratch workspace is left behind"

# ---- a suite with passing and failing cases
FX="$TEST_TMP/fx"
mkdir -p "$FX/dir/sub" "$TEST_TMP/tarsrc"
echo "from the dir" >"$FX/dir/sub/note.txt"
echo "from the tarball" >"$TEST_TMP/tarsrc/packed.txt"
tar -czf "$FX/fixture.tgz" -C "$TEST_TMP/tarsrc" packed.txt
echo "not a tarball" >"$FX/broken.tgz"
P=$(write_profile evaldeny '{"extends": "default", "tools": {"deny": ["rm_rf"]}}')
PO=$(write_profile evaloverlay '{"extends": "default", "filesystem": {"workspace": {"mode": "overlay"}}}')
PBAD=$(write_profile refused-by-agentjail '{"extends": "default", "no_such_key": 1}')
cat >"$TEST_TMP/mixed.json" <<EOF
{
  "name": "mixed",
  "defaults": { "profile": "$P", "timeout": "60s" },
  "cases": [
    { "name": "writes", "command": ["sh", "-c", "echo hello > out.txt; rm sub/note.txt"], "fixture": "fx/dir",
      "expect": { "files": [ { "path": "out.txt", "equals": "hello\n" }, { "path": "sub/note.txt", "exists": false },
                             { "path": "out.txt", "matches": "^hel+o$" } ],
                  "events": [ { "type": "seccomp.denied", "absent": true }, { "type": "net.*", "absent": true } ] } },
    { "name": "unpacks", "command": ["cat", "packed.txt"], "fixture": "fx/fixture.tgz",
      "expect": { "files": [ { "path": "packed.txt", "equals": "from the tarball\n" } ] } },
    { "name": "wrong-exit", "command": ["sh", "-c", "exit 3"] },
    { "name": "no-file", "command": ["true"], "expect": { "files": [ { "path": "out.txt", "exists": true } ] } },
    { "name": "bad-content", "command": ["sh", "-c", "echo nope > out.txt"],
      "expect": { "files": [ { "path": "out.txt", "matches": "^yes" } ] } },
    { "name": "denied", "command": ["agentjail", "meter", "tool", "rm_rf"],
      "expect": { "exit": 1, "events": [ { "type": "tool.verdict",
                  "fields": { "gen_ai.tool.name": "rm_rf", "verdict": "deny" } } ] } },
    { "name": "denied-unexpected", "command": ["agentjail", "meter", "tool", "rm_rf"],
      "expect": { "exit": 1, "events": [ { "type": "tool.verdict", "fields": { "verdict": "deny" }, "absent": true } ] } },
    { "name": "over-budget", "command": ["agentjail", "meter", "tokens", "--model", "m", "--input", "400", "--output", "100"],
      "expect": { "usage": { "tokens": 100, "tool_calls": { "max": 0 } } } },
    { "name": "slow", "command": ["sleep", "30"], "timeout": "2s" },
    { "name": "stubborn", "command": ["sh", "-c", "trap '' TERM; sleep 30"], "timeout": "1s" },
    { "name": "refused", "command": ["true"], "profile": "$PBAD" },
    { "name": "bad-fixture", "command": ["true"], "fixture": "fx/broken.tgz" },
    { "name": "overlay", "command": ["sh", "-c", "echo new > added.txt; rm sub/note.txt"], "fixture": "fx/dir",
      "profile": "$PO",
      "expect": { "files": [ { "path": "added.txt", "equals": "new\n" }, { "path": "sub/note.txt", "exists": false } ] } }
  ]
}
EOF
t0=$(date +%s)
eval_run "$TEST_TMP/mixed.json" -j 2 --junit "$TEST_TMP/mixed.xml"
t1=$(date +%s)
is "$EVAL_RC" 1 "a suite with failing cases exits 1" || eval_diag
like "$EVAL_OUT" 'mixed: 4 passed, 7 failed, 2 errors' "the table sums up 4 passed, 7 failed, 2 errors"
like "$(row writes)" '^writes +pass ' "a directory fixture is copied into the case's workspace"
like "$(row unpacks)" '^unpacks +pass ' "a tarball fixture is unpacked into the case's workspace"
like "$(row denied)" '^denied +pass ' "a tool.verdict deny for a named tool is found in the run's chain"
like "$(row bad-fixture)" '^bad-fixture +error +[0-9.]+s +- +fixture: tar exited 2: tar: ' \
        "a fixture that cannot be unpacked: an error, with what tar said"
like "$(row overlay)" '^overlay +pass ' "an overlay run's changes are what its file assertions see"
like "$(row wrong-exit)" '^wrong-exit +fail +[0-9.]+s +[0-9a-f]{12} +exit status 3, expected 0$' \
        "a wrong exit status: fail, with its run id and the reason"
like "$(row no-file)" 'fail .* files\[0\] out\.txt: missing$' "a missing file fails"
like "$(row bad-content)" 'fail .* files\[0\] out\.txt: does not match /\^yes/$' "content not matching fails"
like "$(row denied-unexpected)" \
        'fail .* events\[0\]: 1 tool\.verdict with verdict "deny", expected none$' "an event that must be absent fails"
like "$(row over-budget)" 'fail .* usage\.tokens: 500 used, at most 100 allowed$' "a usage bound fails"
like "$(row slow)" '^slow +fail .* timed out after 2s$' "a case past its timeout fails as timed out"
like "$(row refused)" "^refused +error +[0-9.]+s +- +profile: .*refused-by-agentjail.*no_such_key" \
        "a profile that does not load when the suite starts: an error, the reason, and no run"
is "$(fixture_digest "$FX/dir")" "$(cd "$TEST_TMP" && mkdir -p chk/sub && echo "from the dir" >chk/sub/note.txt &&
        fixture_digest chk)" "the case that removed a file left the fixture alone"
is "$(ls -A "$TMPDIR")" "" "every case's scratch workspace is removed"

# The runs: real ones, named after their cases, finished, their cgroups gone.
ids=$(sed -n 's/^\([a-z-]*\) .* \([0-9a-f]\{12\}\)\( .*\)\?$/\1 \2/p' <<<"$EVAL_OUT")
is "$(count_lines "$ids")" 11 "11 of the 13 cases made a run, each with its id in the table" || eval_diag
bad=
while read -r name id; do
        [[ -n "$id" ]] || continue
        st=$(jq -r '"\(.name) \(.status)"' "$AGENTJAIL_STATE_DIR/runs/$id/run.json" 2>/dev/null)
        [[ "$st" == "$name exited" ]] || bad+="$name:$id:$st "
        for d in /sys/fs/cgroup/*/agentjail/"$id" /sys/fs/cgroup/agentjail/"$id"; do
                [[ -d "$d" ]] && bad+="cgroup:$d "
        done
done <<<"$ids"
is "$bad" "" "each case's run is recorded under its case's name, has exited, and left no cgroup"
slow_id=$(awk '$1 == "slow" { print $4 }' <<<"$EVAL_OUT")
is "$(jq -r '.exit.status' "$AGENTJAIL_STATE_DIR/runs/$slow_id/run.json" 2>/dev/null)" 143 \
        "a timed-out run is sent SIGTERM (forwarded to the command: 143)"
like "$(row stubborn)" '^stubborn +fail .* timed out after 1s$' "a command ignoring SIGTERM times out too"
stubborn_id=$(awk '$1 == "stubborn" { print $4 }' <<<"$EVAL_OUT")
is "$(jq -r '"\(.exit.status) \(.exit.reason)"' "$AGENTJAIL_STATE_DIR/runs/$stubborn_id/run.json" 2>/dev/null) $(
        jq -r 'select(.type == "kill") | .by' "$AGENTJAIL_STATE_DIR/runs/$stubborn_id/events.jsonl" 2>/dev/null)" \
        "123 killed operator" "5 s later agentjail's own kill ends it (exit 123, a kill event)"

# The overlay case's changes went into its scratch copy: that is the run's commit, recorded as
# one, its kept changes gone with the copy. Left "pending", the run named a removed directory
# no commit could reach, and prune kept it and the agent's files for ever.
ov_id=$(awk '$1 == "overlay" { print $4 }' <<<"$EVAL_OUT")
is "$(jq -r '.workspace.changes' "$AGENTJAIL_STATE_DIR/runs/$ov_id/run.json" 2>/dev/null)" committed \
        "the overlay case's run says its changes were committed (to the case's scratch copy)"
is "$(jq -c 'select(.type == "workspace.commit") | [.eval, .added, .deleted, .uid]' \
        "$AGENTJAIL_STATE_DIR/runs/$ov_id/events.jsonl" 2>/dev/null)" '[true,1,1,0]' \
        "its chain has the commit, by eval, with what it applied (1 file added, 1 removed)"
is "$([[ -e "$AGENTJAIL_STATE_DIR/runs/$ov_id/workspace" ]] && echo kept || echo gone)" gone \
        "its kept changes are removed, as a commit removes them"
out=$("$AGENTJAIL" commit "$ov_id" 2>&1)
like "$out" "changes were committed already" "'agentjail commit' of it says it was committed"
like "$("$AGENTJAIL" logs "$ov_id" --verify 2>&1)" "the event chain is intact" "its chain verifies after the commit"

# JUnit XML, as a CI system reads it.
cat >"$TEST_TMP/junit.py" <<'PY'
import sys, xml.etree.ElementTree as E
root = E.parse(sys.argv[1]).getroot()
assert root.tag == "testsuites", root.tag
suite = root.find("testsuite")
print("suite", suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("errors"))
for tc in suite.findall("testcase"):
    f = tc.find("failure")
    if f is None:
        f = tc.find("error")
    out = tc.find("system-out")
    float(tc.get("time"))
    print(tc.get("name"), "ok" if f is None else "FAIL" if f.tag == "failure" else "ERROR", f.get("message") if f is not None else "",
          "run" if out is not None and out.text.startswith("run ") else "norun")
PY
J=$(python3 "$TEST_TMP/junit.py" "$TEST_TMP/mixed.xml" 2>&1)
like "$J" $'^suite mixed 13 7 2\n' "JUnit: the testsuite counts 13 tests, 7 failures, 2 errors" || diag "$J"
like "$J" $'\nwrites ok  run\n' "JUnit: a passing testcase has no failure and names its run"
like "$J" $'\nwrong-exit FAIL exit status 3, expected 0 run\n' "JUnit: a failing testcase's failure message is the reason"
like "$J" $'\nover-budget FAIL usage.tokens: 500 used, at most 100 allowed run' "JUnit: the usage failure's message"
like "$J" $'\nbad-fixture ERROR fixture: tar exited 2: [^\n]* norun' "JUnit: a case that could not run is an error"
like "$J" $'\nrefused ERROR profile: [^\n]* norun' "JUnit: a case without a run has no run line"

# -j 2 runs two cases at once: two 2-second sleeps take about 2 seconds, not 4.
cat >"$TEST_TMP/pair.json" <<'EOF'
{ "cases": [ { "name": "a", "command": ["sleep", "2"] }, { "name": "b", "command": ["sleep", "2"] } ] }
EOF
s0=$(date +%s%N)
eval_run "$TEST_TMP/pair.json" -j 2 --json
s1=$(date +%s%N)
is "$EVAL_RC" 0 "two passing cases with -j 2 exit 0" || eval_diag
cmp_num $(((s1 - s0) / 1000000)) -lt 3800 "with -j 2 they ran at once (under 3.8 s)"
is "$(jq -r '"\(.passed) \(.failed) \([.cases[].run | select(test("^[0-9a-f]{12}$"))] | length)"' <<<"$EVAL_OUT" \
        2>&1)" "2 0 2" "--json: 2 passed, 0 failed, both with a run id"
s0=$(date +%s%N)
eval_run "$TEST_TMP/pair.json"
s1=$(date +%s%N)
cmp_num $(((s1 - s0) / 1000000)) -ge 4000 "without -j they ran one after the other (4 s or more)"

# --keep keeps the scratch workspace; a case's output (a flood here) costs at most 1 MiB of log.
cat >"$TEST_TMP/flood.json" <<'EOF'
{ "cases": [ { "name": "flood", "command": ["sh", "-c", "head -c 5000000 /dev/zero; echo kept > k.txt; echo last words >&2"],
               "expect": { "exit": 1 } } ] }
EOF
eval_run "$TEST_TMP/flood.json" --keep --json
kept=$(jq -r '.cases[0].workspace // empty' <<<"$EVAL_OUT" 2>/dev/null)
is "$(cat "$kept/k.txt" 2>&1)" kept "--keep: the case's workspace is kept where the report says"
cmp_num "$(stat -c %s "${kept%/workspace}/agentjail.log" 2>/dev/null || echo -1)" -eq 1048576 \
        "a case flooding its output leaves at most 1 MiB of log"
is "$(jq -r '.cases[0].failures[0]' <<<"$EVAL_OUT" 2>/dev/null)" "exit status 0, expected 1" \
        "the flooding case ran to its end"
rm -rf "${kept%/*/workspace}"

# An overlay case's sparse file stays sparse in the scratch copy: eval writes its data, not
# 1 GiB of holes.
cat >"$TEST_TMP/sparse.json" <<EOF
{ "cases": [ { "name": "sparse", "profile": "$PO",
               "command": ["sh", "-c", "dd if=/dev/null of=big bs=1 seek=1073741824 2>/dev/null && printf data >>big"],
               "expect": { "files": [ { "path": "big", "exists": true } ] } } ] }
EOF
eval_run "$TEST_TMP/sparse.json" --keep --json
is "$EVAL_RC" 0 "an overlay case making a 1 GiB sparse file passes" || eval_diag
kept=$(jq -r '.cases[0].workspace // empty' <<<"$EVAL_OUT" 2>/dev/null)
is "$(stat -c %s "$kept/big" 2>&1)" 1073741828 "the scratch copy has the file's size"
ok "and next to nothing on disk (a hole stays a hole)" \
        test "$(stat -c '%b * %B' "$kept/big" | xargs expr)" -lt 1048576
[[ -n "$kept" ]] && rm -rf "${kept%/*/workspace}"

# An overlay case whose changes an eval does not apply (more than 4 GiB of file data) is an
# error, and its changes are discarded with why: left pending with its scratch copy gone, no
# commit could reach them, and prune kept the agent's 4 GiB with every case.
cat >"$TEST_TMP/huge.json" <<EOF
{ "cases": [ { "name": "huge", "profile": "$PO", "command": ["fallocate", "-l", "4097M", "big"] } ] }
EOF
eval_run "$TEST_TMP/huge.json" --json
huge_id=$(jq -r '.cases[0].run // empty' <<<"$EVAL_OUT" 2>/dev/null)
like "$(jq -r '"\(.cases[0].result) \(.cases[0].error)"' <<<"$EVAL_OUT" 2>&1)" \
        "^error the overlay's changes hold 4097 MiB of file data, more than an eval applies" \
        "an overlay case writing 4097 MiB is an error, saying why" || eval_diag
is "$(jq -r '.workspace.changes' "$AGENTJAIL_STATE_DIR/runs/$huge_id/run.json" 2>&1)" discarded \
        "its run's changes are discarded, not left pending for a workspace that is gone"
like "$(jq -c 'select(.type == "workspace.discard") | [.eval, .error]' \
        "$AGENTJAIL_STATE_DIR/runs/$huge_id/events.jsonl" 2>&1)" '^\[true,"the overlay.s changes hold 4097 MiB' \
        "its chain has the discard, by eval, with why"
is "$([[ -e "$AGENTJAIL_STATE_DIR/runs/$huge_id/workspace" ]] && echo kept || echo gone)" gone \
        "its 4 GiB of kept changes are removed"

# A case whose profile binds a directory above the scratch root (TMPDIR) rw: its agent could
# swap the scratch root (or its case's dir, or its workspace) for a symlink, and eval, as root,
# followed it: an overlay case's changes (git's own included, over any conflict) applied where
# it pointed, its case dir removed there (a root-only file of the operator's here), the next
# case's dir, fixture copy and log made there. The scratch root is agentjail's own during the
# eval: such a case is refused before its agent runs, by the rule that never mounts agentjail's
# own files writable. (eval's apply checks its copy's identity too: aj_run_workspace_check.)
VICTIM=$TEST_TMP/victim
mkdir -p "$VICTIM/case-1"
echo precious >"$VICTIM/case-1/keep.txt"
chmod 600 "$VICTIM/case-1/keep.txt"
PS=$(write_profile evalswap "{\"extends\": \"default\", \"filesystem\": {\"rw\": [\"$TMPDIR:/mnt/tmp\"]}}")
PB=$(write_profile evalbound "{\"extends\": \"default\", \"filesystem\": {\"workspace\": {\"mode\": \"overlay\"},
        \"rw\": [\"$TMPDIR:/mnt/tmp\"]}}")
cat >"$TEST_TMP/swap.json" <<EOF
{ "cases": [ { "name": "swap", "profile": "$PS",
               "command": ["sh", "-c", "cd /mnt/tmp && d=\$(echo agentjail-eval.*) && mv \$d moved && ln -s $VICTIM \$d && echo swapped"] },
             { "name": "next", "command": ["true"], "fixture": "fx/dir" },
             { "name": "reroute", "profile": "$PB",
               "command": ["sh", "-c", "echo planted > evil && cd /mnt/tmp/agentjail-eval.*/case-* && mv workspace ws.orig && ln -s $VICTIM workspace && echo moved"] } ] }
EOF
eval_run "$TEST_TMP/swap.json" --json
next_id=$(jq -r '.cases[1].run // empty' <<<"$EVAL_OUT" 2>/dev/null)
is "$(cat "$VICTIM/case-1/keep.txt" 2>&1)" precious \
        "an agent's symlink in place of the scratch root: eval removes nothing where it points" || eval_diag
ok "... nor makes the next case's directory there" test ! -e "$VICTIM/case-2"
unlike "$(jq -r '.cwd' "$AGENTJAIL_STATE_DIR/runs/$next_id/run.json" 2>&1)" "^$VICTIM/" \
        "... nor runs the next case there"
ok "an agent's symlink in place of its overlay's scratch copy: nothing is written where it points" \
        test ! -e "$VICTIM/evil"
like "$(jq -r '"\(.cases[0].result) \(.cases[0].failures[0])"' <<<"$EVAL_OUT" 2>&1)" \
        "^fail exit status 125, expected 0: .*filesystem.rw: refusing '$TMPDIR': it contains '$TMPDIR/agentjail-eval\\." \
        "the case binding the scratch root's parent rw is refused" || eval_diag
like "$(jq -r '"\(.cases[2].result) \(.cases[2].failures[0])"' <<<"$EVAL_OUT" 2>&1)" \
        "^fail exit status 125, expected 0: .*refusing '$TMPDIR'" "... an overlay case too"
is "$(jq -r '.cases[1].result' <<<"$EVAL_OUT" 2>&1)" pass "the next case runs and passes"
# Anywhere in the scratch root but the case's own workspace (the run's cwd): its case dir, where
# its log is (a bind by its path, as --rw gives it), refused, saying which rule; the scratch root
# or another case's dir read-only too (other cases' workspaces and logs); its workspace's own
# directories are the agent's to have.
S=$TMPDIR/agentjail-eval.byhand
mkdir -p "$S/case-1/workspace/sub"
export AGENTJAIL_EVAL_SCRATCH=$S
pushd "$S/case-1/workspace" >/dev/null || exit 1
run_jail --rw "$S/case-1:/mnt/case" -- true
is "$JAIL_RC" 125 "a case's run binding its case dir rw is refused (exit 125)" || jail_diag
like "$JAIL_ERR" "--rw: refusing '$S/case-1': it is inside '$S', agentjail eval's scratch dir .*\\(rule: agentjail's scratch dir is never mounted, even read-only: during an eval" \
        "... saying it is inside the scratch dir, by the rule for agentjail's own files"
mkdir -p "$S/case-2/workspace"
for ro in "$S" "$S/case-2"; do
        run_jail --ro "$ro:/mnt/scratch" -- ls /mnt/scratch
        is "$JAIL_RC" 125 "a case's run binding '${ro#"$TMPDIR"/}' read-only is refused (exit 125)" || jail_diag
        like "$JAIL_ERR" "--ro: refusing '$ro': it is .*agentjail eval's scratch dir .*\\(rule: agentjail's scratch dir is never mounted, even read-only" \
                "... saying why" || jail_diag
done
run_jail --rw "$S/case-1/workspace/sub:/mnt/sub" --ro "$S/case-1/workspace/sub:/mnt/ro" -- \
        sh -c 'echo mine > /mnt/sub/own.txt && cat /mnt/ro/own.txt'
popd >/dev/null || exit 1
is "$JAIL_RC/$(cat "$S/case-1/workspace/sub/own.txt" 2>&1)" 0/mine \
        "one binding a directory of its own workspace rw and read-only runs" || jail_diag
unset AGENTJAIL_EVAL_SCRATCH
rm -rf "$VICTIM" "$TMPDIR/moved" "$TMPDIR"/agentjail-eval.* "$S"

# The case's workspace is read through the directory eval made and holds, never by its path
# again: here something else (the test, as an agent through a bind could before) swaps the path
# for a symlink to a directory of the host's while the case runs; its "files" checks still see
# what the agent left, never the host's files.
VICTIM=$TEST_TMP/victim
mkdir -p "$VICTIM"
echo host >"$VICTIM/secret.txt"
cat >"$TEST_TMP/held.json" <<EOF
{ "cases": [ { "name": "held", "command": ["sh", "-c", "touch started && sleep 3 && echo mine > out.txt"],
               "expect": { "files": [ { "path": "out.txt", "equals": "mine\n" },
                                      { "path": "secret.txt", "exists": false } ] } } ] }
EOF
# swap_when_started PARENT FUNC: in the background (its pid in swapper), once the first case of
# the eval whose scratch root is in PARENT has started (its workspace holds "started"), runs
# FUNC with that scratch root.
swap_when_started() {
        (
                for _ in $(seq 100); do
                        for d in "$1"/agentjail-eval.*; do
                                if [[ -e "$d/case-1/workspace/started" ]]; then
                                        "$2" "$d"
                                        exit
                                fi
                        done
                        sleep 0.1
                done
        ) &
        swapper=$!
}
swap_workspace() { mv "$1/case-1/workspace" "$1/case-1/ws.orig" && ln -s "$VICTIM" "$1/case-1/workspace"; }
swap_when_started "$TMPDIR" swap_workspace
eval_run "$TEST_TMP/held.json" --json
wait "$swapper"
is "$(jq -r '"\(.cases[0].result) \(.cases[0].failures // [] | join("; "))"' <<<"$EVAL_OUT" 2>&1)" "pass " \
        "the workspace's path swapped for a symlink mid-run: its files checks read the directory the run had" ||
        eval_diag
is "$(ls -A "$VICTIM")" secret.txt "... and nothing is written or removed where the symlink points"
rm -rf "$VICTIM"

# The scratch root is removed at the end through the directory fds held since it was made
# (its parent's and its own), never by its path: here the scratch root's parent (TMPDIR) is
# swapped for a symlink to a host directory holding a directory of the same name while the
# case runs; eval removed that one, following the symlink, and left its own behind.
VICTIM=$TEST_TMP/victim
SWAPPED=$TEST_TMP/tmpswap
mkdir -p "$VICTIM" "$SWAPPED"
cat >"$TEST_TMP/parent.json" <<'EOF'
{ "cases": [ { "name": "parent", "command": ["sh", "-c", "touch started && sleep 3"] } ] }
EOF
swap_parent() {
        mkdir -p "$VICTIM/${1##*/}" && echo precious >"$VICTIM/${1##*/}/keep.txt" &&
                mv "$SWAPPED" "$SWAPPED.orig" && ln -s "$VICTIM" "$SWAPPED"
}
swap_when_started "$SWAPPED" swap_parent
TMPDIR=$SWAPPED
eval_run "$TEST_TMP/parent.json"
TMPDIR=$TEST_TMP/tmp
wait "$swapper"
is "$(cat "$VICTIM"/agentjail-eval.*/keep.txt 2>&1)" precious \
        "the scratch root's parent swapped for a symlink: nothing is removed where it points" || eval_diag
is "$(ls -A "$SWAPPED.orig" 2>&1)" "" "... and the scratch root eval made is removed from where it is"
rm -rf "$VICTIM" "$SWAPPED" "$SWAPPED.orig"

# The progress line is for a terminal only.
unlike "$EVAL_ERR" $'\r' "no progress line when stderr is not a terminal"
if command -v script >/dev/null; then
        P_OUT=$(cd "$TEST_TMP" && timeout -k 5 60 script -qec "'$AGENTJAIL' eval '$TEST_TMP/pair.json' -j 2" /dev/null \
                </dev/null 2>&1)
        like "$P_OUT" $'\r\\[0/2\\] [0-9]+s running: a, b' "on a terminal, a progress line names the running cases"
        collect_run_ids
else
        skip "on a terminal, a progress line names the running cases" "script(1) is not installed"
fi

# Ctrl-C: the running cases' runs are stopped, the others not run; exit 1, nothing left.
cat >"$TEST_TMP/long.json" <<'EOF'
{ "cases": [ { "name": "long", "command": ["sleep", "60"] }, { "name": "later", "command": ["true"] } ] }
EOF
env --default-signal=INT "$AGENTJAIL" eval "$TEST_TMP/long.json" </dev/null >"$TEST_TMP/int.out" 2>&1 &
int_pid=$!
BG_PIDS+=("$int_pid")
sleep 1.5 # the first case's jail is up
kill -INT "$int_pid"
wait_exit "$int_pid" 30
is "$WAIT_RC" 1 "an interrupted eval exits 1"
INT_OUT=$(cat "$TEST_TMP/int.out")
like "$INT_OUT" $'\nlong +error +[0-9.]+s +[0-9a-f]{12} +interrupted: the run was stopped\n' \
        "the running case is an error: its run was stopped" || diag "$INT_OUT"
like "$INT_OUT" $'\nlater +error +[0-9.]+s +- +not run: interrupted\n' "the case not started is reported as not run"
collect_run_ids
is "$(ls -A "$TMPDIR")" "" "an interrupted eval removes its scratch workspaces"

# ---- a case's profile by name is found where eval runs, as `run --profile` finds it: not in
# the scratch copy of the fixture (the case's run starts there), whose ./profiles is the
# repository the agent works on, last on the search path
OPS="$TEST_TMP/ops"
mkdir -p "$OPS/profiles" "$TEST_TMP/fxp/profiles"
printf '%s\n' '{"extends": "default", "env": {"set": {"WHOSE": "the-operators"}}}' >"$OPS/profiles/evalops.json"
printf '%s\n' '{"extends": "default", "env": {"set": {"WHOSE": "planted"}}}' >"$TEST_TMP/fxp/profiles/evalops.json"
cat >"$TEST_TMP/named.json" <<'EOF'
{ "cases": [
    { "name": "named", "command": ["sh", "-c", "echo \"$WHOSE\" > whose.txt"], "fixture": "fxp", "profile": "evalops",
      "expect": { "files": [ { "path": "whose.txt", "equals": "the-operators\n" } ] } },
    { "name": "not-found", "command": ["true"], "profile": "no-such-profile-here" } ] }
EOF
pushd "$OPS" >/dev/null
eval_run "$TEST_TMP/named.json"
popd >/dev/null
is "$EVAL_RC" 1 "a suite with a profile that is nowhere: exit 1" || eval_diag
like "$(row named)" '^named +pass ' "the operator's evalops (./profiles where eval runs), not the fixture's" || eval_diag
like "$(row not-found)" '^not-found +error +[0-9.]+s +- +profile: profile "no-such-profile-here" not found' \
        "a profile found nowhere: the case is an error, never run" || eval_diag

# ... and so is each name its extends chain names: the case's run loads its profile again in
# the scratch copy, whose ./profiles comes last on the search path. A fixture whose profiles
# is a symlink to a directory elsewhere had the run resolve `extends: "evalbase"` there, to a
# file eval never loaded nor protected (its alert.exec ran on the host as root). The run
# refuses a chain other than the one eval loaded for its case when the suite started.
mkdir -p "$TEST_TMP/elsewhere" "$TEST_TMP/fxl"
printf '%s\n' '{"extends": "evalbase"}' >"$OPS/profiles/evalchain.json"
printf '%s\n' '{"extends": "default", "env": {"set": {"WHOSE": "the-operators"}}}' >"$OPS/profiles/evalbase.json"
printf '%s\n' '{"extends": "default", "env": {"set": {"WHOSE": "planted"}}}' >"$TEST_TMP/elsewhere/evalbase.json"
ln -sfn "$TEST_TMP/elsewhere" "$TEST_TMP/fxl/profiles"
cat >"$TEST_TMP/chained.json" <<'EOF'
{ "cases": [
    { "name": "chained", "command": ["sh", "-c", "echo \"$WHOSE\" > whose.txt"],
      "fixture": "fxl", "profile": "evalchain",
      "expect": { "files": [ { "path": "whose.txt", "equals": "the-operators\n" } ] } } ] }
EOF
pushd "$OPS" >/dev/null
eval_run "$TEST_TMP/chained.json" --json
popd >/dev/null
chained_run=$(jq -r '.cases[0].run // ""' <<<"$EVAL_OUT" 2>/dev/null)
is "$(jq -r '.cases[0].exit' <<<"$EVAL_OUT" 2>&1)" 125 \
        "an extends chain resolved elsewhere than when the suite started: the case's run refuses (125)" || eval_diag
like "$(jq -r '.cases[0].failures[0]' <<<"$EVAL_OUT" 2>&1)" \
        "^exit status 125, expected 0: agentjail: $OPS/profiles/evalchain\\.json: extends: the chain resolves to '$TEST_TMP/elsewhere/evalbase\\.json', not '" \
        "... naming the file it found" || eval_diag
# The run's whole error, as a case's run started by hand in such a workspace gives it.
pushd "$TEST_TMP/fxl" >/dev/null || exit 1
AGENTJAIL_EVAL_PROFILE="$OPS/profiles/evalchain.json"$'\n'"$OPS/profiles/evalbase.json"$'\n'"$AGENTJAIL_SOURCE_DIR/profiles/default.json"$'\n' \
        run_jail --profile "$OPS/profiles/evalchain.json" -- true
popd >/dev/null || exit 1
is "$JAIL_RC" 125 "a run whose chain is not the one eval handed it is refused" || jail_diag
like "$JAIL_ERR" "$OPS/profiles/evalchain\\.json: extends: the chain resolves to '$TEST_TMP/elsewhere/evalbase\\.json', not '$OPS/profiles/evalbase\\.json' as agentjail eval loaded it when the suite started .*refusing a profile nobody checked" \
        "... naming the file it found and the one eval loaded" || jail_diag
isnt "$(jq -r '.env.WHOSE // .profile.resolved.env.set.WHOSE // ""' \
        "$AGENTJAIL_STATE_DIR/runs/$chained_run/run.json" 2>/dev/null)" planted "... never running under the other file"

# ---- a case's run loads its profile, and its fixture is copied, when it starts, after the
# cases before it: a case whose profile binds the directory of a later case's profile rw had
# its agent write that profile (an alert.exec that ran on the host as root, the later case's
# verdict), or a file of its extends chain, or the later case's fixture (its starting state).
# Every case's profile files, alert command and fixture are refused as writable to every
# case's run.
REPO=$TEST_TMP/prepo
mkdir -p "$REPO/base" "$REPO/fx" "$REPO/hooks"
printf '%s\n' '{"extends": "default", "env": {"set": {"WHOSE": "the-operators"}}}' >"$REPO/base/chain.json"
printf '#!/bin/sh\ncat >/dev/null\n' >"$REPO/hooks/alert.sh"
chmod 0755 "$REPO/hooks/alert.sh"
printf '%s\n' "{\"extends\": \"$REPO/base/chain.json\", \"alert\": {\"exec\": [\"$REPO/hooks/alert.sh\"]}}" \
        >"$REPO/later.json"
echo unsolved >"$REPO/fx/state.txt"
PW=$(write_profile evalwriter "{\"extends\": \"default\", \"filesystem\": {\"rw\": [\"$REPO/base:/mnt/base\"]}}")
PF=$(write_profile evalfxwriter "{\"extends\": \"default\", \"filesystem\": {\"rw\": [\"$REPO/fx:/mnt/fx\"]}}")
PH=$(write_profile evalhookwriter "{\"extends\": \"default\", \"filesystem\": {\"rw\": [\"$REPO/hooks:/mnt/hooks\"]}}")
cat >"$TEST_TMP/rewrite.json" <<EOF
{ "cases": [
    { "name": "writer", "profile": "$PW",
      "command": ["sh", "-c", "echo '{\"extends\": \"default\", \"env\": {\"set\": {\"WHOSE\": \"planted\"}}}' >/mnt/base/chain.json"] },
    { "name": "fxwriter", "profile": "$PF", "command": ["sh", "-c", "echo solved >/mnt/fx/state.txt"] },
    { "name": "hookwriter", "profile": "$PH", "command": ["sh", "-c", "echo 'id -u >/tmp/on-host' >>/mnt/hooks/alert.sh"] },
    { "name": "later", "profile": "$REPO/later.json", "fixture": "$REPO/fx",
      "command": ["sh", "-c", "echo \"\$WHOSE\" > whose.txt"],
      "expect": { "files": [ { "path": "whose.txt", "equals": "the-operators\n" },
                             { "path": "state.txt", "equals": "unsolved\n" } ] } } ] }
EOF
eval_run "$TEST_TMP/rewrite.json" --json
is "$(jq -r '.env.set.WHOSE' "$REPO/base/chain.json" 2>&1)" the-operators \
        "a case's agent cannot rewrite a file of a later case's profile (its extends chain)" || eval_diag
like "$(jq -r '"\(.cases[0].result) \(.cases[0].failures[0])"' <<<"$EVAL_OUT" 2>&1)" \
        "^fail exit status 125, expected 0: .*filesystem.rw: refusing '$REPO/base': it contains '$REPO/base/chain.json'" \
        "the case binding it rw is refused, saying why" || eval_diag
like "$(jq -r '"\(.cases[1].result) \(.cases[1].failures[0])"' <<<"$EVAL_OUT" 2>&1)" \
        "^fail exit status 125, expected 0: .*filesystem.rw: refusing '$REPO/fx': it is '$REPO/fx'" \
        "a case binding a later case's fixture rw is refused too" || eval_diag
is "$(cat "$REPO/fx/state.txt")" unsolved "the fixture is as the operator left it"
like "$(jq -r '"\(.cases[2].result) \(.cases[2].failures[0])"' <<<"$EVAL_OUT" 2>&1)" \
        "^fail exit status 125, expected 0: .*filesystem.rw: refusing '$REPO/hooks': it contains '$REPO/hooks/alert.sh" \
        "a case binding the directory of a later case's alert command rw is refused too" || eval_diag
is "$(cat "$REPO/hooks/alert.sh")" "$(printf '#!/bin/sh\ncat >/dev/null')" "the alert command is as the operator left it"
is "$(jq -r '.cases[3].result' <<<"$EVAL_OUT" 2>&1)" pass "the later case runs under the operator's profile, from its fixture" ||
        eval_diag

# ---- a case's profile that does not load when the suite starts has no files eval can tell
# the runs to protect: an earlier case's agent wrote the file its extends chain lacked (or the
# profile itself), and the later case ran under the agent's profile. Such a case is an
# error, never run, like a profile found nowhere.
BREPO=$TEST_TMP/brepo
mkdir -p "$BREPO"
printf '%s\n' "{\"extends\": \"$BREPO/base.json\"}" >"$BREPO/later.json"
PB=$(write_profile evalplanter "{\"extends\": \"default\", \"filesystem\": {\"rw\": [\"$BREPO:/mnt/b\"]}}")
cat >"$TEST_TMP/broken.json" <<EOF
{ "cases": [
    { "name": "planter", "profile": "$PB",
      "command": ["sh", "-c", "echo '{\"extends\": \"default\", \"env\": {\"set\": {\"WHOSE\": \"planted\"}}}' >/mnt/b/base.json"] },
    { "name": "broken", "profile": "$BREPO/later.json", "command": ["sh", "-c", "echo \"\$WHOSE\" > whose.txt"] } ] }
EOF
eval_run "$TEST_TMP/broken.json" --json
like "$(jq -r '"\(.cases[1].result) \(.cases[1].run) \(.cases[1].error)"' <<<"$EVAL_OUT" 2>&1)" \
        "^error null profile: .*base.json" \
        "a case whose profile does not load when the suite starts never runs (an earlier case planted its base)" ||
        eval_diag

# ---- the statuses agentjail's own kill produces pass an "exit" assertion only when run.json
# says agentjail caused them. 137 and 143 (the wall limit's SIGKILL and SIGTERM, the memory
# cap's OOM kill) are 128+N for any signal: an agent passed "the wall limit stops the run"
# ("exit": 137) by `kill -KILL $$`, or 143 by `kill -TERM $$`; and after the wall limit's
# SIGTERM (reason "wall-limit", not "exited") by `exit 123`, "a tighter cap kills the run".
PW=$(write_profile evalwall '{"extends": "default", "limits": {"wall": "2s", "wall_grace": "1s"}}')
PW60=$(write_profile evalwall60 '{"extends": "default", "limits": {"wall": "60s"}}')
cat >"$TEST_TMP/kills.json" <<EOF
{ "defaults": { "profile": "$PW60", "timeout": "30s" },
  "cases": [
    { "name": "self-kill", "command": ["sh", "-c", "kill -KILL \$\$"], "expect": { "exit": 137 } },
    { "name": "self-term", "command": ["sh", "-c", "kill -TERM \$\$"], "expect": { "exit": 143 } },
    { "name": "wall-term", "command": ["sleep", "20"], "profile": "$PW", "expect": { "exit": 143 } },
    { "name": "wall-kill", "command": ["sh", "-c", "trap '' TERM; sleep 20"], "profile": "$PW",
      "expect": { "exit": 137 } },
    { "name": "self-123-after-wall", "command": ["sh", "-c", "trap 'exit 123' TERM; sleep 20 & wait"],
      "profile": "$PW", "expect": { "exit": 123 } }
  ] }
EOF
eval_run "$TEST_TMP/kills.json" --json
is "$EVAL_RC" 1 "a suite whose agents die by their own hand fails" || eval_diag
is "$(jq -r '.cases[] | "\(.name) \(.result) \(.exit)"' <<<"$EVAL_OUT" 2>&1)" "self-kill fail 137
self-term fail 143
wall-term pass 143
wall-kill pass 137
self-123-after-wall fail 123" "137 and 143 pass only for the wall limit's signals, 123 only for agentjail's kill" ||
        eval_diag
like "$(jq -r '.cases[0].failures[0]' <<<"$EVAL_OUT" 2>&1)" \
        "^exit status 137 is the command's own death by signal 9 \\(run.json: signaled\\), not agentjail's kill" \
        "... saying whose the status was"
like "$(jq -r '.cases[4].failures[0]' <<<"$EVAL_OUT" 2>&1)" \
        "^exit status 123 is the command's own \\(run.json: wall-limit\\), not agentjail's kill" \
        "... and a 123 the command exited with after the wall limit's SIGTERM is its own"

# ---- bad suites: 125, FILE:LINE:COL and the key
printf '{"cases": [\n  {"name": "x", "command": ["true"], "expect": {"exit": "zero"}}\n]}\n' >"$TEST_TMP/bad.json"
eval_run "$TEST_TMP/bad.json"
is "$EVAL_RC" 125 "a suite with a bad value exits 125"
is "$EVAL_ERR" "agentjail eval: $TEST_TMP/bad.json:2:57: cases[0].expect.exit: expected an exit status (0 to 255)" \
        "the error names the file, line, column and key"
printf '{"cases": [{"name": "x", "command": ["true"],\n "fixture": "not-there"}]}\n' >"$TEST_TMP/nofx.json"
eval_run "$TEST_TMP/nofx.json"
is "$EVAL_RC" 125 "a missing fixture exits 125 before any case runs"
like "$EVAL_ERR" "nofx.json:2:13: cases\\[0\\]\\.fixture: '$TEST_TMP/not-there': No such file or directory" \
        "the missing fixture's error points at it"
# A pattern glibc would take gigabytes to compile (\b 64 times) is refused after a bounded
# child tried it, before any case runs; agentjail eval itself stays small.
python3 -c 'import json, sys; json.dump({"cases": [{"name": "x", "command": ["true"], "expect": {"files": [{"path": "f", "matches": "\\b" * 64}]}}]}, open(sys.argv[1], "w"))' \
        "$TEST_TMP/anchors.json"
before=$(date +%s%N)
eval_run "$TEST_TMP/anchors.json"
is "$EVAL_RC" 125 "a pattern past the compile bounds exits 125"
like "$EVAL_ERR" "anchors.json:1:[0-9]+: cases\\[0\\]\\.expect\\.files\\[0\\]\\.matches: this regular expression is refused: compiling it" \
        "the error points at the pattern and says why"
took_ms=$((($(date +%s%N) - before) / 1000000))
ok "and it is refused within the time bound ($took_ms ms)" test "$took_ms" -lt 15000
eval_run "$TEST_TMP/pair.json" -j 0
is "$EVAL_RC" 2 "-j 0 is a usage error (2)"

done_testing

#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The overlay workspace: the agent works on an overlay of the workspace, its writes are
# kept in the run directory, the workspace itself is untouched until the operator
# reviews them (agentjail diff) and applies (commit) or drops (discard) them.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root # the overlay is built in the host's user namespace
setup_dirs
# git's own files: the agent's git in the jail, the operator's on the host.
ok "git is installed (the tests of git's own files need it)" command -v git || done_testing

OV=$(write_profile overlay '{"extends": "default", "filesystem": {"workspace": {"path": ".", "mode": "overlay"}}}')

# A workspace owned by someone other than root, so ownership on commit is visible.
reset_workspace() {
        find "$WORKSPACE" -mindepth 1 -maxdepth 1 ! -name probe -exec rm -rf {} +
        printf 'original\n' >"$WORKSPACE/keep.txt"
        printf 'doomed\n' >"$WORKSPACE/gone.txt"
        mkdir -p "$WORKSPACE/sub" "$WORKSPACE/olddir/deep"
        printf 'inner\n' >"$WORKSPACE/sub/inner.txt"
        printf 'a\n' >"$WORKSPACE/olddir/deep/a"
        chown -R 4242:4343 "$WORKSPACE"
        chown 0:0 "$WORKSPACE/probe"
}
snapshot() { (cd "$WORKSPACE" && find . -printf '%p %y %m %U:%G %s\n' | sort && cat keep.txt); }

# ------------------------------------------------------------------ the agent's view, the host's view
reset_workspace
BEFORE=$(snapshot)
run_jail -p "$OV" -- /bin/sh -c '
        set -e
        printf "changed\n" >>keep.txt
        rm gone.txt
        printf "new\n" >new.txt
        mkdir newdir && printf "x\n" >newdir/x
        rm -r sub && mkdir sub && printf "fresh\n" >sub/fresh
        rm -r olddir
        printf "#!/bin/sh\n" >suid
        if chmod 4755 suid 2>/dev/null; then echo "chmod-suid=allowed"; else echo "chmod-suid=refused"; fi
        ln -s /etc/passwd link
        echo "inside: $(cat keep.txt | tr "\n" " ")$(ls | tr "\n" " ")"'
is "$JAIL_RC" 0 "an overlay run works like a writable workspace" || jail_diag
like "$JAIL_OUT" "inside: original changed .*new.txt" "the agent sees its own changes"
is "$(snapshot)" "$BEFORE" "the workspace on the host is untouched after the run"
RUN=$JAIL_RUN_ID
is "$(jq -r '.workspace | "\(.mode) \(.changes)"' "$JAIL_RUN_DIR/run.json")" "overlay pending" \
        "run.json: an overlay workspace with changes pending"
ok "the changes are kept in the run directory" test -d "$JAIL_RUN_DIR/workspace/upper"
ok "no overlay mount is left on the host" test -z "$(grep -F "$TEST_TMP" /proc/self/mountinfo)"

aj inspect "$RUN"
like "$OUT" "workspace +overlay over $WORKSPACE, changes pending" "inspect shows the pending changes" || op_diag

# ------------------------------------------------------------------ diff
aj diff "$RUN"
is "$RC" 0 "diff exits 0" || op_diag
like "$OUT" "M  keep.txt  17 bytes" "diff: the modified file"
like "$OUT" "D  gone.txt" "diff: the deleted file"
like "$OUT" "A  new.txt  4 bytes" "diff: the added file"
like "$OUT" "A  newdir/" "diff: the added directory"
like "$OUT" "A  newdir/x" "diff: what is in it"
like "$OUT" "R  sub/" "diff: the replaced directory"
like "$OUT" "D  olddir/" "diff: the deleted directory"
like "$OUT" "A  link \\(symlink\\) -> /etc/passwd  \\(points outside the workspace\\)" \
        "diff: the symlink, where it points, marked as pointing outside the workspace"
unlike "$OUT" "olddir/deep" "diff: a deleted directory's contents are not listed one by one"
aj diff "$RUN" --json
is "$(jq -r '[.changes[] | "\(.change):\(.path)"] | sort | join(",")' <<<"$OUT")" \
        "added:link,added:new.txt,added:newdir,added:newdir/x,added:sub/fresh,added:suid,deleted:gone.txt,deleted:olddir,modified:keep.txt,replaced:sub" \
        "diff --json: every change" || op_diag
is "$(jq -r .conflicts <<<"$OUT")" 0 "diff --json: no conflicts"
aj diff "$RUN" --patch
is "$RC" 0 "diff --patch exits 0" || op_diag
like "$OUT" $'--- a/keep.txt\n\\+\\+\\+ b/keep.txt\n@@ -1 \\+1,2 @@\n original\n\\+changed' "diff --patch: the modified file's change"
like "$OUT" $'--- a/gone.txt\n\\+\\+\\+ b/gone.txt\n@@ -1 \\+0,0 @@\n-doomed' "diff --patch: the deleted file's content"
like "$OUT" $'\\+\\+\\+ b/newdir/x\n@@ -0,0 \\+1 @@\n\\+x' "diff --patch: an added file's content"
unlike "$OUT" "root:" "diff --patch never follows the agent's symlink (to /etc/passwd)"
aj diff "$RUN" --patch --json
is "$RC" 2 "--patch and --json do not mix"

# ------------------------------------------------------------------ commit
like "$JAIL_OUT" "chmod-suid=refused" "the agent cannot set a setuid bit, even in its overlay"
# The commit strips the bits on its own as well: planted here on the host side (the jail no
# longer can), in the upper dir the commit copies from.
chmod 4755 "$JAIL_RUN_DIR/workspace/upper/suid"
is "$(stat -c %a "$JAIL_RUN_DIR/workspace/upper/suid")" 4755 "a setuid file is planted in the upper dir"
aj commit "$RUN"
is "$RC" 0 "commit exits 0" || op_diag
like "$OUT" "committed to $WORKSPACE" "commit says where"
is "$(cat "$WORKSPACE/keep.txt")" $'original\nchanged' "commit: the modified file"
ok "commit: the deleted file is gone" test ! -e "$WORKSPACE/gone.txt"
ok "commit: the deleted directory is gone" test ! -e "$WORKSPACE/olddir"
is "$(cat "$WORKSPACE/new.txt")" new "commit: the new file"
is "$(cat "$WORKSPACE/newdir/x")" x "commit: the new directory"
is "$(ls "$WORKSPACE/sub")" fresh "commit: the replaced directory has only the new content"
is "$(stat -c %U:%G "$WORKSPACE/new.txt" | sed 's/UNKNOWN/?/g'; stat -c %u:%g "$WORKSPACE/new.txt")" \
        "$(stat -c %U:%G "$WORKSPACE" | sed 's/UNKNOWN/?/g'; echo 4242:4343)" "commit: new files belong to the workspace owner"
is "$(stat -c %u:%g "$WORKSPACE/keep.txt")" 4242:4343 "commit: modified files too"
is "$(stat -c %a "$WORKSPACE/suid")" 755 "commit: the setuid bit is dropped"
is "$(readlink "$WORKSPACE/link")" /etc/passwd "commit: a symlink stays a symlink"
ok "commit: the agent's changes are no longer kept" test ! -e "$JAIL_RUN_DIR/workspace"
is "$(jq -r .workspace.changes "$JAIL_RUN_DIR/run.json")" committed "run.json: committed"
is "$(events_of workspace.commit "$JAIL_RUN_DIR" | jq -r '"\(.added) \(.modified) \(.deleted) \(.replaced)"')" "6 1 2 1" \
        "the chain records the commit and its counts"
aj logs "$RUN" --verify
is "$RC" 0 "the chain, with the operator's commit appended, is intact" || op_diag
is "$(jq -r '"\(.events.end) \(.events.count)"' "$JAIL_RUN_DIR/run.json")" "workspace.commit $(wc -l <"$JAIL_RUN_DIR/events.jsonl")" \
        "run.json's anchor moved to the appended commit"
cp "$JAIL_RUN_DIR/events.jsonl" "$TEST_TMP/events.bak"
sed -i '$d' "$JAIL_RUN_DIR/events.jsonl"
aj logs "$RUN" --verify
is "$RC" 1 "removing the operator's commit event is found by --verify"
cp "$TEST_TMP/events.bak" "$JAIL_RUN_DIR/events.jsonl"
aj commit "$RUN"
is "$RC" 1 "a second commit is refused"
like "$ERR" "committed already" "and says why"
aj discard "$RUN"
is "$RC" 1 "so is a discard after the commit"

# ------------------------------------------------------------------ discard
reset_workspace
BEFORE=$(snapshot)
run_jail -p "$OV" -- /bin/sh -c 'printf "bad\n" >keep.txt; rm -r sub; printf "junk\n" >junk'
is "$JAIL_RC" 0 "a second overlay run" || jail_diag
RUN2=$JAIL_RUN_ID
aj rollback "$RUN2"
like "$OUT" "workspace: $WORKSPACE untouched; the agent's changes are kept: 'agentjail discard $RUN2' drops them" \
        "rollback points at discard while an overlay's changes are pending" || op_diag
aj discard "$RUN2" --json
is "$RC" 0 "discard exits 0" || op_diag
is "$(jq -r '"\(.ok) \(.op)"' <<<"$OUT")" "true discard" "discard --json"
is "$(snapshot)" "$BEFORE" "after discard the workspace is as it was"
ok "discard removes the kept changes" test ! -e "$JAIL_RUN_DIR/workspace"
is "$(jq -r .workspace.changes "$JAIL_RUN_DIR/run.json")" discarded "run.json: discarded"
ok "the chain records the discard" test -n "$(events_of workspace.discard "$JAIL_RUN_DIR")"
aj diff "$RUN2"
is "$RC" 1 "nothing to diff after a discard"
aj rollback "$RUN2"
like "$OUT" "workspace: the agent's changes were discarded" "rollback says the changes were discarded"

# ------------------------------------------------------------------ conflicts
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'printf "agent\n" >keep.txt; printf "agent\n" >other.txt'
RUN3=$JAIL_RUN_ID
printf 'operator\n' >"$WORKSPACE/keep.txt"
touch -d '+1 minute' "$WORKSPACE/keep.txt"
aj diff "$RUN3"
like "$OUT" "M! keep.txt" "diff marks a path that changed in the workspace during the run" || op_diag
aj commit "$RUN3"
is "$RC" 1 "commit refuses to overwrite it" || op_diag
like "$ERR" "--force" "and says how to override"
is "$(cat "$WORKSPACE/keep.txt")" operator "nothing was changed"
ok "not even the other files" test ! -e "$WORKSPACE/other.txt"
aj commit "$RUN3" --force
is "$RC" 0 "commit --force" || op_diag
is "$(cat "$WORKSPACE/keep.txt")" agent "--force applies the agent's version"

# ------------------------------------------------------------------ one decision at a time
# A discard started while a commit was applying removed the upper dir under it: the commit
# stopped half way and the run was recorded "discarded", the agent's files in the workspace.
# commit, discard and removing the run (prune, quarantine purge) hold a lock on its kept
# changes (<run>/workspace) while they work: here flock(1) holds it, as the first would.
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'printf "agent\n" >new.txt'
is "$JAIL_RC" 0 "an overlay run to decide" || jail_diag
RUN4=$JAIL_RUN_ID
RUN4_DIR=$JAIL_RUN_DIR
# while_deciding VERB ARGS...: agentjail VERB with the run's lock held by another process.
while_deciding() {
        timeout -k 5 30 flock "$RUN4_DIR/workspace" "$AGENTJAIL" "$@" >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
        RC=$?
        OUT=$(cat "$TEST_TMP/op.out")
        ERR=$(cat "$TEST_TMP/op.err")
}
while_deciding discard "$RUN4"
is "$RC" 1 "a discard while another decision is under way: refused" || op_diag
like "$ERR" "another 'agentjail commit' or 'discard' of it is running" "... and says why"
ok "... the changes are kept" test -d "$RUN4_DIR/workspace/upper"
is "$(jq -r .workspace.changes "$RUN4_DIR/run.json")" pending "... and still pending"
while_deciding commit "$RUN4"
is "$RC" 1 "a second commit at once: refused" || op_diag
ok "... nothing was applied" test ! -e "$WORKSPACE/new.txt"
while_deciding prune --keep 0 --discard-pending
ok "prune leaves a run whose changes are being decided" test -d "$RUN4_DIR/workspace/upper"
like "$OUT$ERR" "being committed or discarded" "... and says why" || op_diag
aj commit "$RUN4"
is "$RC" 0 "once the other is done, commit" || op_diag
is "$(cat "$WORKSPACE/new.txt")" agent "... applies the changes"

# ------------------------------------------------------------------ what a symlink stands for
# A directory replaced by a symlink was listed "M  sub (symlink)": not where it points, nor
# that the commit removes the directory with all it holds (the note was only in --json).
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'rm -r sub && ln -s /root sub && ln -s ../../x olddir/up'
is "$JAIL_RC" 0 "an overlay run replaces a directory by a symlink" || jail_diag
aj diff "$JAIL_RUN_ID"
like "$OUT" "M  sub \\(symlink\\) -> /root  \\(replaces a directory: commit removes it with all it holds\\)  \\(points outside the workspace\\)" \
        "diff shows the target, the directory it removes, and that it points outside" || op_diag
like "$OUT" "A  olddir/up \\(symlink\\) -> \\.\\./\\.\\./x  \\(points outside the workspace\\)" \
        "... a relative target above the workspace's top too"
like "$OUT" "2 symlinks pointing outside the workspace" "... and counts them"
aj diff "$JAIL_RUN_ID" --json
is "$(jq -c '[.changes[] | select(.type == "symlink") | [.path, .target, .outside]]' <<<"$OUT")" \
        '[["olddir/up","../../x",true],["sub","/root",true]]' "diff --json: target and outside" || op_diag
aj commit "$JAIL_RUN_ID" --json
is "$(jq -r .outside <<<"$OUT")" 2 "commit counts them" || op_diag

# ------------------------------------------------------------------ the workspace the run had
# With an rw bind of a directory above its workspace (at another jail path), the agent
# moved the workspace away there and left a symlink in its place: `commit` opened the
# recorded path, followed it, and wrote the agent's files into the directory it named, as
# root, owned by that directory's owner (a root-owned directory here; /etc/cron.d as
# well). run.json records the workspace's identity (dev:ino); diff and commit want it.
MONO=$TEST_TMP/mono
VICTIM=$TEST_TMP/victim
mkdir -p "$MONO/app" "$VICTIM"
printf 'app\n' >"$MONO/app/readme"
chown -R 4242:4343 "$MONO"
MONO_P=$(write_profile mono "{\"extends\": \"default\", \"filesystem\": {\"workspace\": {\"path\": \"$MONO/app\",
        \"mode\": \"overlay\"}, \"rw\": [\"$MONO:/mnt/mono\"]}}")
run_jail -p "$MONO_P" -- /bin/sh -c 'printf "planted\n" >evil && mv /mnt/mono/app /mnt/mono/app.orig &&
        ln -s '"$VICTIM"' /mnt/mono/app && echo moved'
like "$JAIL_OUT" moved "the agent replaces its workspace's path by a symlink through an rw bind above it" || jail_diag
like "$(jq -r .workspace.id "$JAIL_RUN_DIR/run.json")" '^[0-9]+:[0-9]+$' "run.json records the workspace's identity"
aj diff "$JAIL_RUN_ID"
is "$RC" 1 "diff refuses the path that is not the run's workspace" || op_diag
aj commit "$JAIL_RUN_ID"
is "$RC" 1 "commit too" || op_diag
like "$ERR" "is not the directory the run had" "... and says why"
ok "... and writes nothing where the symlink points" test ! -e "$VICTIM/evil"
# A record without the identity (an older agentjail's): the path is opened without
# following any symlink.
jq 'del(.workspace.id)' "$JAIL_RUN_DIR/run.json" >"$TEST_TMP/run.json" && cp "$TEST_TMP/run.json" "$JAIL_RUN_DIR/run.json"
aj commit "$JAIL_RUN_ID"
like "$ERR" "has a symlink on its path, and the run recorded no identity" \
        "without the identity, commit refuses a symlink on the path" || op_diag
ok "... and writes nothing there" test ! -e "$VICTIM/evil"
rm "$MONO/app" && mv "$MONO/app.orig" "$MONO/app"
aj commit "$JAIL_RUN_ID"
is "$RC" 0 "the workspace back in place, commit applies the changes" || op_diag
is "$(cat "$MONO/app/evil")" planted "... to it"
rm -rf "$MONO" "$VICTIM"

# ------------------------------------------------------------------ a commit that fails half way
# A directory the agent deleted that holds a mount on the host: commit never crosses one,
# and found it half way, what came before applied and the directory half emptied. It
# looks first now, and applies nothing.
reset_workspace
mkdir -p "$WORKSPACE/z/mnt" "$TEST_TMP/z-mounted" && printf 'z\n' >"$WORKSPACE/z/f" && chown -R 4242:4343 "$WORKSPACE/z"
# A bind of a directory on the workspace's own filesystem: a tmpfs there cannot be
# idmapped before Linux 6.3 (the jail's workspace mount would fail on Debian 12's 6.1).
mount --bind "$TEST_TMP/z-mounted" "$WORKSPACE/z/mnt"
run_jail -p "$OV" -- /bin/sh -c 'printf "x\n" >a.txt && rm -rf z'
is "$JAIL_RC" 0 "an overlay run deletes a directory holding a host mount" || jail_diag
aj commit "$JAIL_RUN_ID"
umount "$WORKSPACE/z/mnt"
is "$RC" 1 "its commit is refused" || op_diag
like "$ERR" "Cannot apply 'z': the directory it removes from the workspace is or holds a mount point.*nothing was applied" \
        "... naming it, before anything is applied" || op_diag
ok "... nothing was applied" test ! -e "$WORKSPACE/a.txt" -a -e "$WORKSPACE/z/f"
aj discard "$JAIL_RUN_ID"
# The changes before one that fails stay applied (root changed the workspace), and the
# chain had no word of it: "workspace.commit_failed" says what was applied. Here the
# directory the agent's second file goes into is made immutable after the run.
reset_workspace
mkdir -p "$WORKSPACE/zz" && chown 4242:4343 "$WORKSPACE/zz"
run_jail -p "$OV" -- /bin/sh -c 'printf "x\n" >a.txt && printf "y\n" >zz/b.txt'
is "$JAIL_RC" 0 "an overlay run writes two files" || jail_diag
if chattr +i "$WORKSPACE/zz" 2>/dev/null; then
        aj commit "$JAIL_RUN_ID"
        chattr -i "$WORKSPACE/zz"
        is "$RC" 1 "a commit that fails on the second" || op_diag
        like "$ERR" "1 of 2 changes applied before it" "... says how many were applied"
        is "$(events_of workspace.commit_failed "$JAIL_RUN_DIR" | jq -c '[.added, .deleted, (.error | test("zz/b.txt"))]')" \
                "[1,0,true]" "the chain records the failed commit and what it applied" || op_diag
        is "$(jq -r .workspace.changes "$JAIL_RUN_DIR/run.json")" pending "... the changes still pending"
        aj logs "$JAIL_RUN_ID" --verify
        is "$RC" 0 "... in an intact chain" || op_diag
else
        skip "a commit that fails half way" "chattr +i is not supported on $WORKSPACE"
fi
aj discard "$JAIL_RUN_ID"

# ------------------------------------------------------------------ the agent's volume
# diff --json made the DOM of every change at once: 1.2 GB for a million empty files, and
# when memory ran out it printed nothing and exited 0. It prints one change at a time now.
# 60,000 files (made in the upper dir from here, faster than through the overlay) under a
# 48 MiB address space: the DOM needed more than 64.
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'mkdir many'
is "$JAIL_RC" 0 "an overlay run that leaves a directory to fill" || jail_diag
(cd "$JAIL_RUN_DIR/workspace/upper/many" && seq 1 60000 | xargs touch)
(
        ulimit -v $((48 << 10))
        exec timeout -k 5 30 "$AGENTJAIL" diff "$JAIL_RUN_ID" --json
) >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
RC=$?
is "$RC" 0 "diff --json of 60,000 changes in 48 MiB" || op_diag
is "$(jq -r '.changes | length' "$TEST_TMP/op.out")" 60001 "... lists them all"
aj discard "$JAIL_RUN_ID"
# diff --patch handed any file to diff(1), which holds a file whole, holes read as zeros:
# 196 KB on disk, sparse to 6 GiB, took 6.3 GB and 41 s. Past 16 MiB it is not shown.
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'printf "text\n" >sparse.txt && truncate -s 4G sparse.txt && printf "x\n" >small.txt'
is "$JAIL_RC" 0 "an overlay run leaves a sparse file of 4 GiB" || jail_diag
(
        ulimit -v $((256 << 10))
        exec timeout -k 5 30 "$AGENTJAIL" diff "$JAIL_RUN_ID" --patch
) >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
RC=$?
OUT=$(cat "$TEST_TMP/op.out")
is "$RC" 0 "diff --patch with it exits 0" || op_diag
like "$OUT" "sparse.txt: contents not shown: larger than 16 MiB" "... and does not show it" || op_diag
like "$OUT" $'\\+\\+\\+ b/small.txt\n@@ -0,0 \\+1 @@\n\\+x' "... the others it does"
aj discard "$JAIL_RUN_ID"
# diff --patch ran a diff(1) per file, 2.5 ms each: 5 s for 2,000 files. Now one for up to
# 256, over a pair of trees of symlinks to the files it opened, in a tmpfs of a mount namespace
# of its own; without one (no CAP_SYS_ADMIN) a diff(1) per file as before, the same output.
# diff(1) is counted by a diff first in PATH that logs and runs the real one.
reset_workspace
for i in $(seq -w 600); do printf '%s\nsame\n' "$i" >"$WORKSPACE/f$i"; done
truncate -s 17M "$WORKSPACE/f300"
printf 'bin\0a' >"$WORKSPACE/f301"
chown 4242:4343 "$WORKSPACE"/f*
run_jail -p "$OV" -- /bin/sh -c 'for f in f*; do echo more >>"$f"; done; printf "bin\0b" >f301
printf -- "-- a/000002\n" >f302; printf "x" >f303; rm f304'
is "$JAIL_RC" 0 "an overlay run changes 600 files" || jail_diag
mkdir -p "$TEST_TMP/diffbin"
printf '#!/bin/sh\necho x >>"%s"\nulimit -v >>"%s"\nexec /usr/bin/diff "$@"\n' "$TEST_TMP/diff.calls" \
        "$TEST_TMP/diff.as" >"$TEST_TMP/diffbin/diff"
chmod +x "$TEST_TMP/diffbin/diff"
: >"$TEST_TMP/diff.calls"
PATH="$TEST_TMP/diffbin:$PATH" aj diff "$JAIL_RUN_ID" --patch
is "$RC" 0 "diff --patch of 600 files exits 0" || op_diag
cp "$TEST_TMP/op.out" "$TEST_TMP/patch.batched"
is "$(wc -l <"$TEST_TMP/diff.calls")" 3 "... running diff(1) 3 times (256 files each), not once per file"
# A side is checked when it is opened and read by diff later: a live agent can grow it
# meanwhile (a truncate to 6 GiB), and diff holds what it reads. Its address space is bounded.
is "$(sort -u "$TEST_TMP/diff.as")" 2097152 "... each with at most 2 GiB of address space"
is "$(grep -c '^+++ b/f' "$TEST_TMP/patch.batched")" 598 "... every file's patch shown (not the large one's nor the binary's)"
like "$(grep -A1 -F -e '--- a/f299' "$TEST_TMP/patch.batched")" $'--- a/f299\n\\+\\+\\+ b/f299' "... labelled with the file's name"
like "$(cat "$TEST_TMP/patch.batched")" $'\\+more\n\\(f300: contents not shown: larger than 16 MiB, look at it yourself\\)\nBinary files a/f301 and b/f301 differ\n--- a/f302\n\\+\\+\\+ b/f302\n@@ -1,2 \\+1 @@\n-302\n-same\n\\+-- a/000002\n' \
        "... notes, binary files and diff-like lines in their places"
: >"$TEST_TMP/diff.calls"
# 599 diff(1) processes: their CPU time in all (AGENTJAIL_DIFF_CPU, 60 s by default) and the
# wall time scaled for the VM's emulation (tests/vm/run-in-vm.sh), where they take longer.
PATH="$TEST_TMP/diffbin:$PATH" AGENTJAIL_DIFF_CPU=$((60 * TEST_TIME_SCALE)) timeout -k 5 $((60 * TEST_TIME_SCALE)) setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin \
        "$AGENTJAIL" diff "$JAIL_RUN_ID" --patch >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
RC=$?
is "$RC" 0 "diff --patch without CAP_SYS_ADMIN exits 0" || op_diag
is "$(wc -l <"$TEST_TMP/diff.calls")" 599 "... running diff(1) per file (not for the large one)"
is "$(sort -u "$TEST_TMP/diff.as")" 2097152 "... each with at most 2 GiB of address space"
ok "... the same output" cmp "$TEST_TMP/patch.batched" "$TEST_TMP/op.out"
# A diff(1) that gives up on a file (one grown past its address space after it was checked)
# took the rest of its batch with it: the files it had not answered for are compared one by
# one. This diff(1) gives up at the fifth file of each batch.
mkdir -p "$TEST_TMP/diffbin2"
printf '#!/bin/sh\n[ "$1" = -r ] || exec /usr/bin/diff "$@"\n/usr/bin/diff "$@" | awk %s\nexit 2\n' \
        "'/^diff -r/ && ++n == 5 { exit } { print }'" >"$TEST_TMP/diffbin2/diff"
chmod +x "$TEST_TMP/diffbin2/diff"
# The files after the fifth of each batch are diffed one by one: as many diff(1)s as the run
# without CAP_SYS_ADMIN above, so a like bound (30 s was short under the VM's emulation).
PATH="$TEST_TMP/diffbin2:$PATH" AGENTJAIL_DIFF_CPU=$((60 * TEST_TIME_SCALE)) timeout -k 5 $((120 * TEST_TIME_SCALE)) "$AGENTJAIL" diff "$JAIL_RUN_ID" --patch >"$TEST_TMP/op.out" \
        2>"$TEST_TMP/op.err"
RC=$?
is "$RC" 0 "diff --patch with a diff(1) that gives up exits 0" || op_diag
is "$(grep -c '^(diff(1) failed on one of these files' "$TEST_TMP/op.out")" 3 "... says so for each batch"
ok "... and shows every file's patch, as before" \
        cmp "$TEST_TMP/patch.batched" <(grep -v '^(diff(1) failed on one of these files' "$TEST_TMP/op.out")
# The agent's files decide how long diff(1) works (two of 16 MiB of random lines: ~100 s of
# CPU each); all of one command's diff(1)s get AGENTJAIL_DIFF_CPU seconds of CPU in all. This
# diff(1) never ends: without the bound the command ran until timeout killed it.
mkdir -p "$TEST_TMP/diffbin3"
printf '#!/bin/sh\n[ "$1" = -r ] || exec /usr/bin/diff "$@"\n/usr/bin/diff "$@" | head -n 40\nwhile :; do :; done\n' \
        >"$TEST_TMP/diffbin3/diff"
chmod +x "$TEST_TMP/diffbin3/diff"
t0=$(date +%s)
PATH="$TEST_TMP/diffbin3:$PATH" AGENTJAIL_DIFF_CPU=2 timeout -k 5 60 "$AGENTJAIL" diff "$JAIL_RUN_ID" --patch \
        >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
RC=$?
t1=$(date +%s)
is "$RC" 0 "diff --patch with a diff(1) that never ends exits 0" || op_diag
ok "... within its CPU time (2 s), before the 60 s timeout ($((t1 - t0)) s)" test $((t1 - t0)) -lt 50
is "$(grep -c '^(diff(1) used up its CPU time, 2 s in all (AGENTJAIL_DIFF_CPU)' "$TEST_TMP/op.out")" 1 \
        "... says once that diff(1) used up its CPU time"
like "$(cat "$TEST_TMP/op.out")" $'\\+\\+\\+ b/f001\n' "... with what diff(1) showed before"
# It was stopped in the middle of a file's patch (its 40th line; a batch's): that patch is
# said to be cut, right after it.
cut=$(awk '/^\+\+\+ b\// { last = substr($0, 7) }
        /: its patch above may be cut short: diff\(1\) used up its CPU time/ {
                n++; if (substr($0, 2, length(last) + 1) != last ":") bad = bad " " $0 }
        END { print n + 0, (bad == "" ? "ok" : "misplaced:" bad) }' "$TEST_TMP/op.out")
like "$cut" '^[1-9][0-9]* ok$' "... and that the patch it was in the middle of may be cut short ($cut)"
shown=$(grep -c -e '^+++ b/f' -e '^Binary files a/f' "$TEST_TMP/op.out")
notes=$(grep -c 'contents not shown: diff(1) used up its CPU time' "$TEST_TMP/op.out")
is "$((shown + notes)) $((notes > 500))" "599 1" \
        "... and a note for each file it did not answer for ($shown shown, $notes noted, the large one apart)"
AGENTJAIL_DIFF_CPU=0 "$AGENTJAIL" diff "$JAIL_RUN_ID" --patch >/dev/null 2>"$TEST_TMP/op.err"
like "$(cat "$TEST_TMP/op.err")" "AGENTJAIL_DIFF_CPU must be a whole number of seconds from 1 to 86400, not '0'" \
        "a bad AGENTJAIL_DIFF_CPU is named"
aj discard "$JAIL_RUN_ID"

# ------------------------------------------------------------------ the agent's file names
# Names are the agent's bytes: diff, its patch labels and commit show them quoted and escaped
# as git's core.quotePath does, so a name cannot move the cursor, erase the line above it
# (hiding a planted hook) or forge a line of the review; such names are flagged.
# raw_controls FILE: does FILE hold ESC, BEL, or the C1 CSI/OSC as UTF-8?
raw_controls() { LC_ALL=C grep -q $'\x1b\|\x07\|\xc2\x9b\|\xc2\x9d' "$1"; }
reset_workspace
run_jail -p "$OV" -- /bin/sh -c '
        mkdir -p .git/hooks && printf "evil\n" >.git/hooks/post-checkout
        printf x >"$(printf ".git/hooks/zz\033[1A\033[2K")"
        printf x >"$(printf "README2\n  D  keep.txt")"
        printf x >"$(printf "c1\302\233x")"
        printf x >"$(printf "bad\377name")"
        printf x >café.txt
        printf "line\033]52;c;ZWNobyBvd25lZA==\007\n\tindented\n" >clip.txt'
is "$JAIL_RC" 0 "a run that makes hostile file names" || jail_diag
RUN5=$JAIL_RUN_ID
aj diff "$RUN5"
is "$RC" 0 "diff of hostile names exits 0" || op_diag
ok "diff: no ESC, BEL or C1 control from the agent's names" eval '! raw_controls "$TEST_TMP/op.out"'
ok "diff: an escape sequence in a name is shown quoted and escaped" \
        grep -qF 'A  ".git/hooks/zz\x1b[1A\x1b[2K"  1 bytes  (control characters in the name)' "$TEST_TMP/op.out"
ok "diff: a newline in a name forges no line" grep -qF 'A  "README2\n  D  keep.txt"  1 bytes' "$TEST_TMP/op.out"
ok "diff: no forged 'deleted' line" eval '! grep -q "^  D  keep.txt" "$TEST_TMP/op.out"'
ok "diff: a C1 control in a name is escaped" grep -qF 'A  "c1\u009bx"' "$TEST_TMP/op.out"
ok "diff: a byte that is not UTF-8 is escaped" grep -qF 'A  "bad\xffname"' "$TEST_TMP/op.out"
ok "diff: an ordinary non-ASCII name is shown as it is" grep -qF 'A  café.txt  1 bytes' "$TEST_TMP/op.out"
ok "diff: the hook is listed" grep -qF 'A  .git/hooks/post-checkout' "$TEST_TMP/op.out"
like "$OUT" "4 names with control characters or invalid UTF-8, shown escaped" "diff counts the flagged names"
aj diff "$RUN5" --patch
ok "diff --patch: no ESC, BEL or C1 control in the labels" eval '! raw_controls "$TEST_TMP/op.out"'
ok "diff --patch: the labels are quoted and escaped" grep -qF '+++ "b/.git/hooks/zz\x1b[1A\x1b[2K"' "$TEST_TMP/op.out"
ok "diff --patch: a file's escape sequence (OSC 52, a clipboard write) is shown escaped" \
        grep -qF '+line\x1b]52;c;ZWNobyBvd25lZA==\x07' "$TEST_TMP/op.out"
ok "diff --patch: a tab stays a tab" grep -qF $'+\tindented' "$TEST_TMP/op.out"
# The planted hook is git's own file: git on the host runs it (a hook, core.fsmonitor in
# .git/config: `git status` to review the agent's work is enough). diff marks such changes
# and commit wants a decision on them.
aj diff "$RUN5"
ok "diff: the planted hook is marked as git's own file" \
        grep -qF "A  .git/hooks/post-checkout  5 bytes  (git's own file: git on this host may run code from it)" \
        "$TEST_TMP/op.out"
like "$OUT" "3 changes to git's own files .*--include-git.*--exclude-git" "diff counts them and says what commit needs"
aj diff "$RUN5" --json
is "$(jq -r '[.changes[] | select(.git_code) | .path] | length' <"$TEST_TMP/op.out" 2>/dev/null)" 3 \
        "diff --json marks the same three (git_code)" || op_diag
aj commit "$RUN5"
is "$RC" 1 "commit of a run that planted a git hook, without a decision: refused" || op_diag
like "$ERR" "3 changes to git's own files \(first: .git/hooks\).*nothing was applied.*--include-git.*--exclude-git" \
        "... naming the first and the two ways on"
ok "... and nothing was applied" test ! -e "$WORKSPACE/café.txt"
aj commit "$RUN5" --include-git --exclude-git
is "$RC" 2 "--include-git with --exclude-git: a usage error"
aj commit "$RUN5" --exclude-git
is "$RC" 0 "commit of hostile names, git's files left out, exits 0" || op_diag
like "$OUT" "6 added.*; 3 changes to git's own files left out \(--exclude-git\); 3 of them with control characters or invalid UTF-8 in the name" \
        "commit's summary says what it left out and how many names had control characters" || op_diag
ok "commit --exclude-git: the hook is not in the workspace" test ! -e "$WORKSPACE/.git/hooks/post-checkout"
ok "commit --exclude-git: the rest is" test -e "$WORKSPACE/café.txt"
ok "commit: no ESC, BEL or C1 control in its output" eval '! raw_controls "$TEST_TMP/op.out"'

# ------------------------------------------------------------------ the agent's names in an error
# An error a verb prints names what the agent chose, escaped like its output (cli_fail), so a
# name cannot set the window title, erase a line, forge one or reorder it on the operator's
# stderr. A run with a writable workspace leaves a directory named with escape sequences,
# 257 levels deep; an overlay run deletes it; diff cannot tell whether it changed during the
# run (past AJ_WS_MAX_DEPTH) and says so, naming it.
# raw_bidi FILE: does FILE hold U+202E, the right-to-left override?
raw_bidi() { LC_ALL=C grep -q $'\xe2\x80\xae' "$1"; }
reset_workspace
run_jail -- /bin/sh -c '
        p=$(printf "deep\033]0;OWNED\007\033[2K\302\233\342\200\256txt\nagentjail diff: forged")
        i=0; while [ $i -lt 257 ]; do p=$p/d; i=$((i + 1)); done
        mkdir -p "$p"'
is "$JAIL_RC" 0 "a run leaves a deep directory with escape sequences in its name" || jail_diag
run_jail -p "$OV" -- /bin/sh -c 'rm -rf deep*'
is "$JAIL_RC" 0 "an overlay run deletes it" || jail_diag
aj diff "$JAIL_RUN_ID"
is "$RC" 1 "diff fails on it" || op_diag
ok "diff's error names it escaped" grep -qF \
        "'deep\x1b]0;OWNED\x07\x1b[2K\u009b\u202etxt\nagentjail diff: forged' in the workspace is more than 256" \
        "$TEST_TMP/op.err" || op_diag
ok "diff's error: no ESC, BEL or C1 control from the name" eval '! raw_controls "$TEST_TMP/op.err"'
ok "diff's error: no right-to-left override (U+202E)" eval '! raw_bidi "$TEST_TMP/op.err"'
ok "diff's error forges no line" eval '! grep -q "^agentjail diff: forged" "$TEST_TMP/op.err"'
reset_workspace
# ------------------------------------------------------------------ git's own files, past the path rules
# The agent plants code that the workspace repository's own config or git's discovery
# sends git to, with names no path rule marks: husky's hooks (core.hooksPath) and a file
# the config includes; a gitdir at the root (.git's HEAD spoilt, a HEAD and a commondir
# naming the agent's objects, refs and config with a pager); .git replaced whole (its
# config and hooks gone). git on the host runs the first two (checked with --include-git
# below); each is marked, and --exclude-git leaves them out.
host_git() { git -c safe.directory='*' -C "$WORKSPACE" "$@"; }
reset_workspace
host_git init -q -b main && host_git -c user.name=t -c user.email=t@t commit -q --allow-empty -m init
host_git config core.hooksPath .husky/_
host_git config include.path ../.gitconfig
mkdir -p "$WORKSPACE/.husky/_" && chown -R 4242:4343 "$WORKSPACE"
OWNED="$TEST_TMP/owned"
# plant_git_code WHAT...: the agent's script (OWNED, a path on the host, in the payloads).
plant_git_code() {
        for what in "$@"; do
                case $what in
                hook) cat <<'EOF' ;;
printf '#!/bin/sh\ntouch OWNED.hook\n' >.husky/_/pre-commit && chmod +x .husky/_/pre-commit
EOF
                include) cat <<'EOF' ;;
cat >.gitconfig <<'X'
[core]
	fsmonitor = "touch OWNED.include; false"
X
EOF
                gitdir) cat <<'EOF' ;;
printf garbage >.git/HEAD && printf 'ref: refs/heads/main\n' >HEAD && printf 'c\n' >commondir
mkdir c && cp -r .git/objects .git/refs c/
cat >c/config <<'X'
[core]
	pager = "touch OWNED.pager; cat"
X
EOF
                esac
        done | sed "s|OWNED|$OWNED|g"
}
run_jail -p "$OV" -- /bin/sh -ec "$(plant_git_code hook include gitdir)"
is "$JAIL_RC" 0 "a run that plants code git reaches past the path rules" || jail_diag
RUN_GIT=$JAIL_RUN_ID
aj diff "$RUN_GIT" --json
is "$(jq -r '[.changes[] | select(.git_code) | .path] | sort | join(" ")' <"$TEST_TMP/op.out" 2>/dev/null)" \
        ".gitconfig .husky/_/pre-commit commondir" "diff marks the hook, the included file and the root's commondir" ||
        op_diag
aj commit "$RUN_GIT"
is "$RC" 1 "commit without a decision: refused" || op_diag
aj commit "$RUN_GIT" --exclude-git
is "$RC" 0 "commit --exclude-git" || op_diag
script -qec "git -c safe.directory='*' -C '$WORKSPACE' log" /dev/null >/dev/null 2>&1
printf 'ref: refs/heads/main\n' >"$WORKSPACE/.git/HEAD" # the spoilt HEAD was data: applied
host_git status >/dev/null 2>&1
host_git -c user.name=t -c user.email=t@t commit -q --allow-empty -m x >/dev/null 2>&1
ok "git log on a terminal, status and commit on the host ran none of the agent's code" \
        eval '! ls "$OWNED".* 2>/dev/null'
ok "the hook and the included file are not in the workspace" \
        eval 'test ! -e "$WORKSPACE/.husky/_/pre-commit" && test ! -e "$WORKSPACE/.gitconfig"'

# The same planted again, applied on purpose: the code does run (the test plants real ones).
run_jail -p "$OV" -- /bin/sh -ec "$(plant_git_code hook include)"
aj commit "$JAIL_RUN_ID" --include-git
is "$RC" 0 "commit --include-git" || op_diag
host_git status >/dev/null 2>&1
host_git -c user.name=t -c user.email=t@t commit -q --allow-empty -m y >/dev/null 2>&1
ok "with --include-git, git on the host runs them (the vectors are real)" \
        eval 'test -e "$OWNED.hook" && test -e "$OWNED.include"'
rm -f "$OWNED".* "$WORKSPACE/.gitconfig" "$WORKSPACE/.husky/_/pre-commit"

# .git replaced whole: marked; --exclude-git keeps the workspace's config.
chown -R 4242:4343 "$WORKSPACE" # what git on the host wrote, for the agent to remove
run_jail -p "$OV" -- /bin/sh -c '
        set -e
        rm -rf .git
        mkdir -p .git/objects .git/refs && printf "ref: refs/heads/main\n" >.git/HEAD
        printf done >work.txt'
is "$JAIL_RC" 0 "a run that replaces .git" || jail_diag
aj diff "$JAIL_RUN_ID" --json
is "$(jq -r '[.changes[] | select(.git_code) | .path] | join(" ")' <"$TEST_TMP/op.out" 2>/dev/null)" ".git" \
        "diff marks the replaced .git" || op_diag
aj commit "$JAIL_RUN_ID" --exclude-git
is "$RC" 0 "commit --exclude-git of a replaced .git" || op_diag
is "$(host_git config core.hooksPath)" ".husky/_" "the workspace's .git/config is still there"
ok "the rest is applied" test -e "$WORKSPACE/work.txt"

# ------------------------------------------------------------------ refusals
start_jail_bg -p "$OV" --name ov-live -- /bin/sh -c 'printf x >live.txt; sleep 60'
LIVE_DIR=$(wait_run_dir 10)
wait_for_output "$LIVE_DIR/events.jsonl" run.start 10
aj diff ov-live
is "$RC" 1 "diff of a live run is refused"
like "$ERR" "still running" "because the agent may still change the workspace"
aj kill ov-live
wait_exit "$BG_PID" 15
aj discard ov-live
is "$RC" 0 "a killed run's changes can be discarded" || op_diag

run_jail -- /bin/sh -c true
aj diff "$JAIL_RUN_ID"
is "$RC" 1 "diff of a run without an overlay workspace"
like "$ERR" "no overlay workspace" "says so"

# An agent cannot use commit to write outside the workspace: a workspace path whose
# parent is a symlink (planted on the host after the run) is not followed.
reset_workspace
mkdir -p "$TEST_TMP/outside"
run_jail -p "$OV" -- /bin/sh -c 'mkdir -p esc && printf evil >esc/f'
RUN4=$JAIL_RUN_ID
ln -s "$TEST_TMP/outside" "$WORKSPACE/esc"
aj commit "$RUN4" --force
ok "commit never writes through a symlink in the workspace" test ! -e "$TEST_TMP/outside/f"

# ------------------------------------------------------------------ agent-made trees on the host
# A sparse file stays sparse: commit writes its data, not 1 GiB of holes, into the workspace.
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'dd if=/dev/null of=sparse.bin bs=1 seek=1073741824 2>/dev/null &&
        printf data | dd of=sparse.bin bs=1 seek=4096 conv=notrunc 2>/dev/null && echo sparse-made'
like "$JAIL_OUT" "sparse-made" "the agent makes a 1 GiB sparse file" || jail_diag
aj commit "$JAIL_RUN_ID"
is "$RC" 0 "commit of the sparse file" || op_diag
is "$(stat -c %s "$WORKSPACE/sparse.bin")" 1073741824 "commit: the sparse file has its size"
ok "commit: and next to nothing on disk (a hole stays a hole)" \
        test "$(stat -c '%b * %B' "$WORKSPACE/sparse.bin" | xargs expr)" -lt 1048576
is "$(dd if="$WORKSPACE/sparse.bin" bs=1 skip=4096 count=4 2>/dev/null)" data "commit: and its data"
rm -f "$WORKSPACE/sparse.bin"

# A tree deeper than the fds the host side may open is still discarded. One mkdir -p
# (not 1500 mkdir processes, which take over a minute in the TCG test VM).
run_jail -p "$OV" -- /bin/sh -c 'p=d i=1; while [ $i -lt 1500 ]; do p=$p/d i=$((i + 1)); done
        mkdir -p "$p" && cd "$p" && echo deep-made'
like "$JAIL_OUT" "deep-made" "the agent makes a tree 1500 directories deep" || jail_diag
DEEP_DIR=$JAIL_RUN_DIR
(ulimit -n 64 && exec timeout -k 5 30 "$AGENTJAIL" discard "$JAIL_RUN_ID") >"$TEST_TMP/op.out" 2>"$TEST_TMP/op.err"
RC=$? OUT=$(cat "$TEST_TMP/op.out") ERR=$(cat "$TEST_TMP/op.err")
is "$RC" 0 "discard removes it with 64 fds" || op_diag
ok "discard: the overlay's upper dir is gone" test ! -e "$DEEP_DIR/workspace"

# ------------------------------------------------------------------ git's own files in an rw workspace
# In place ("rw") nothing reviews the agent's writes: a hook or a core.fsmonitor it plants
# in the workspace's .git runs as the operator at the next `git status` there. The run says
# so at its end (stderr and the chain); the agent's own commits and branches do not.
RW=$(write_profile rwgit '{"extends": "default", "filesystem": {"workspace": {"path": ".", "mode": "rw"}}}')
reset_workspace
git -C "$WORKSPACE" init -q && git -C "$WORKSPACE" -c user.email=o@p -c user.name=o commit -q --allow-empty -m init
chown -R 4242:4343 "$WORKSPACE/.git"
# A file system with coarse timestamps (tmpfs on a 250 Hz kernel) gives the ctime rule a
# margin of 2 s: what git init made just before would count as changed during the run.
sleep 2.2
run_jail -p "$RW" -- /bin/sh -c 'git add keep.txt && git -c user.email=a@b -c user.name=a commit -q -m agent &&
        git checkout -q -b feature && echo committed'
like "$JAIL_OUT" committed "rw: the agent commits and makes a branch in the workspace's repository" || jail_diag
is "$(events_of workspace.git_changed | wc -l)" 0 "... which changes none of git's own files: no workspace.git_changed"
unlike "$JAIL_ERR" "git's own files" "... and no warning"
run_jail -p "$RW" -- /bin/sh -c 'printf "#!/bin/sh\ntouch owned\n" >.git/hooks/post-checkout
        chmod +x .git/hooks/post-checkout; git config core.fsmonitor "touch owned"; echo planted'
like "$JAIL_OUT" planted "rw: the agent plants a hook and core.fsmonitor" || jail_diag
like "$JAIL_ERR" "The run changed 3 of git's own files in the workspace .* \(first: .git/config\).*look at them before you run git" \
        "the run's end warns the operator on stderr" || jail_diag
is "$(events_of workspace.git_changed | jq -c .paths)" '[".git/config",".git/hooks",".git/hooks/post-checkout"]' \
        "workspace.git_changed names them in the chain" || jail_diag
is "$(events_of workspace.git_changed | jq -r .count)" 3 "... and counts them"
# A nested repository (a vendored checkout, a submodule's work tree): git run in it by the
# operator runs its hooks. The agent plants one there; the run's end names it too.
mkdir -p "$WORKSPACE/vendor/lib" && git -C "$WORKSPACE/vendor/lib" init -q
chown -R 4242:4343 "$WORKSPACE/vendor"
sleep 2.2
run_jail -p "$RW" -- /bin/sh -c 'printf "#!/bin/sh\ntouch owned\n" >vendor/lib/.git/hooks/post-checkout
        chmod +x vendor/lib/.git/hooks/post-checkout; echo planted'
like "$JAIL_OUT" planted "rw: the agent plants a hook in a nested repository" || jail_diag
like "$JAIL_ERR" "The run changed 2 of git's own files in the workspace .* \(first: vendor/lib/.git/hooks\)" \
        "the run's end warns of the nested repository's hook" || jail_diag
is "$(events_of workspace.git_changed | jq -c '[.paths, .cut]')" \
        '[["vendor/lib/.git/hooks","vendor/lib/.git/hooks/post-checkout"],false]' \
        "workspace.git_changed names the nested repository's hook" || jail_diag
# The operator's global config names a hooks directory in every repository's work tree
# (core.hooksPath = .githooks): a hook the agent adds there is one of git's own files.
mkdir -p "$TEST_TMP/ophome" "$WORKSPACE/.githooks"
printf '[core]\n\thooksPath = .githooks\n' >"$TEST_TMP/ophome/.gitconfig"
chown -R 4242:4343 "$WORKSPACE/.githooks"
sleep 2.2
HOME=$TEST_TMP/ophome run_jail -p "$RW" -- /bin/sh -c 'printf "#!/bin/sh\ntouch owned\n" >.githooks/pre-commit
        echo planted'
like "$JAIL_OUT" planted "rw: the agent adds a hook where the operator's global hooksPath points" || jail_diag
is "$(events_of workspace.git_changed | jq -c .paths)" '[".githooks",".githooks/pre-commit"]' \
        "workspace.git_changed names it (the operator's ~/.gitconfig read)" || jail_diag
rm -rf "$WORKSPACE/.git" "$WORKSPACE/vendor" "$WORKSPACE/.githooks" "$TEST_TMP/ophome"

# ------------------------------------------------------------------ a host mount in the workspace
# The overlay's lower layer shows the directory under a mount, not what is mounted there: an
# agent wrote into that directory, and the commit wrote its files into the mounted one (a
# root-owned host directory), replaced a file there the agent never saw and made the mounted
# directory 0777. Each change there is marked, and the commit refuses them, nothing applied.
reset_workspace
HOSTDIR=$TEST_TMP/hostdir
mkdir -p "$HOSTDIR" "$WORKSPACE/mnt"
printf 'host\n' >"$HOSTDIR/existing"
chmod 0755 "$HOSTDIR"
chown 4242:4343 "$WORKSPACE/mnt"
mount --bind "$HOSTDIR" "$WORKSPACE/mnt"
run_jail -p "$OV" -- /bin/sh -c 'ls -A mnt | wc -l; printf "agent\n" >mnt/existing; printf "agent\n" >mnt/planted
        chmod 777 mnt; printf "fine\n" >plain'
is "$JAIL_RC" 0 "an overlay run writes into a directory the host has a mount on" || jail_diag
like "$JAIL_OUT" "^0" "the agent sees the empty directory under the mount"
aj diff "$JAIL_RUN_ID"
like "$OUT" "M  mnt/  .*\\(a mount point in the workspace: commit refuses it\\)" "diff marks the mount point" || op_diag
like "$OUT" "A  mnt/planted  6 bytes  \\(below the mount point mnt in the workspace: commit refuses it\\)" \
        "diff marks what is below it"
aj commit "$JAIL_RUN_ID"
is "$RC" 1 "commit refuses changes across a mount" || op_diag
like "$ERR" "'mnt' in the workspace is a mount point" "and says which"
is "$(cat "$HOSTDIR/existing")" host "the mounted directory's file is untouched"
ok "nothing is planted there" test ! -e "$HOSTDIR/planted"
is "$(stat -c %a "$HOSTDIR")" 755 "its mode is unchanged"
ok "nothing else was applied" test ! -e "$WORKSPACE/plain"
umount "$WORKSPACE/mnt"
aj commit "$JAIL_RUN_ID"
is "$RC" 0 "unmounted, the commit applies the changes to the directory under it" || op_diag
is "$(cat "$WORKSPACE/mnt/planted")" agent "... there"
rm -rf "$WORKSPACE/mnt" "$HOSTDIR"

# ------------------------------------------------------------------ a chmod is a change shown
# "M  sub/" said nothing of a directory made writable by everyone, which commit applied.
reset_workspace
run_jail -p "$OV" -- /bin/sh -c 'chmod 777 sub && chmod 666 keep.txt && mkdir tmpd && chmod 1777 tmpd'
is "$JAIL_RC" 0 "an overlay run changes modes" || jail_diag
aj diff "$JAIL_RUN_ID"
like "$OUT" "M  sub/  \\(mode 0755 -> 0777\\)  \\(writable by everyone\\)" "diff shows a directory's mode change" || op_diag
like "$OUT" "M  keep.txt  9 bytes  \\(mode 0644 -> 0666\\)  \\(writable by everyone\\)" "... and a file's"
like "$OUT" "A  tmpd/  \\(writable by everyone\\)" "... and flags a new one everyone may write"
like "$OUT" "3 files or directories writable by everyone once committed" "... and counts them"
aj diff "$JAIL_RUN_ID" --json
is "$(jq -c '.changes[] | select(.path == "sub") | [.mode, .mode_was, .writable_by_all]' <<<"$OUT")" '["0777","0755",true]' \
        "diff --json: the mode, the workspace's, writable by all"
aj discard "$JAIL_RUN_ID"

# ------------------------------------------------------------------ a file's POSIX ACL is kept
# commit writes a changed file anew: written without the lower file's ACL, its mode's group bits
# (the ACL's mask) became the owning group's access, which the ACL had given nothing, and the
# named user lost theirs. Set and read as bytes (python3), so that the test needs no acl tools.
# The named user is the owner, 4242: the overlay's copy-up in the jail's user namespace fails
# (EINVAL) for an ACL naming a user the jail does not map.
ACL_PY='import os, struct, sys
def acl(group_perm):
        e = [(1, 6, 0xffffffff), (2, 6, 4242), (4, group_perm, 0xffffffff), (0x10, 6, 0xffffffff), (0x20, 0, 0xffffffff)]
        return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *x) for x in e)
if sys.argv[1] == "set":
        os.setxattr(sys.argv[2], "system.posix_acl_access", acl(0))
else:
        print("kept" if os.getxattr(sys.argv[2], "system.posix_acl_access") == acl(0) else "changed")'
reset_workspace
if command -v python3 >/dev/null && python3 -c "$ACL_PY" set "$WORKSPACE/keep.txt" 2>/dev/null; then
        run_jail -p "$OV" -- /bin/sh -c 'printf "more\n" >>keep.txt'
        is "$JAIL_RC" 0 "an overlay run changes a file with an ACL" || jail_diag
        aj commit "$JAIL_RUN_ID"
        is "$RC" 0 "its commit exits 0" || op_diag
        is "$(cat "$WORKSPACE/keep.txt")" $'original\nmore' "... the file changed"
        is "$(python3 -c "$ACL_PY" get "$WORKSPACE/keep.txt" 2>&1)" kept \
                "... and its ACL kept: the owning group still has nothing, the named user their access"
        is "$(stat -c %a "$WORKSPACE/keep.txt")" 660 "... its mode's group bits still the mask"
else
        skip "a file's POSIX ACL is kept by commit" "python3 or ACLs on $WORKSPACE missing"
fi

# Rootless: the overlay needs the host's user namespace; the run refuses to start.
if command -v setpriv >/dev/null; then
        NB="$TEST_TMP/nobody"
        mkdir -p "$NB/ws" "$NB/state" "$NB/runtime"
        printf '%s\n' '{"extends": "default", "allow_degraded": ["limits"],
                "filesystem": {"workspace": {"path": ".", "mode": "overlay"}}}' >"$NB/overlay.json"
        AJ_NB=$(agentjail_for_others "$NB") || exit 1
        chown -R 65534:65534 "$NB"
        (cd "$NB/ws" && timeout -k 5 60 setpriv --reuid=65534 --regid=65534 --clear-groups \
                env -i PATH=/usr/bin:/bin HOME="$NB" AGENTJAIL_STATE_DIR="$NB/state" \
                AGENTJAIL_RUNTIME_DIR="$NB/runtime" "$AJ_NB" run -p "$NB/overlay.json" -- /bin/true) \
                >"$TEST_TMP/nb.out" 2>"$TEST_TMP/nb.err"
        is "$?" 125 "rootless with an overlay workspace: the run refuses to start"
        like "$(cat "$TEST_TMP/nb.err")" "needs agentjail started as root" "and says why"
fi

done_testing

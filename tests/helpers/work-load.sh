#!/usr/bin/env bash
# The agent's own work, timed item by item (scripts/bench --only work runs it on the host,
# in a bwrap root and in jails, in the directory prepared as the workspace):
#   work-load.sh ITEM...   prints "ITEM WALL CPU" for each: seconds of wall time ($EPOCHREALTIME)
#                          and of CPU time (user + system, this shell's and its children's)
# Items:
#   exec      2,000 /bin/true from this shell's loop
#   getppid   5M getppid() (./work-bench)
#   stat      1M stat() of a file in the workspace (./work-bench)
#   files     unpack ./files.tar (20k small files) into the workspace, then find and cat them
#             (the tree is removed afterwards, outside the time)
#   python    50 python3 start-ups importing json, re, subprocess, pathlib, urllib.request
#   git-status, git-log   1,000 `git status` / `git log -n 50` in ./repo (a clone)
#   npm       `npm ci --offline` of ./npm-project from the cache ./npm-cache
#   work-load.sh --env NAME...   prints "NAME=VALUE" or "NAME unset" for each, and nothing else
#                          (the bench checks that every environment passes the same ones)
# Fails (exit 1, naming the item) when an item's command fails or its result is wrong.
set -euo pipefail
if [[ ${1:-} == --env ]]; then
        shift
        for v in "$@"; do
                if [[ -v $v ]]; then echo "$v=${!v}"; else echo "$v unset"; fi
        done
        exit 0
fi
fail() {
        echo "work-load: $*" >&2
        exit 1
}
now() { echo "${EPOCHREALTIME/[.,]/}"; }
# cpu_us: sets $cpu to the user + system time of this shell and of its children so far, in
# microseconds (`times` is a builtin: written to a file it runs in this shell, where a command
# substitution would run it in a subshell of its own).
cpu_us() {
        local f=./work-times.$$ line total=0 re='([0-9]+)m([0-9]+)[.,]([0-9]+)s' m s frac
        times >"$f"
        while read -r line; do
                while [[ $line =~ $re ]]; do
                        m=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]} frac=${BASH_REMATCH[3]}000000
                        total=$((total + (m * 60 + 10#$s) * 1000000 + 10#${frac:0:6}))
                        line=${line#*"${BASH_REMATCH[0]}"}
                done
        done <"$f"
        rm -f "$f"
        cpu=$total
}

item_exec() {
        local i
        for ((i = 0; i < 2000; i++)); do /bin/true; done
}
item_getppid() { ./work-bench getppid 5000000 >/dev/null; }
item_stat() { ./work-bench stat 1000000 ./files.tar >/dev/null; }
item_files() {
        mkdir "$tree"
        tar --no-same-owner --no-same-permissions -xf files.tar -C "$tree"
        local n
        n=$(find "$tree" -type f | wc -l)
        [[ $n == 20000 ]] || fail "files: $n files unpacked, not 20000"
        find "$tree" -type f -exec cat {} + | wc -c >/dev/null
}
item_python() {
        local i
        for ((i = 0; i < 50; i++)); do
                /usr/bin/python3 -c 'import json, re, subprocess, pathlib, urllib.request'
        done
}
item_git_status() {
        local i
        for ((i = 0; i < 1000; i++)); do git -C repo status --porcelain >/dev/null; done
}
item_git_log() {
        local i
        for ((i = 0; i < 1000; i++)); do git -C repo log -n 50 >/dev/null; done
}
item_npm() {
        mkdir "$tree"
        cp npm-project/package.json npm-project/package-lock.json "$tree"/
        (cd "$tree" && npm ci --offline --cache "$PWD/../npm-cache" --no-audit --no-fund --no-update-notifier \
                --loglevel=error >/dev/null) || fail "npm ci --offline failed"
        [[ -d $tree/node_modules ]] || fail "npm: no node_modules"
}

export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
for item in "$@"; do
        fn=item_${item//-/_}
        declare -F "$fn" >/dev/null || fail "unknown item '$item'"
        tree=./work-tree.$$
        cpu_us
        c0=$cpu t0=$(now)
        "$fn" || fail "$item failed"
        t1=$(now)
        cpu_us
        c1=$cpu
        rm -rf "$tree"
        printf '%s %d.%06d %d.%06d\n' "$item" $(((t1 - t0) / 1000000)) $(((t1 - t0) % 1000000)) \
                $(((c1 - c0) / 1000000)) $(((c1 - c0) % 1000000))
done

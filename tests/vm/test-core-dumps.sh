#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Runs in the test VM only (it sets kernel.core_pattern, which is the whole host's): with a
# piped core_pattern, as systemd-coredump and apport install, the kernel ignores RLIMIT_CORE
# (but for its value 1) and starts the pattern's helper for every crash, on the host, as root,
# outside the crashing process's cgroup and namespaces. A jail's crashes (limits.core false,
# the default) must start none: the jail's RLIMIT_CORE is 1, and the agent cannot lower it.

. "$(dirname "${BASH_SOURCE[0]}")/../integration/lib.sh"

require_jail
require_root
setup_dirs

OLD_PATTERN=$(cat /proc/sys/kernel/core_pattern)
HELPER=$TEST_TMP/core-helper
LOG=$TEST_TMP/core-helper.log
cat >"$HELPER" <<HELPER
#!/bin/sh
echo "\$1 \$2" >>"$LOG"
cat >/dev/null
HELPER
chmod 0755 "$HELPER"
restore_pattern() { echo "$OLD_PATTERN" >/proc/sys/kernel/core_pattern; }
trap 'restore_pattern; cleanup' EXIT
echo "|$HELPER %P %c" >/proc/sys/kernel/core_pattern || skip_all "cannot set kernel.core_pattern"

# helper_runs SECONDS: how many times the helper ran, once the count is still for a moment.
helper_runs() {
        local n=-1 m deadline=$((SECONDS + $1))
        while ((SECONDS < deadline)); do
                m=$(cat "$LOG" 2>/dev/null | wc -l)
                [[ $m == "$n" ]] && break
                n=$m
                sleep 0.5
        done
        echo "${m:-0}"
}

# Control: on the host, RLIMIT_CORE 0 does not keep the helper from starting.
/bin/sh -c 'ulimit -c 0; kill -SEGV $$'
is "$(helper_runs 5)" 1 "control: a crash on the host with RLIMIT_CORE 0 starts the piped helper"
: >"$LOG"

run_jail -- /bin/sh -c 'for i in 1 2 3 4 5; do /bin/sh -c "kill -SEGV \$\$"; done
        (ulimit -c 0) 2>/dev/null; echo "lower=$?"
        ulimit -c 0 2>/dev/null; /bin/sh -c "kill -SEGV \$\$"; echo done'
like "$JAIL_OUT" 'done' "the jail's processes crashed (six times)" || jail_diag
isnt "$(pval lower)" 0 "the agent cannot lower RLIMIT_CORE to 0"
is "$(helper_runs 5)" 0 "no crash in the jail started the host's core dump helper" ||
        diag "$(cat "$LOG")"

done_testing

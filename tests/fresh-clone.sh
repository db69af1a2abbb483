#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The newcomer's path, as CI runs it: a clone of this repository under a directory only
# root may enter (mode 0700, as Debian ships /root) runs the README's first command,
# `bash scripts/setup && scripts/demo`, as root. The jail builds its root as its host uid
# (user.host_uid), which cannot search that directory: every bind source must be opened by the
# supervisor, and the demo must fail loudly if the jail does not start.
#   tests/fresh-clone.sh        (root; git, and what scripts/setup installs)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
((EUID == 0)) || { echo "fresh-clone: needs root" >&2; exit 1; }
top=$(mktemp -d /tmp/agentjail-clone.XXXXXX)
trap 'rm -rf --one-file-system "$top"' EXIT
chmod 0700 "$top"
[[ $(stat -c %a "$top") == 700 ]]

git clone -q "$src" "$top/project"
cd "$top/project"
start=$SECONDS
set +e
out=$(env -u AGENTJAIL_RUNTIME_DIR AGENTJAIL_STATE_DIR="$top/state" \
        timeout -k 10 600 bash -c 'bash scripts/setup && scripts/demo' 2>&1)
rc=$?
set -e
if ((rc != 0)) || ! grep -q '^exit status: 0$' <<<"$out"; then
  printf '%s\n' "$out" >&2
  echo "fresh-clone: FAILED: 'bash scripts/setup && scripts/demo' in a clone under a 0700 directory (exit $rc)" >&2
  exit 1
fi
echo "fresh-clone: ok: a clone under a 0700 directory builds and runs the demo's jail ($((SECONDS - start)) s)"

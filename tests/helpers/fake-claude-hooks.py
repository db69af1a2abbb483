#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Stands in for Claude Code's hook runner (tests/integration/test-hooks.sh), in a jail.

    fake-claude-hooks.py EVENT TOOL ID [INPUT-JSON [RESPONSE-JSON]]

Reads the managed settings as Claude Code does (/etc/claude-code/managed-settings.json,
"hooks" -> EVENT -> groups whose "matcher" matches TOOL: "*" or empty matches every tool,
else a regex matched whole), runs each command hook with `sh -c`, the event JSON on stdin
and the hook's "timeout" (seconds), and prints what Claude Code would make of the answer,
one line per hook:

    decision: allow|deny|ask REASON      exit 0 with hookSpecificOutput.permissionDecision
    ok                                    exit 0 without a decision
    blocked: STDERR                       exit 2 (a blocking error: the call is not made)
    error N: STDERR                       another status (non-blocking: the call goes ahead)
    timeout                               killed at the hook's timeout (the call goes ahead)

and "no hooks" when none matches. EVENT_STDIN=RAW sends RAW instead of the event.
"""
import json
import os
import re
import subprocess
import sys

SETTINGS = os.environ.get("FAKE_CLAUDE_SETTINGS", "/etc/claude-code/managed-settings.json")


def matches(matcher, tool):
    if matcher in (None, "", "*"):
        return True
    return re.fullmatch(matcher, tool) is not None


def main():
    event, tool, call_id = sys.argv[1:4]
    tool_input = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    doc = {
        "session_id": "fake-session",
        "transcript_path": os.path.expanduser("~/.claude/projects/x/fake-session.jsonl"),
        "cwd": os.getcwd(),
        "permission_mode": "default",
        "hook_event_name": event,
        "tool_name": tool,
        "tool_input": tool_input,
        "tool_use_id": call_id,
    }
    if len(sys.argv) > 5:
        doc["tool_response"] = json.loads(sys.argv[5])
    stdin = os.environ.get("EVENT_STDIN", json.dumps(doc))

    with open(SETTINGS) as f:
        settings = json.load(f)
    ran = 0
    for group in settings.get("hooks", {}).get(event, []):
        if not matches(group.get("matcher"), tool):
            continue
        for hook in group.get("hooks", []):
            if hook.get("type") != "command":
                continue
            ran += 1
            try:
                p = subprocess.run(["sh", "-c", hook["command"]], input=stdin, capture_output=True, text=True,
                                   timeout=hook.get("timeout", 600))
            except subprocess.TimeoutExpired:
                print("timeout")
                continue
            err = p.stderr.strip().replace("\n", " ")
            if p.returncode == 2:
                print("blocked: " + err)
            elif p.returncode != 0:
                print("error %d: %s" % (p.returncode, err))
            elif p.stdout.strip():
                out = json.loads(p.stdout)
                h = out.get("hookSpecificOutput", {})
                if h.get("hookEventName") != event:
                    print("bad answer: " + p.stdout.strip())
                elif "permissionDecision" in h:
                    print("decision: %s %s" % (h["permissionDecision"], h.get("permissionDecisionReason", "")))
                else:
                    print("ok")
            else:
                print("ok")
    if not ran:
        print("no hooks")


main()

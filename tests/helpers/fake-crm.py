#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A fake CRM kept in one JSON file, for tests/integration/test-rollback.sh.

  fake-crm.py DB create ID NAME    the agent's write (in the jail)
  fake-crm.py DB delete ID         the agent's write (in the jail)
  fake-crm.py DB undo              the rollback handler (profile rollback.exec, on the host):
                                   one undo record on stdin, as `agentjail rollback --apply`
                                   gives it: {"run", "step", "of", "call_id", "tool", "args",
                                   "status", "undo": {"tool": "crm.delete"|"crm.restore",
                                   "arguments"}}

DB is {"records": {ID: NAME}, "log": ["delete r3 2/4 c-3", ...]}. The handler's failures
are the test's to set: DB.fail names an id whose undo fails (exit 3), DB.sleep makes it
sleep first; DB.env gets the names of the handler's environment variables.
"""
import json
import os
import sys
import time


def load(db):
    try:
        with open(db) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"records": {}, "log": []}


def save(db, doc):
    tmp = db + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, sort_keys=True)
    os.replace(tmp, db)


def undo(db):
    step = json.load(sys.stdin)
    with open(db + ".env", "w") as f:
        f.write(" ".join(sorted(os.environ)) + "\n")
    if os.path.exists(db + ".sleep"):
        time.sleep(30)
    action = step["undo"]["tool"]
    rid = step["undo"]["arguments"]["id"]
    try:
        with open(db + ".fail") as f:
            if f.read().strip() == rid:
                print(f"crm: cannot {action} {rid}: the record is locked", file=sys.stderr)
                return 3
    except FileNotFoundError:
        pass
    doc = load(db)
    if action == "crm.delete":
        doc["records"].pop(rid, None)
    elif action == "crm.restore":
        doc["records"][rid] = step["undo"]["arguments"]["name"]
    else:
        print(f"crm: unknown action {action}", file=sys.stderr)
        return 4
    failed = " (the call failed)" if step.get("status") != "ok" else ""
    doc["log"].append(f"{action.split('.')[1]} {rid} {step['step']}/{step['of']} {step['call_id']} {step['tool']}{failed}")
    save(db, doc)
    print(f"crm: {action} {rid} done")
    return 0


def main():
    db, cmd = sys.argv[1], sys.argv[2]
    if cmd == "undo":
        return undo(db)
    doc = load(db)
    if cmd == "create":
        doc["records"][sys.argv[3]] = sys.argv[4]
    elif cmd == "delete":
        doc["records"].pop(sys.argv[3], None)
    else:
        return 2
    save(db, doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())

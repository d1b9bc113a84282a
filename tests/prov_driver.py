#!/usr/bin/python3
"""prov_driver.py - the exec driver tests/test_provision.c runs for real.

(Debian's python3 by its path: a python3 found through PATH may be a wrapper script, such
as pyenv's, that takes seconds to start on a loaded machine.)

It keeps its resources as files in res/ next to itself (res/LEASE_ID holds the call that made
it), logs every call to calls.log ("VERB LEASE_ID"), and counts its copies running at once
(running/VERB-PID; the most of one verb ever seen at once in maxrun-VERB). Files next to it steer it:
  fail-VERB      answer {"ok": false, "error": <the file's text>}
  garbage-VERB   print bytes that are not JSON
  sleep-VERB     sleep that many seconds first (a driver that hangs: the peer's timeout)
  block-VERB-STEP  at STEP ("before": nothing done yet; "after": the resource made or
                 removed, not answered) write at-VERB-STEP (its pid) and wait for go-VERB-STEP,
                 at most 60 s (then exit 3), so a test can kill the peer at a known point.
"""
import fcntl
import json
import os
import sys
import time

D = os.path.dirname(os.path.abspath(__file__))
RES = os.path.join(D, "res")
RUN = os.path.join(D, "running")


def path(name):
    return os.path.join(D, name)


def answer(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def block(verb, step):
    if not os.path.exists(path("block-%s-%s" % (verb, step))):
        return
    with open(path("at-%s-%s" % (verb, step)), "w") as f:
        f.write(str(os.getpid()))
    for _ in range(600):
        if os.path.exists(path("go-%s-%s" % (verb, step))):
            return
        time.sleep(0.1)
    sys.exit(3)


def count_running(verb):
    with open(path("maxrun.lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        n = 0
        for name in os.listdir(RUN):  # a copy killed at a timeout left its file: not running
            v, _, pid = name.partition("-")
            try:
                if v == verb:
                    os.kill(int(pid), 0)
                    n += 1
            except (OSError, ValueError):
                pass
        try:
            with open(path("maxrun-" + verb)) as f:
                old = int(f.read() or 0)
        except FileNotFoundError:
            old = 0
        if n > old:
            with open(path("maxrun-" + verb), "w") as f:
                f.write(str(n))


def main():
    verb = sys.argv[1]
    os.makedirs(RES, exist_ok=True)
    os.makedirs(RUN, exist_ok=True)
    call = json.loads(sys.stdin.read() or "{}")
    lid = call.get("lease_id", "")
    with open(path("calls.log"), "a") as f:
        f.write("%s %s\n" % (verb, lid))
    mine = os.path.join(RUN, "%s-%d" % (verb, os.getpid()))
    open(mine, "w").close()
    try:
        count_running(verb)
        if os.path.exists(path("sleep-" + verb)):
            with open(path("sleep-" + verb)) as f:
                time.sleep(float(f.read() or 1))
        if os.path.exists(path("garbage-" + verb)):
            sys.stdout.write("this is not JSON \x01\n")
            return
        if os.path.exists(path("fail-" + verb)):
            with open(path("fail-" + verb)) as f:
                answer({"ok": False, "error": f.read().strip()})
            return
        res = os.path.join(RES, lid) if lid else None
        if verb == "grant":
            block(verb, "before")
            with open(res + ".tmp", "w") as f:
                json.dump(call, f)
            os.rename(res + ".tmp", res)
            block(verb, "after")
            answer({"ok": True, "access": {"host": "127.0.0.1", "user": "t-" + call["tenant_kid"]}})
        elif verb == "renew":
            if not os.path.exists(res):
                answer({"ok": False, "error": "no resource for " + lid})
                return
            with open(res) as f:
                held = json.load(f)
            held["end_ms"] = call["end_ms"]
            with open(res + ".tmp", "w") as f:
                json.dump(held, f)
            os.rename(res + ".tmp", res)
            answer({"ok": True})
        elif verb == "release":
            block(verb, "before")
            if os.path.exists(res):
                os.unlink(res)
            block(verb, "after")
            answer({"ok": True})
        elif verb == "status":
            answer({"ok": True, "present": os.path.exists(res)})
        elif verb == "list":
            answer({"ok": True, "leases": sorted(n for n in os.listdir(RES) if not n.endswith(".tmp"))})
        else:
            answer({"ok": False, "error": "unknown verb " + verb})
    finally:
        os.unlink(mine)


main()

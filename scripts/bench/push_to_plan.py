#!/usr/bin/env python3
"""Push-to-plan latency against a running `phoenix run` (used by scripts/bench_api.sh).

For each of N rounds: change one group's template in the work repository, commit and
push it to the `git daemon` repository, send a signed GitHub push webhook for the new
commit, then poll `GET /api/v1/groups/<name>` every 5 ms until the group shows the new
desired hash with a plan acting on it: the group's current operation (`operation.plan_id`),
or, for a plan that already ran to completion in the pass that created it (sim launches
at once), a plan for the group and the new hash in `GET /api/v1/plans`; in observe mode
just the new desired hash. The clock starts just before the webhook is sent.

Prints one JSON object: the per-round latencies (ms) to the new hash and to the plan.
Every loop is bounded in count and time; traffic goes to 127.0.0.1 only.
"""
import argparse
import hashlib
import hmac
import http.client
import json
import os
import statistics
import subprocess
import sys
import time


def git(work, *args):
    subprocess.run(["git", "-C", work, *args], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def rev(work):
    return subprocess.run(["git", "-C", work, "rev-parse", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


class Api:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt:
                    raise

    def group(self, name):
        status, body = self.request("GET", "/api/v1/groups/" + name)
        if status != 200:
            raise RuntimeError(f"GET group {name}: {status} {body[:200]!r}")
        return json.loads(body)


def planned(api, group, target_hash):
    """Whether GET /api/v1/plans lists a plan moving `group` to `target_hash`."""
    status, body = api.request("GET", "/api/v1/plans")
    if status != 200:
        raise RuntimeError(f"GET plans: {status} {body[:200]!r}")
    return any(p["group"] == group and p["target_hash"] == target_hash for p in json.loads(body)["plans"])


def pct(values, p):
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--work", required=True, help="work clone of the served repository")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--groups", type=int, required=True)
    ap.add_argument("--mode", choices=["enforce", "observe"], default="enforce")
    ap.add_argument("--timeout", type=float, default=30.0, help="per round, seconds")
    ap.add_argument("--interval", type=float, default=0.005)
    a = ap.parse_args()

    api = Api(a.port)
    hash_ms, plan_ms, timeouts, done_before_seen = [], [], 0, 0
    step = max(1, a.groups // max(1, a.rounds))
    for i in range(min(a.rounds, 1000)):
        name = "g-%05d" % ((i * step + 7) % a.groups)
        path = os.path.join(a.work, "groups", name + ".yaml")
        old = api.group(name)["desired_hash"]
        with open(path) as f:
            text = f.read()
        # a new image (a real template change), and at least one replica, so the planner
        # opens a plan: a launch for a group at 0 replicas, else a rolling replacement
        lines = [l for l in text.splitlines() if not l.strip().startswith("image:")]
        out = []
        for l in lines:
            if l.strip() == "replicas: 0":
                l = l.replace("replicas: 0", "replicas: 1")
            out.append(l)
            if l.strip() == "template:":
                out.append("    image: ami-%017x" % (0x1000 + i + 1))
        with open(path, "w") as f:
            f.write("\n".join(out) + "\n")
        git(a.work, "commit", "-qam", f"bench: {name} image {i}")
        git(a.work, "push", "-q", "origin", "HEAD:main")
        after = rev(a.work)
        body = json.dumps({"ref": "refs/heads/main", "before": "0" * 40, "after": after,
                           "repository": {"full_name": "bench/infra"}}).encode()
        sig = "sha256=" + hmac.new(a.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-GitHub-Event": "push",
                   "X-GitHub-Delivery": f"bench-{os.getpid()}-{i}",
                   "X-Hub-Signature-256": sig}
        t0 = time.monotonic()
        status, resp = api.request("POST", "/api/v1/webhooks/git", body, headers)
        if status != 202:
            raise RuntimeError(f"webhook: {status} {resp!r}")
        t_hash = t_plan = None
        deadline = t0 + a.timeout
        while time.monotonic() < deadline:
            g = api.group(name)
            now = time.monotonic()
            if g["desired_hash"] != old:
                if t_hash is None:
                    t_hash = now
                op = g.get("operation")
                if a.mode == "observe" or (op and op.get("plan_id")):
                    t_plan = now
                    break
                # A plan can run to completion within the pass that created it (sim
                # launches at once); then it is no current operation, but it is in the
                # plan list.
                if planned(api, name, g["desired_hash"]):
                    t_plan = time.monotonic()
                    done_before_seen += 1
                    break
            time.sleep(a.interval)
        if t_plan is None:
            timeouts += 1
            print(f"round {i} ({name}): not visible within {a.timeout}s", file=sys.stderr)
        else:
            hash_ms.append((t_hash - t0) * 1000)
            plan_ms.append((t_plan - t0) * 1000)
            print(f"round {i} ({name}): hash {hash_ms[-1]:.1f} ms, plan {plan_ms[-1]:.1f} ms",
                  file=sys.stderr)
        # let the debounce window close and the replacement start before the next push
        time.sleep(0.5)

    res = {
        "rounds": a.rounds, "ok": len(plan_ms), "timeouts": timeouts,
        "done_before_seen": done_before_seen, "mode": a.mode,
        "hash_ms": [round(x, 1) for x in hash_ms],
        "plan_ms": [round(x, 1) for x in plan_ms],
        "hash_median_ms": round(statistics.median(hash_ms), 1) if hash_ms else None,
        "plan_median_ms": round(statistics.median(plan_ms), 1) if plan_ms else None,
        "plan_p90_ms": round(pct(plan_ms, 90), 1) if plan_ms else None,
        "plan_min_ms": round(min(plan_ms), 1) if plan_ms else None,
        "plan_max_ms": round(max(plan_ms), 1) if plan_ms else None,
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()

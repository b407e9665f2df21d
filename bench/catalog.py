"""The measuring half of bench/catalog.sh: one run of a real `holdfast run` under strace."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ARCHIVES = 1000
POLICY = "bench-catalog"
VOLUME = "holdfast-bench-catalog"


def spec(requested):
    return (
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\n"
        f"metadata:\n  name: {POLICY}\n"
        f"  annotations: {{holdfast.dev/requested-at: '{requested}'}}\n"
        "spec:\n  schedule: '0 3 1 1 *'\n"
        f"  targets: {{volumes: [{VOLUME}]}}\n"
        "  consistency: {stop: none}\n"
        "  retention: {keepLast: 5000}\n"
    )


def fill_repository(repo):
    """1,000 good archives of the policy, each a manifest and one small artifact."""
    data = b"x" * 100
    digest = hashlib.sha256(data).hexdigest()
    for i in range(ARCHIVES):
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(1700000000 + i * 3600))
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1700000000 + i * 3600))
        archive_id = f"{POLICY}-{stamp}"
        folder = os.path.join(repo, POLICY, archive_id)
        os.makedirs(os.path.join(folder, "volumes"))
        with open(os.path.join(folder, "volumes", "v.tar"), "wb") as f:
            f.write(data)
        manifest = {
            "formatVersion": 1, "id": archive_id, "kind": "BackupPolicy", "name": POLICY,
            "policy": POLICY, "phase": "Succeeded", "host": "bench",
            "holdfastVersion": "0", "dockerApiVersion": "1.41",
            "startTime": when, "completionTime": when, "format": "tar", "level": None,
            "targets": {"stacks": [], "containers": [], "volumes": [VOLUME]},
            "artifacts": [{"kind": "volume", "path": "volumes/v.tar", "size": len(data),
                           "sha256": digest, "sourceBytes": len(data), "entries": 1,
                           "source": VOLUME}],
            "timings": {}, "downtime": {}, "warnings": [],
        }
        with open(os.path.join(folder, "manifest.json"), "w") as f:
            json.dump(manifest, f)


def children(pid):
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        return json.load(r)


def manifest_opens(trace):
    with open(trace) as f:
        return sum(1 for line in f if "openat(" in line and 'manifest.json"' in line)


def measure(binary):
    work = tempfile.mkdtemp(prefix="holdfast-catalog-")
    specs, repo = os.path.join(work, "specs"), os.path.join(work, "repo")
    os.makedirs(specs)
    fill_repository(repo)
    spec_file = os.path.join(specs, "bench.yaml")
    with open(spec_file, "w") as f:
        f.write(spec("1"))
    trace = os.path.join(work, "trace")
    port = free_port()
    log = open(os.path.join(work, "daemon.log"), "w")
    daemon = subprocess.Popen(
        ["strace", "-f", "-qq", "-e", "trace=openat", "-o", trace, binary, "run",
         "--specs", specs, "--state", os.path.join(work, "state"), "--repository", repo,
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        def succeeded():
            """Runs this daemon made that succeeded (not the archives it adopted)."""
            try:
                items = get(port, f"/api/v1/runs?policy={POLICY}")["items"]
            except OSError:
                return 0
            return sum(1 for x in items
                       if x["phase"] == "Succeeded" and not x["id"].startswith("adopted-"))

        def wait_for(done, what, limit=120):
            t = time.monotonic()
            while not done():
                if daemon.poll() is not None:
                    sys.exit(f"holdfast exited early; see {log.name}")
                if time.monotonic() - t > limit:
                    sys.exit(f"timed out waiting for {what}; see {log.name}")
                time.sleep(0.2)

        # The first request (requested-at "1") runs at start-up; wait for it to end, then
        # measure a second one, so the start-up scan is not counted.
        wait_for(lambda: succeeded() >= 1, "the first run")
        time.sleep(3)
        before = manifest_opens(trace)
        with open(spec_file + ".tmp~", "w") as f:
            f.write(spec("2"))
        os.rename(spec_file + ".tmp~", spec_file)
        wait_for(lambda: succeeded() >= 2, "the second run")

        def counted():
            try:
                policy = get(port, f"/api/v1/policies/{POLICY}")
            except OSError:
                return None
            return policy.get("status", {}).get("archives", {}).get("count")

        # Retention and the status pass follow the run's end: counted once the status
        # shows both new archives, and the reads have stopped.
        wait_for(lambda: counted() == ARCHIVES + 2, "the status to count both new archives")
        after = manifest_opens(trace)
        while True:
            time.sleep(2)
            settled = manifest_opens(trace)
            if settled == after:
                break
            after = settled
        count = counted()
    finally:
        # SIGTERM goes to holdfast itself (strace's child), which stops; strace follows.
        for child in children(daemon.pid):
            os.kill(child, signal.SIGTERM)
        daemon.wait(timeout=60)
        shutil.rmtree(work, ignore_errors=True)
    return after - before, count


def main():
    binary, baseline = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else None)
    subprocess.run(["docker", "volume", "create", VOLUME], check=True, stdout=subprocess.DEVNULL)
    mount = subprocess.run(["docker", "volume", "inspect", "-f", "{{.Mountpoint}}", VOLUME],
                           check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(mount, "data.txt"), "w") as f:
        f.write("holdfast\n" * 1000)
    try:
        reads, count = measure(binary)
        print(f"archives in the repository: {ARCHIVES}")
        print(f"manifest reads for one run: {reads} (archives counted in the status: {count}; target <= 1)")
        if baseline:
            old, old_count = measure(baseline)
            print(f"baseline manifest reads:    {old} (archives counted: {old_count})")
            if reads:
                print(f"ratio baseline / now:       {old / reads:.0f}x")
    finally:
        subprocess.run(["docker", "volume", "rm", "-f", VOLUME], stdout=subprocess.DEVNULL)


main()

"""The measuring half of bench/reconcile.sh: drives a real `holdfast run`."""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

FILES, PER_FILE, EDITS = 100, 10, 50


def policy(name, minute):
    return (
        "apiVersion: holdfast.dev/v1alpha1\nkind: BackupPolicy\n"
        f"metadata:\n  name: {name}\nspec:\n  schedule: '{minute} 3 1 1 *'\n"
        "  timezone: Europe/Berlin\n  jitter: 10m\n"
        "  targets: {stacks: [bench-absent]}\n  retention: {keepDaily: 7}\n"
    )


def write_file(specs, i, minute=0):
    docs = [policy(f"p{i:03d}-{j}", minute) for j in range(PER_FILE)]
    path = os.path.join(specs, f"group{i // 10}", f"f{i:03d}.yaml")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp~"
    with open(tmp, "w") as f:
        f.write("---\n".join(docs))
    os.rename(tmp, path)
    return path


def status_of(path):
    return path[: -len(".yaml")] + ".status.yaml"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    binary, idle = sys.argv[1], int(sys.argv[2])
    work = tempfile.mkdtemp(prefix="holdfast-reconcile-")
    specs = os.path.join(work, "specs")
    paths = [write_file(specs, i) for i in range(FILES)]
    log = open(os.path.join(work, "daemon.log"), "w")
    t0 = time.monotonic()
    daemon = subprocess.Popen(
        [binary, "run", "--specs", specs, "--state", os.path.join(work, "state"),
         "--repository", os.path.join(work, "repo"), "--listen", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        while not all(os.path.exists(status_of(p)) for p in paths):
            if daemon.poll() is not None:
                sys.exit("holdfast exited early; see " + log.name)
            time.sleep(0.002)
        startup = time.monotonic() - t0

        latencies = []
        for n in range(EDITS):
            i = (n * 37) % FILES
            status = status_of(paths[i])
            before = open(status).read()
            t = time.monotonic()
            write_file(specs, i, minute=(n % 50) + 1)
            while True:
                try:
                    if open(status).read() != before:
                        break
                except FileNotFoundError:
                    pass
                if time.monotonic() - t > 10:
                    sys.exit(f"edit {n}: status never changed")
                time.sleep(0.001)
            latencies.append(time.monotonic() - t)
            time.sleep(0.2)

        time.sleep(2)
        cpu0 = cpu_seconds(daemon.pid)
        time.sleep(idle)
        cpu1 = cpu_seconds(daemon.pid)
        rss = rss_mib(daemon.pid)
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    lat = sorted(latencies)
    p95 = lat[int(round(0.95 * (len(lat) - 1)))]
    median = statistics.median(lat)
    per_minute = (cpu1 - cpu0) * 60 / idle
    print(f"policies:       {FILES * PER_FILE} in {FILES} files; {os.cpu_count()} cores")
    print(f"start-up:       {startup * 1000:.0f} ms until all {FILES} status files exist (target <= 1000 ms)")
    print(f"edit-to-status: median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms over {EDITS} edits "
          f"(target median <= 300 ms; includes the 100 ms debounce)")
    print(f"idle RSS:       {rss:.1f} MiB after {idle} s idle (target <= 30 MiB)")
    print(f"idle CPU:       {cpu1 - cpu0:.3f} s over {idle} s = {per_minute:.3f} s per minute (target <= 0.1)")


main()

"""Container image figures: each image's size, and the bot's startup-to-ready time and RSS at ready,
measured on the real Docker engine against the simulator's container (README "Container images").

    python -m bench.images                      # the images scripts/images.sh built, 5 starts
    python -m bench.images --runs 9 --compare tradefleet-bot:main-baseline   # a peer in the same run

Builds nothing: run `scripts/images.sh` first. Per run: `docker run -d` of the bot image (read-only,
no capabilities, uid 10001, like compose and the chart) on a private network with a `tradefleet sim
--loop` container already serving, then /readyz polled every 20 ms from the host; "startup-to-ready"
is from just before `docker run` to the first 200 (so it includes the engine creating the container),
and RSS is PID 1's VmRSS read at that moment. With --compare, the other image is measured the same
way, interleaved run by run, so both see the same machine load. The machine is shared: compare
figures within one run. Last line, machine-readable:

    images bot_mb=<x> operator_mb=<x> ready_s_median=<x> rss_mib_median=<x>
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
import urllib.request

DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"
HARDENED = ["--read-only", "--cap-drop", "ALL", "--tmpfs", "/tmp", "--security-opt", "no-new-privileges"]


def docker(*args: str) -> str:
    return subprocess.run([DOCKER, *args], capture_output=True, text=True, check=True, timeout=120).stdout


def ip_of(name: str) -> str:
    return docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", name).strip()


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def start_to_ready(image: str, network: str, sim: str, name: str) -> tuple[float, float]:
    started = time.monotonic()
    env = ["-e", f"TRADEFLEET_REST_URL=http://{sim}:8765", "-e", f"TRADEFLEET_WS_URL=ws://{sim}:8765"]
    docker("run", "-d", "--name", name, "--network", network, *HARDENED, *env, image)
    url = f"http://{ip_of(name)}:8080/readyz"
    while not ready(url):
        if time.monotonic() - started > 180:
            raise SystemExit(f"{image} not ready after 180 s:\n{docker('logs', '--tail', '20', name)}")
        time.sleep(0.02)
    took = time.monotonic() - started
    status = docker("exec", name, "cat", "/proc/1/status")
    rss_kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    docker("rm", "-f", name)
    return took, rss_kib / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--bot", default="tradefleet-bot:dev")
    p.add_argument("--operator", default="tradefleet-operator:dev")
    p.add_argument("--compare", default=None, help="another bot image measured in the same run")
    args = p.parse_args()
    sizes = {
        t: int(docker("image", "inspect", "-f", "{{.Size}}", t)) / 1e6 for t in (args.bot, args.operator)
    }
    if args.compare:
        sizes[args.compare] = int(docker("image", "inspect", "-f", "{{.Size}}", args.compare)) / 1e6
    for tag, mb in sizes.items():
        print(f"size {tag}: {mb:.0f} MB")
    network = f"tf-bench-images-{os.getpid()}"
    sim = f"{network}-sim"
    docker("network", "create", network)
    results: dict[str, list[tuple[float, float]]] = {t: [] for t in (args.bot, args.compare) if t}
    try:
        docker("run", "-d", "--name", sim, "--network", network, *HARDENED, args.bot,
               "sim", "--host", "0.0.0.0", "--port", "8765", "--loop")  # fmt: skip
        while not ready(f"http://{ip_of(sim)}:8765/api/v3/ping"):
            time.sleep(0.1)
        for i in range(args.runs):
            for image, runs in results.items():
                runs.append(start_to_ready(image, network, sim, f"{network}-bot-{i}"))
    finally:
        for cid in docker("ps", "-aq", "--filter", f"network={network}").split():
            subprocess.run([DOCKER, "rm", "-f", cid], capture_output=True, check=False)
        subprocess.run([DOCKER, "network", "rm", network], capture_output=True, check=False)
    for image, runs in results.items():
        times = sorted(t for t, _ in runs)
        rss = sorted(r for _, r in runs)
        print(f"{image}: startup-to-ready median {statistics.median(times):.2f} s "
              f"(min {times[0]:.2f}, max {times[-1]:.2f}, {len(times)} runs); "
              f"RSS at ready median {statistics.median(rss):.1f} MiB (max {rss[-1]:.1f})")  # fmt: skip
    mine = results[args.bot]
    print(json.dumps({"sizes_mb": {k: round(v) for k, v in sizes.items()}}))
    print(
        f"images bot_mb={sizes[args.bot]:.0f} operator_mb={sizes[args.operator]:.0f} "
        f"ready_s_median={statistics.median(t for t, _ in mine):.2f} "
        f"rss_mib_median={statistics.median(r for _, r in mine):.1f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

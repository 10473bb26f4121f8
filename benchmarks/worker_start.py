"""How long a trial's worker process takes to start, cold and from a warm pool (the pool is not
used by the sweeps).

A cell's first trial on a slot, and every trial of a Tune run without actor reuse, is a new Ray
worker process that imports torch and the trial's module before its first step (a cell's later
trials reuse that process: sweeps.engine.trial.TrainTrial). Three ways, each on its own
local Ray instance with 2 CPUs, one 1-CPU actor already alive, then --actors actors started one
after another (the next after the last is killed and --gap seconds passed), timed from
``.remote()`` to the actor's first method returning:

  cold     Ray's defaults: each actor starts a fresh worker, which imports the modules
  preload  system config preload_python_modules = torch, sweeps.engine.trial: the workers Ray
           prestarts at start-up have them imported, but once those are used up every new
           worker starts cold again
  pool     preload, plus a thread on the driver that keeps --spare idle workers alive (zero-CPU
           tasks in parallel each second) and num_workers_soft_limit raised so Ray does not end
           them: an actor takes a warm worker

Run:  python benchmarks/worker_start.py [--actors 4] [--gap 8] [--spare 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import ray

PRELOAD = ["torch", "sweeps.engine.trial"]


@ray.remote(num_cpus=1)
class Trial:
    def __init__(self):
        import sweeps.engine.trial  # noqa: F401 - what a trial's process imports

    def ready(self) -> bool:
        return True


@ray.remote(num_cpus=0)
def idle() -> None:
    time.sleep(0.05)


def keep_spare(spare: int, stop: threading.Event) -> None:
    while not stop.is_set():
        ray.get([idle.remote() for _ in range(spare)])
        stop.wait(1.0)


def measure(mode: str, args) -> list[float]:
    config = {}
    if mode in ("preload", "pool"):
        config["preload_python_modules"] = PRELOAD
    if mode == "pool":
        config["num_workers_soft_limit"] = 2 + args.spare + 2
    ray.init(num_cpus=2, include_dashboard=False, _system_config=config,
             _temp_dir=tempfile.mkdtemp(prefix="ws", dir="/tmp"))  # fmt: skip
    stop = threading.Event()
    if mode == "pool":
        threading.Thread(target=keep_spare, args=(args.spare, stop), daemon=True).start()
    try:
        time.sleep(args.gap)  # Ray's prestarted workers come up
        held = Trial.remote()
        ray.get(held.ready.remote())
        times = []
        for _ in range(args.actors):
            time.sleep(args.gap)
            start = time.perf_counter()
            actor = Trial.remote()
            ray.get(actor.ready.remote())
            times.append(time.perf_counter() - start)
            ray.kill(actor)
        return times
    finally:
        stop.set()
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actors", type=int, default=4)
    ap.add_argument("--gap", type=float, default=8.0)
    ap.add_argument("--spare", type=int, default=2)
    args = ap.parse_args()
    for mode in ("cold", "preload", "pool"):
        times = measure(mode, args)
        print(f"{mode:8s} actor start, s: " + " ".join(f"{t:.2f}" for t in times)
              + f"  (median {statistics.median(times):.2f})", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

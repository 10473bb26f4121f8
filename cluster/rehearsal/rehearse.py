"""`make cluster`: the README's cluster path, rehearsed on this machine with real parts.

    ray up cluster/gpu.yaml                                  (here: a config made from it)
    ray submit cluster/gpu.yaml sweeps/spvae.py ... --storage s3://BUCKET/...
    python -m results table spvae --storage s3://BUCKET/...  (on the "laptop")

Everything below is started here and stopped here by PID, also on a failure, Ctrl-C or SIGTERM:

- a private network namespace (loopback only) that holds all of it: Ray's gRPC servers bind
  0.0.0.0 whatever --node-ip-address says (src/ray/rpc/grpc_server.cc), so only a namespace keeps
  them off the machine's network; no port here can collide with another Ray on the machine;
- sshd on 127.0.0.1, .2 and .3 port 22: the cluster's three "machines", one dedicated user
  (``vaenode``) whose venv reaches the project's .venv packages through a .pth file (the
  "image"); its ~/.bashrc holds the node's environment (S3 endpoint and keys, as an instance
  profile would give them);
- moto's S3 server (the bucket), PostgreSQL 15 (the Optuna study of the second sweep) and an
  HTTP server: the dataset mirror (MNIST in its real format, SHA256SUMS) and the nodes' package
  index (the wheels their setup needs beyond the image: the network has no route out);
- the cluster: ``ray up`` with the on-premises provider (a head with no trial resources, two
  workers with one "GPU" each, brought up by the head's autoscaler over SSH); ``ray submit`` of
  a node check; of the SPVAE smoke sweep onto S3 while one worker's raylet is SIGKILLed once a
  trial runs there (the autoscaler brings the node back); of a short sweep whose Optuna study
  lives in PostgreSQL;
- the laptop side: ``python -m results check / table / report`` against the bucket.

    sudo .venv/bin/python cluster/rehearsal/rehearse.py [--keep-logs DIR]

Prints each step with its time since the start, then a summary; exit 0 only if every check held.

The parts, one role each: steps.py (the steps in order, the checks of each, the teardown),
servers.py (sshd, S3, PostgreSQL, the mirror: each start and stop), nodes.py (the node user: its
image, its processes), launcher.py (the launcher config, `ray up`, `ray submit`, Ray's state API,
the worker killed), laptop.py (the results read back), runner.py (commands with their logs, the
steps' timing), processes.py (the process table, ending and reaping by PID, ports, the
namespace); this file: the lock, the signals, the run and its teardown, the failure report and
the summary.
"""

from __future__ import annotations

import argparse
import fcntl
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path

# The sibling modules, from any working directory (run as a script, this folder is on sys.path
# already; not so when the file is run another way, e.g. through runpy).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from processes import become_subreaper  # noqa: E402
from runner import T0, Interrupted, StepFailed, say, tail  # noqa: E402
from steps import Rehearsal  # noqa: E402

LOCK = Path("/run/lock/vae-sweeps-rehearsal.lock")


# ---- main: the lock, the signals, the run, the summary --------------------------------------


def main(argv=None) -> int:
    """Rehearse and tear down; 0 only if every check held, 2 if another rehearsal runs."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep-logs", type=Path, default=None, help="copy the logs here at the end")
    args = p.parse_args(argv)

    LOCK.parent.mkdir(parents=True, exist_ok=True)
    lock = open(LOCK, "w")  # held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"error: another rehearsal holds {LOCK}", file=sys.stderr)
        return 2

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)
    become_subreaper()
    r = Rehearsal(args.keep_logs)
    failure, problems = run(r)
    summary(r, failure, problems)
    return 0 if failure is None and not problems else 1


def interrupted(signum, frame):
    raise Interrupted(signal.Signals(signum).name)


def later(signum, frame):
    say(f"{signal.Signals(signum).name} during the teardown: the teardown goes on")


def run(r: Rehearsal) -> tuple[StepFailed | None, list[str]]:
    """The steps, then the teardown whatever happened (a signal then does not stop it); the
    failure (None if every step passed) and the teardown's problems."""
    failure = None
    try:
        r.rehearse()
    except StepFailed as e:
        failure = e
    except Interrupted as e:
        failure = StepFailed(f"interrupted ({e})")
    except Exception as e:  # a bug of ours: still tear down
        traceback.print_exc()
        failure = StepFailed(f"{type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGINT, later)
        signal.signal(signal.SIGTERM, later)
        if failure is not None:
            report_failure(r, failure)
        say("teardown")
        problems = r.teardown()
    return failure, problems


def report_failure(r: Rehearsal, e: StepFailed) -> None:
    """What failed, at which step, the command, and the last lines of its logs."""
    say(f"FAILED at step '{r.steps.current}': {e.what}")
    if e.command:
        print(f"  command: {shlex.join(str(a) for a in e.command)}")
    for log in ([e.log] if e.log else []) + e.more:
        print(f"  --- {log} (its last 40 lines) ---")
        print("\n".join("  | " + line for line in tail(log).splitlines()), flush=True)


def summary(r: Rehearsal, failure, problems) -> None:
    """Each step's time and detail, the ports used, PASSED or FAILED with the total time."""
    print("\nSummary")
    for name, took, detail in r.steps.done:
        print(f"  {took:6.1f} s  {name}: {detail}")
    print(
        f"  ports used: {len(r.ports.seen)}, all in the private namespace (0.0.0.0 and * there"
        " reach its loopback alone), each closed by the teardown unless said above"
    )
    for address, ports in sorted(r.ports.by_address().items()):
        print(f"    {address}: {', '.join(ports)}")
    total = time.monotonic() - T0
    if failure is None and not problems:
        print(f"  REHEARSAL PASSED in {total:.1f} s")
    else:
        why = "; ".join(([failure.what] if failure else []) + problems)
        print(f"  REHEARSAL FAILED in {total:.1f} s: {why}")


if __name__ == "__main__":
    sys.exit(main())

"""The rehearsal's steps in order, the checks of each, and its teardown (rehearse.py runs them).

Each step is timed and printed (runner.StepLog) and raises StepFailed when one of its checks does
not hold; the teardown stops every part that was started, each even when another fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import tomllib
from pathlib import Path

import launcher_config as lc
from laptop import Laptop
from launcher import Launcher
from nodes import USER, NodeUser, base_python, check_packages_readable
from processes import NoNamespace, Ports, enter_private_network, kill_all, processes
from runner import HERE, REPO, Runner, StepFailed, StepLog, say
from servers import PG_BIN, PG_DB, S3, Mirror, Postgres, Sshd

NODE_IPS = (lc.HEAD_IP, *lc.WORKER_IPS)
WORK_PREFIX = "vae-rehearsal-"
BUCKET = "vae-rehearsal"
TOOLS = "/usr/sbin/sshd rsync ssh ssh-keygen flock runuser useradd userdel ss".split()

# The sweeps: the SPVAE paper's smoke budget on the mirror's MNIST, one family (2 cells).
SWEEP = ["--budget", "smoke", "--datasets", "mnist", "--families", "spvae_vae"]
MAIN_STORAGE = f"s3://{BUCKET}/rehearsal"  # the Optuna journals: beside it (no --study-storage)
PG_STORAGE = f"s3://{BUCKET}/rehearsal-pg"


class Rehearsal:
    """One rehearsal: its temp dir and parts, its steps in order (``rehearse``), its teardown."""

    def __init__(self, keep_logs: Path | None = None):
        self.keep_logs = keep_logs
        self.work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX))
        self.work.chmod(0o711)  # postgres (its data dir is under here) must traverse it
        self.logs = self.work / "logs"
        self.logs.mkdir()
        self.key = self.work / "id_ed25519"  # the launcher's: `ray up` logs in with it
        self.steps, self.runner = StepLog(), Runner(self.logs)
        self.node = NodeUser(self.runner)
        self.sshd, self.s3 = Sshd(self.runner, self.work), S3()
        self.postgres = Postgres(self.runner, self.work)
        self.mirror = Mirror(self.runner, self.work / "mirror")
        self.cluster = Launcher(self.runner, self.work)
        self.laptop: Laptop | None = None  # once the bucket is there
        self.ports = Ports()  # every socket seen listening (all ours: the namespace is)
        self.storages: list[tuple[str, list[str]]] = []  # (storage, extra args of `check`)
        self.killed = None  # (what, address, node id, when) of the worker killed mid-sweep

    def rehearse(self):
        """The steps in order; each raises StepFailed when a check of it does not hold."""
        self.preflight()
        self.wheelhouse()
        self.network()  # from here on: loopback only
        self.node_user()
        self.servers()
        self.launcher_config()
        self.ray_up()
        self.node_check()
        self.sweep()
        self.lost_worker_back()
        self.pg_sweep()
        self.read_back()

    # -- the host: checks, leftovers of a killed run, the nodes' wheels, the namespace --

    def preflight(self):
        with self.steps.step("preflight") as s:
            if os.geteuid() != 0:
                raise StepFailed("run as root: it adds a user and starts sshd and PostgreSQL")
            missing = [tool for tool in [*TOOLS, str(PG_BIN / "initdb")] if not shutil.which(tool)]
            if missing:
                raise StepFailed(f"missing: {', '.join(missing)} (`make cluster` installs them)")
            self.base_python = base_python()
            check_packages_readable()
            pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
            self.build_requires = pyproject["build-system"]["requires"]
            self.cluster_extra = pyproject["project"]["optional-dependencies"].get("cluster")
            if not self.cluster_extra:
                raise StepFailed("pyproject.toml has no [cluster] extra (PostgreSQL's driver)")
            stale = self.clean_stale_runs()
            s["detail"] = f"node python {self.base_python}" + (f"; {stale}" if stale else "")

    def clean_stale_runs(self) -> str:
        """What a rehearsal killed by SIGKILL left (we hold the lock: no other one runs): its
        node user's processes and user, the servers started from its dir (by PID), its dir."""
        notes = [self.node.remove_stale()]
        for old in Path(tempfile.gettempdir()).glob(f"{WORK_PREFIX}*"):
            if old == self.work:
                continue
            pids = [p.pid for p in processes() if str(old) in p.cmdline]
            kill_all(pids)
            self.runner.reap()
            shutil.rmtree(old, ignore_errors=True)
            notes.append(f"{old} removed ({len(pids)} processes ended)")
        return "; ".join(note for note in notes if note)

    def wheelhouse(self):
        with self.steps.step("wheelhouse") as s:
            s["detail"] = self.mirror.download_wheels(self.build_requires, self.cluster_extra)

    def network(self):
        with self.steps.step("network") as s:
            try:
                enter_private_network()
            except NoNamespace as e:
                raise StepFailed(str(e)) from None
            s["detail"] = "a private network namespace: loopback only, no route out"

    # -- the node user, the servers, the launcher config --

    def node_user(self):
        with self.steps.step("node user") as s:
            s["detail"] = self.node.create(self.base_python, self.key)

    def servers(self):
        with self.steps.step("sshd") as s:
            s["detail"] = self.sshd.start(NODE_IPS, USER)
        with self.steps.step("S3 (moto)") as s:
            s["detail"] = self.s3.start(BUCKET, self.logs / "s3.log")
            self.laptop = Laptop(self.runner, self.s3.env, self.work)
        with self.steps.step("PostgreSQL") as s:
            s["detail"] = self.postgres.start()
        with self.steps.step("mirror") as s:
            s["detail"] = self.mirror.start(self.logs / "http.log")

    def launcher_config(self):
        with self.steps.step("launcher config") as s:
            notes = self.cluster.write_config(self.key, self.mirror.url)
            self.node.write_shell_init(self.cluster.node_bashrc(self.s3.env, self.mirror.url))
            self.ports.note()
            s["detail"] = f"{self.cluster.config.name} from gpu.yaml, {len(notes)} substitutions:"
        for note in notes:
            say(f"  - {note}")
        say("  - launcher environment: RAY_UP_enable_autoscaler_v2=0 (see launcher_env)")

    # -- the cluster --

    def ray_up(self):
        with self.steps.step("ray up") as s:
            self.cluster.up()
            s["detail"] = "the head set up and started over SSH"
        with self.steps.step("workers") as s:
            nodes = self.cluster.wait_nodes(set(NODE_IPS), 480)
            self.ports.note()
            shapes = []
            for ip, n in sorted(nodes.items()):
                have = {k: v for k, v in n["resources_total"].items() if k in ("CPU", "GPU")}
                shapes.append(f"{ip} {have or '(no CPU, no GPU)'}")
            s["detail"] = f"the head and {len(nodes) - 1} workers alive: {', '.join(shapes)}"

    def node_check(self):
        with self.steps.step("ray submit: node check") as s:
            _, log = self.cluster.submit(HERE / "node_check.py", log="node-check", timeout=180)
            found = re.search(r"^NODES (.*)$", log.read_text().replace("\r", ""), re.M)
            if not found:
                raise StepFailed("no NODES line in its output", log=log)
            report = json.loads(found.group(1))
            if report["problems"]:
                raise StepFailed(json.dumps(report["problems"]), log=log)
            s["detail"] = (
                f"driver on {report['driver']}; tasks on "
                f"{' and '.join(report['workers'])} see S3 and MNIST"
            )

    # -- the sweeps --

    def sweep(self):
        with self.steps.step("ray submit: sweep, a worker killed") as s:
            args = [*SWEEP, "--storage", MAIN_STORAGE, "--winner-seeds", "1"]
            argv = self.cluster.submit_argv(REPO / "sweeps" / "spvae.py", *args)
            env = self.cluster.launcher_env()
            p, log = self.runner.start(argv, log="sweep", cwd=REPO, env=env)
            self.watch_sweep(p, argv, log)
            if p.returncode != 0:
                raise StepFailed(f"exit code {p.returncode}", argv, log)
            if self.killed is None:
                raise StepFailed("the sweep ended before a trial ran on a worker", argv, log)
            trials = self.laptop.trial_rows(MAIN_STORAGE, log)
            retried = [t for t, row in trials.items() if row.get("retries")]
            if not retried:
                raise StepFailed(f"no trial retried after the SIGKILL of {self.killed}", log=log)
            self.storages.append((MAIN_STORAGE, []))
            s["detail"] = (
                f"{len(trials)} trials, each with a row, {len(retried)} retried "
                f"({', '.join(retried)}) after the SIGKILL of {self.killed[0]}"
            )

    def watch_sweep(self, p, argv, log: Path) -> None:
        """Wait (600 s at most) for the sweep's end, killing a busy worker's raylet once."""
        end, noted = time.monotonic() + 600, 0.0
        try:
            while p.poll() is None:
                if time.monotonic() > end:
                    raise StepFailed("no end after 600 s", argv, log)
                self.runner.reap()
                if time.monotonic() - noted > 5:
                    self.ports.note()
                    noted = time.monotonic()
                self.killed = self.killed or self.cluster.kill_a_busy_worker(self.node.uid)
                time.sleep(1)
        except BaseException:
            self.runner.stop_group(p)
            raise
        self.runner.inflight.discard(p)

    def lost_worker_back(self):
        """The head's autoscaler notices the lost node and starts Ray there again."""
        with self.steps.step("lost worker back") as s:
            _, ip, old_id, when = self.killed
            nodes = self.cluster.wait_nodes(set(NODE_IPS), 240, not_ids={old_id})
            s["detail"] = (
                f"{ip} alive again as node {nodes[ip]['node_id'][:8]}, "
                f"{time.monotonic() - when:.0f} s after the kill"
            )

    def pg_sweep(self):
        with self.steps.step("ray submit: sweep, study in PostgreSQL") as s:
            args = [*SWEEP, "--trials", "1", "--storage", PG_STORAGE]
            args += ["--study-storage", self.postgres.url, "--winner-seeds", "1"]
            spvae = REPO / "sweeps" / "spvae.py"
            _, log = self.cluster.submit(spvae, *args, log="sweep-pg", timeout=420)
            self.ports.note()
            trials = self.laptop.trial_rows(PG_STORAGE, log)
            studies = self.postgres.psql(PG_DB, "SELECT count(*) FROM studies", log="postgres")
            stored = self.postgres.psql(PG_DB, "SELECT count(*) FROM trials", log="postgres")
            if int(stored) != len(trials):
                raise StepFailed(
                    f"PostgreSQL holds {stored} Optuna trials for {len(trials)} rows", log=log
                )
            self.storages.append((PG_STORAGE, ["--study-storage", self.postgres.url]))
            s["detail"] = (
                f"{len(trials)} trials, each with a row; PostgreSQL holds their "
                f"{studies} studies and {stored} Optuna trials"
            )

    # -- the laptop side: this process, the AWS_* variables pointing at the bucket --

    def read_back(self):
        for storage, extra in self.storages:
            with self.steps.step(f"laptop: results check {storage}") as s:
                s["detail"] = self.laptop.check(storage, extra)
        with self.steps.step("laptop: results table") as s:
            s["detail"] = self.laptop.table(MAIN_STORAGE)
        with self.steps.step("laptop: results report") as s:
            s["detail"] = self.laptop.report(MAIN_STORAGE)

    # -- teardown --

    def teardown(self) -> list[str]:
        """Stop everything the rehearsal started, each part even when another fails; what
        could not be stopped or removed."""
        problems = []

        def attempt(what, fn):
            try:
                if result := fn():
                    say(f"  {what}: {result}")
            except Exception as e:  # go on: every other part must still be stopped
                problems.append(f"{what}: {e}")
                say(f"  {what}: FAILED: {e}")

        start = time.monotonic()
        for p in list(self.runner.inflight):
            attempt(f"command {p.pid}", lambda p=p: self.runner.stop_group(p) or "stopped")
        if self.node.uid is not None:
            attempt("node logs", lambda: self.node.keep_logs(self.logs))
            attempt(f"processes of {USER}", lambda: f"{self.node.end_processes()} ended")
        attempt("sshd", self.sshd.stop)
        attempt("PostgreSQL", self.postgres.stop)
        attempt("moto", self.s3.stop)
        attempt("HTTP mirror", self.mirror.stop)
        attempt("other processes of ours", self.runner.end_leftovers)
        attempt("ports", lambda: self.runner.reap() or self.ports.check_closed())
        if self.node.uid is not None:
            attempt("node user", lambda: self.node.remove(self.cluster.cluster_name))
        attempt("temp dir", self.remove_work)
        self.runner.reap(settle=3)
        took = time.monotonic() - start
        self.steps.done.append(("teardown", took, "; ".join(problems) or "clean"))
        return problems

    def remove_work(self) -> str:
        if self.keep_logs:
            shutil.copytree(self.logs, self.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(self.work)
        kept = f" (logs kept in {self.keep_logs})" if self.keep_logs else ""
        return f"{self.work} removed{kept}"

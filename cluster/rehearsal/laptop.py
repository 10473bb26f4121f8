"""The laptop side: this process, with the AWS_* variables pointing at the bucket, reads the
sweeps' results back as a user would, and says what each must show.

Each method raises StepFailed with the log that shows why when a result is not as it must be.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner import PYTHON, Runner, StepFailed, tail


class Laptop:
    """`python -m results ...` and pyarrow, run from ``cwd`` against the bucket at ``s3_env``."""

    def __init__(self, run: Runner, s3_env: dict[str, str], cwd: Path):
        self.run, self.s3_env, self.cwd = run, s3_env, cwd

    def trial_rows(self, storage: str, log: Path) -> dict[str, dict]:
        """Every trial's row in the bucket, each completed or pruned."""
        import pyarrow.fs as pafs
        import pyarrow.parquet as pq

        fs = pafs.S3FileSystem(
            endpoint_override=self.s3_env["AWS_ENDPOINT_URL"],
            access_key=self.s3_env["AWS_ACCESS_KEY_ID"],
            secret_key=self.s3_env["AWS_SECRET_ACCESS_KEY"],
            region=self.s3_env["AWS_DEFAULT_REGION"],
        )
        root = storage.removeprefix("s3://") + "/results/trials"
        parts = [
            f.path
            for f in fs.get_file_info(pafs.FileSelector(root, recursive=True))
            if f.path.endswith(".parquet")
        ]
        trials = {
            row["trial_id"]: row
            for part in parts
            for row in pq.read_table(part, filesystem=fs).to_pylist()
        }
        bad = {
            t: r.get("status")
            for t, r in trials.items()
            if r.get("status") not in ("completed", "pruned")
        }
        if not trials or bad:
            raise StepFailed(
                f"trial rows under {storage}: {len(trials)}; not ended well: {bad}", log=log
            )
        return trials

    def results(self, *args, log: str, timeout: float) -> Path:
        """Run `python -m results ARGS` to its end; its log."""
        env = {**os.environ, **self.s3_env}
        argv = [PYTHON, "-m", "results", *args]
        _, path = self.run.run(argv, log=log, env=env, cwd=self.cwd, timeout=timeout)
        return path

    def check(self, storage: str, extra: list[str]) -> str:
        """`results check`: no difference between the rows and the studies, every trial ended."""
        log = self.results("check", "--storage", storage, *extra, log="laptop-check", timeout=180)
        last = tail(log, 1).strip()
        if not re.search(r"\b0 differences, 0 trials not finished\b", last):
            raise StepFailed(f"`results check` said: {last}", log=log)
        return last

    def table(self, storage: str) -> str:
        """`results table spvae`: one row of ours per cell, no warning. The printed table wraps
        into blocks that repeat the row labels (one per column that does not fit): a row of
        ours is counted in the block of its log-likelihood, "mean (n=.., k=..)"."""
        log = self.results("table", "spvae", "--storage", storage, log="laptop-table", timeout=180)
        text = log.read_text()
        ours = [
            line
            for line in text.splitlines()
            if line.startswith("| VAE |") and "| project |" in line and "(n=" in line
        ]
        if len(ours) != 2 or "WARNING" in text:
            raise StepFailed("not a row of ours per cell, or a warning under the table", log=log)
        return f"{len(ours)} rows of ours, e.g. {' '.join(ours[0].split()[:14])} ..."

    def report(self, storage: str) -> str:
        """`results report spvae`: the report written under ``storage``."""
        log = self.results(
            "report", "spvae", "--storage", storage, log="laptop-report", timeout=300
        )
        last = tail(log, 1).strip()
        if not last.startswith(f"wrote {storage}/"):
            raise StepFailed(f"`results report` said: {last}", log=log)
        return last

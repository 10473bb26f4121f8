"""Where a result came from: git SHA of the code and versions of the packages that ran it."""

from __future__ import annotations

import functools
import json
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "ray", "optuna", "numpy", "pandas", "pyarrow")


@functools.cache
def provenance() -> dict[str, str]:
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = "unknown"
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = "missing"
    return {"git_sha": sha, "versions": json.dumps(versions, sort_keys=True)}

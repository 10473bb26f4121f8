"""Write the rehearsal's dataset mirror: small MNIST files in the real format (gzipped IDX, by
tests/conftest.py's writer).

    PYTHONPATH=<repo> python cluster/rehearsal/mirror_files.py MIRROR_DIR

rehearse.py runs this in a subprocess (it imports nothing of the project itself) and writes the
mirror's SHA256SUMS. The files are smaller than the published ones: `python -m training data
--mirror` verifies them against the mirror's SHA256SUMS and notes the sizes it served, which the
sweep's check on every node (training.fetch.check_available) then compares with.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.conftest import make_mnist_like


def main(mirror: Path) -> None:
    make_mnist_like(mirror / "mnist", "debian", n_train=2000, n_test=500)


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Replay a stored trial of a sweep: train it again from its stored config and compare its
learning curve with the stored one, epoch by epoch, bit for bit.

    python sweeps/replay.py --storage DIR --trial ID [--epochs N]
    python sweeps/replay.py --storage DIR --list                   # the stored trials

Exit code 0 when every metric of every epoch is identical, 1 when one differs, 2 on bad input
(docs/running-sweeps.md#replaying-a-trial; the replay itself: sweeps/engine/replay.py).
"""

import sys

from sweeps.engine.replay import main

if __name__ == "__main__":
    sys.exit(main())

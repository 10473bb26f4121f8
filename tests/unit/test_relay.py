"""sweeps.engine.relay: what cells print in their actor reaches the driver's console whole, a
line at a time, however their threads interleave. On a real sweep: the console journey in
tests/e2e/test_sweep_journeys.py."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from sweeps.engine.relay import Relay, _Lines

REPO = Path(__file__).resolve().parents[2]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.text(st.characters(blacklist_characters="\n\r"), max_size=20),
                         min_size=1, max_size=4), min_size=1, max_size=6))  # fmt: skip
@example([["\ud800"]])  # a lone surrogate: UTF-8 cannot hold it (CI's hypothesis found it)
def test_partial_writes_of_threads_land_as_their_whole_lines(tmp_path_factory, lines):
    """Each thread writes its lines in pieces (print writes text, then its end); what the file
    holds is every whole line, none cut into another."""
    import threading

    path = tmp_path_factory.mktemp("relay") / "stdout"
    out = _Lines(path)

    def write(pieces, n):
        for p in pieces:
            out.write(f"{n}:{p}")
            out.write("\n")

    threads = [threading.Thread(target=write, args=(p, n)) for n, p in enumerate(lines)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []
    def written(text: str) -> str:  # what UTF-8 cannot hold (a lone surrogate), escaped
        return text.encode("utf-8", "backslashreplace").decode("utf-8")

    assert sorted(got) == sorted(written(f"{n}:{p}") for n, ps in enumerate(lines) for p in ps)


def test_another_process_prints_through_it_and_the_driver_shows_each_line_once(tmp_path, capfd):
    relay = Relay()
    child = textwrap.dedent(f"""
        import pickle, sys
        relay = pickle.loads({pickle.dumps(relay)!r})
        relay.capture()
        print("== cell-a: 2 trials (new; target 2)")
        print("warning: something", file=sys.stderr)
        sys.stdout.write("half a li")
    """)
    subprocess.run([sys.executable, "-c", child], cwd=REPO, check=True)
    relay.show()
    relay.show()  # nothing new: nothing printed twice
    out, err = capfd.readouterr()
    assert out == "== cell-a: 2 trials (new; target 2)\n"  # the half line waits for its end
    assert err == "warning: something\n"
    relay.close()
    assert not relay.folder.exists()

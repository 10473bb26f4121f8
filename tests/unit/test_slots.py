"""The slots cells in flight together share (sweeps.engine.slots): a cap, a cell keeping the slot
it will use again, a fair share. The cells in flight on Ray: tests/e2e/test_in_flight.py."""

from __future__ import annotations

from sweeps.engine.slots import STARTUP_S, WAIT_S, SlotsState


def test_slots_cap_keep_and_share_fairly(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("sweeps.engine.slots.time.monotonic", lambda: clock[0])
    s = SlotsState(2)
    assert s.acquire("a", "a1", 0) and s.acquire("a", "a2", 0)  # nobody else waits
    assert not s.acquire("b", "b1", 1)  # full
    s.release("a", "a1", left=2)  # a has trials to start: it keeps the slot (and its actor)
    clock[0] += 10 * WAIT_S
    assert not s.acquire("b", "b1", 1)
    assert s.acquire("a", "a3", 0)
    s.release("a", "a2", left=1)
    s.release("a", "a3", left=1)  # two ended, one to start: one slot kept, one free
    assert s.acquire("b", "b1", 1) and not s.acquire("b", "b2", 1)
    assert s.acquire("a", "a4", 0) and s.in_use() == 2
    s.release("a", "a4", left=0)  # a's last: its slot is anyone's
    assert s.acquire("b", "b2", 1)
    s = SlotsState(1)
    s.acquire("a", "a1", 0)
    assert not s.acquire("b", "b1", 1) and not s.acquire("c", "c1", 2)
    s.release("a", "a1", left=0)
    assert not s.acquire("c", "c1", 2)  # b, earlier in the sweep, was refused a moment ago
    assert s.acquire("b", "b1", 1)
    s.hold("r", ["r1", "r2"])  # trials a restored experiment resumes count, over the cap
    assert s.in_use() == 3
    s.forget("r")
    assert s.in_use() == 1

    # Fair share: the sweep's cells that have not asked yet (their tasks are starting) count
    # as waiting with none, so the first cell up does not take every slot.
    s = SlotsState(4, ["a", "b", "c"])
    assert s.acquire("a", "a1", 0) and s.acquire("a", "a2", 0)  # 4 free, b and c ahead
    assert not s.acquire("a", "a3", 0)  # 2 free, b and c (none each) are ahead of a's 2
    assert s.acquire("c", "c1", 2) and s.acquire("b", "b1", 1)
    assert not s.acquire("c", "c2", 2)  # full
    s.release("a", "a1", left=0)
    assert s.acquire("b", "b2", 1)  # b and c hold 1 each: the earlier cell first
    s.release("a", "a2", left=0)
    assert not s.acquire("b", "b3", 1)  # c, refused a moment ago, holds fewer than b
    assert s.acquire("c", "c2", 2)
    s = SlotsState(3, ["a", "z"])  # z's task never asks
    assert s.acquire("a", "a1", 0) and s.acquire("a", "a2", 0) and not s.acquire("a", "a3", 0)
    clock[0] += STARTUP_S  # a cell that never asked stops holding the others back
    assert s.acquire("a", "a3", 0)

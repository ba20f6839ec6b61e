"""Node resolution, eligibility and the best-node choice."""

from __future__ import annotations

import pytest

from mosix.policy import ledger, placement, snapshot


def node(number: int, **kw: object) -> snapshot.NodeView:
    fields: dict[str, object] = {"address": f"10.0.0.{number}", "memory_free_mb": 4000, "memory_total_mb": 8000}
    fields.update(kw)
    return snapshot.NodeView(name=f"n{number}", number=number, **fields)  # type: ignore[arg-type]


def job(**kw: object) -> snapshot.JobView:
    fields: dict[str, object] = {"placement": snapshot.PlacementKind.BEST, "home": "n1"}
    fields.update(kw)
    return snapshot.JobView(name="j", **fields)  # type: ignore[arg-type]


def led(*nodes: snapshot.NodeView) -> ledger.Ledger:
    return ledger.Ledger(snapshot.Snapshot(tuple(nodes), ()))


@pytest.mark.parametrize(("ref", "expected"), [("2", "n2"), ("10.0.0.3", "n3"), ("n1", "n1"), ("9", None),
                                               ("10.0.0.9", None), ("nope", None)])
def test_resolve(ref: str, expected: str | None) -> None:
    found = placement.resolve(led(node(1), node(2), node(3)), ref)
    assert (found.name if found else None) == expected


@pytest.mark.parametrize(("flags", "grid_class", "ok"), [
    ({}, 0, True),
    ({"alive": False}, 0, False),
    ({"block": True}, 0, False),
    ({"expel": True}, 0, False),
    ({"accept": False}, 0, False),
    ({"dontgo": True}, 1, False),
    ({"outsider": True}, 0, False),
    ({"outsider": True, "local": False}, 1, True),
    ({"local": False}, 0, False),
    ({"local": False}, 1, True),
    ({"local": False, "guests_running": 10, "guests_max": 10}, 1, False),
])
def test_allowed(flags: dict[str, object], grid_class: int, ok: bool) -> None:
    target = node(2, **flags)
    assert placement.allowed(led(node(1), target), target, job(grid_class=grid_class)) is ok


def test_dont_take_home_keeps_the_job_home() -> None:
    home, other = node(1, dont_take=True), node(2)
    book = led(home, other)
    assert placement.allowed(book, home, job()) is True
    assert placement.allowed(book, other, job()) is False


@pytest.mark.parametrize(("free", "need", "slot", "load", "ok"), [
    (1000, 1000, False, 5.0, True),
    (999, 1000, False, 0.0, False),
    (1000, 0, True, 0.0, True),
    (1000, 0, True, 1.0, False),
])
def test_fits(free: int, need: int, slot: bool, load: float, ok: bool) -> None:
    target = node(1, memory_free_mb=free, load=load)
    assert placement.fits(led(target), target, job(memory_mb=need), slot=slot) is ok


@pytest.mark.parametrize(("nodes", "expected"), [
    ([node(1, speed=1.0), node(2, speed=2.0)], "n2"),  # faster
    ([node(1, speed=2.0, load=2.0), node(2, speed=1.0)], "n2"),  # 2x speed but 3 sharing it
    ([node(1, speed=2.0, load=1.0, cpus=2), node(2, speed=1.0)], "n1"),  # a free CPU on the fast node
    ([node(1, memory_free_mb=100), node(2, speed=0.5)], "n2"),  # memory need must fit
    ([node(1), node(2)], "n1"),  # tie: lower number
    ([node(1, alive=False, speed=9.0), node(2)], "n2"),
])
def test_best(nodes: list[snapshot.NodeView], expected: str) -> None:
    chosen = placement.best(led(*nodes), job(memory_mb=500), slot=False)
    assert chosen is not None and chosen.name == expected


def test_best_with_slot_skips_busy_nodes() -> None:
    book = led(node(1, speed=9.0, load=1.0), node(2, speed=1.0))
    chosen = placement.best(book, job(), slot=True)
    assert chosen is not None and chosen.name == "n2"
    assert placement.best(led(node(1, load=1.0)), job(), slot=True) is None


def test_choose_by_placement_kind() -> None:
    nodes = (node(1, speed=1.0), node(2, speed=4.0), node(3, speed=2.0))
    snap = snapshot.Snapshot(nodes, ())
    home = snapshot.PlacementKind.HOME
    assert placement.place(snap, job(placement=home, home="n1")) == "n1"
    assert placement.place(snap, job(placement=home, home=None)) == "n2"
    assert placement.place(snap, job(placement=snapshot.PlacementKind.BEST)) == "n2"
    assert placement.place(snap, job(placement=snapshot.PlacementKind.NODE, node_ref="10.0.0.3")) == "n3"
    down = snapshot.Snapshot((node(1, alive=False), node(2)), ())
    assert placement.place(down, job(placement=home, home="n1")) == "n2"
    assert placement.place(down, job(placement=snapshot.PlacementKind.NODE, node_ref="1")) is None


def test_range_pick_is_deterministic_and_in_range() -> None:
    nodes = tuple(node(i) for i in range(1, 11))
    snap = snapshot.Snapshot(nodes, ())
    picks = set()
    for i in range(40):
        ranged = snapshot.JobView(name=f"job-{i}", placement=snapshot.PlacementKind.RANGE,
                                  ranges=((2, 4), (8, 8)))
        first = placement.place(snap, ranged)
        assert first == placement.place(snap, ranged)
        picks.add(first)
    assert picks == {"n2", "n3", "n4", "n8"}


def test_range_skips_ineligible_nodes() -> None:
    snap = snapshot.Snapshot((node(1, block=True), node(2, alive=False), node(3)), ())
    ranged = snapshot.JobView(name="r", placement=snapshot.PlacementKind.RANGE, ranges=((1, 3),))
    assert placement.place(snap, ranged) == "n3"


@pytest.mark.parametrize(("policy", "refused"), [
    ({}, None), ({"block": True}, "node n2 is blocked"), ({"expel": True}, "node n2 is expelling its guests"),
    ({"accept": False}, "node n2 is not accepting guests")])
def test_a_requested_move_is_refused_by_the_target_nodes_policy_unless_it_goes_home(
        policy: dict[str, object], refused: str | None) -> None:
    assert placement.arrival_refused(node(2, **policy), home="n1") == refused
    assert placement.arrival_refused(node(2, **policy), home="n2") is None  # a job going home is no guest
    assert placement.arrival_refused(None, home="n1") is None  # an unknown node is the agents' to find

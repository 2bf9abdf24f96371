"""Signals: log windows, sustained probe states, group keys, and carry-over on reload."""

from __future__ import annotations

from suture.engine.playbook import leaves
from suture.sidecar.signals import MAX_KEYS, SignalBoard

from .conftest import playbook

TEMPLATE = """
    id: {id}
    when:
      all:
        - log: {{source: app, pattern: 'ERR (?P<ep>/\\S+)', {bound}, within: 10s{group}}}
    confidence: 80
    fix: [{{adjust: {{file: c.yaml, key: k, add: 1}}}}]
    validate: {{window: 1m, expect: [{{log: {{source: app, pattern: 'ERR'}}}}]}}
"""


def pb(id="p", bound="at_least: 3", group=""):
    return playbook(TEMPLATE.format(id=id, bound=bound, group=group))


def feed(board, n, at, text="ERR /orders"):
    out = []
    for i in range(n):
        out += board.line("app", text, at + i * 0.001)[0]
    return out


def test_at_least_holds_on_the_nth_match_and_stops_when_matches_age_out():
    """3 matches within 10s assert the fact; 10s later a tick retracts it."""
    board = SignalBoard([pb()])
    assert feed(board, 2, 100.0) == []
    (t,) = feed(board, 1, 101.0)
    assert t.holds
    assert board.tick(105.0) == []
    (t,) = board.tick(111.0)
    assert not t.holds


def test_matches_spread_wider_than_the_window_never_hold():
    """One match every 6s never puts 3 inside 10s."""
    board = SignalBoard([pb()])
    assert [t for i in range(10) for t in feed(board, 1, 100.0 + 6 * i)] == []


def test_at_most_holds_before_any_line_and_stops_on_a_breach():
    """An ungrouped at_most leaf holds at start; one line too many retracts it."""
    board = SignalBoard([pb(bound="at_most: 1")])
    board.start(0.0)
    assert len(board.holding()) == 1
    feed(board, 1, 1.0)
    (t,) = feed(board, 1, 2.0)
    assert not t.holds


def test_group_by_keeps_one_window_per_key():
    """Errors on two endpoints count separately; the fact carries the endpoint."""
    board = SignalBoard([pb(group=", group_by: [ep]")])
    feed(board, 2, 1.0, "ERR /a")
    feed(board, 2, 1.0, "ERR /b")
    (t,) = feed(board, 1, 2.0, "ERR /a")
    assert (t.holds, dict(t.fact.labels)) == (True, {"ep": "/a"})


def test_keys_are_bounded():
    """More distinct keys than MAX_KEYS: the oldest are forgotten and counted."""
    board = SignalBoard([pb(group=", group_by: [ep]")])
    for i in range(MAX_KEYS + 5):
        board.line("app", f"ERR /{i}", 1.0)
    (shared,) = board.matches.values()
    assert (len(shared.times), shared.evicted) == (MAX_KEYS, 5)


def test_a_new_threshold_keeps_the_history_seen_so_far():
    """Reloading with at_least 4 instead of 3 keeps the 3 matches already seen."""
    old = SignalBoard([pb()])
    feed(old, 3, 100.0)
    new = SignalBoard([pb(bound="at_least: 4")], previous=old)
    new.start(100.5)
    assert new.holding() == []
    (t,) = feed(new, 1, 101.0)
    assert t.holds


def test_a_new_playbook_sees_errors_already_in_the_window():
    """Adding a playbook for a pattern others already watch: its window starts full."""
    old = SignalBoard([pb(id="one", bound="at_least: 1")])
    feed(old, 3, 100.0)
    new = SignalBoard([pb(id="one", bound="at_least: 1"), pb(id="two")], previous=old)
    new.start(101.0)
    assert len(new.holding()) == 2


def test_probe_for_holds_only_after_the_state_is_sustained():
    """`for: 5s`: unhealthy for 3s does not hold; for 5s it does; healthy again retracts."""
    p = playbook(
        """
        id: down
        when: {probe: {name: api, status: unhealthy, for: 5s}}
        confidence: 80
        fix: [{adjust: {file: c.yaml, key: k, add: 1}}]
        validate: {window: 1m, expect: [{probe: {name: api, status: healthy}}]}
        """
    )
    board = SignalBoard([p])
    assert board.probe("api", False, None, 0.0) == []
    assert board.probe("api", False, None, 3.0) == []
    (t,) = board.tick(5.0)
    assert t.holds and t.fact.signal == leaves(p.when)[0].signal
    (t,) = board.probe("api", True, 12.0, 6.0)
    assert not t.holds


def test_a_line_reports_every_signal_it_matched_for_validation():
    """Expectation patterns are matched too, so a judge can count them."""
    board = SignalBoard([pb()])
    _, matched = board.line("app", "ERR /x", 1.0)
    expect_signal = pb().validate.expect[0].signal
    assert expect_signal in matched


def test_container_restarts_within_a_window_hold_and_age_out():
    """Three restarts within 10m hold; as they age past the window the fact is retracted."""
    p = playbook(
        """
        id: crash-loop
        when: {container: {name: app, restarts: {at_least: 3, within: 10m}}}
        confidence: 80
        fix: [{notify: {webhook: "http://127.0.0.1:1/x"}}]
        validate: {window: 1m, expect: [{container: {name: app, state: running}}]}
        """
    )
    board = SignalBoard([p])
    assert board.containers() == {"app"}
    assert board.container("app", "running", 0.0, restarted=True) == []
    assert board.container("app", "running", 60.0, restarted=True) == []
    (t,) = board.container("app", "running", 120.0, restarted=True)
    assert t.holds and dict(t.fact.labels) == {"container": "app"}
    (t,) = board.tick(601.0)
    assert not t.holds


def test_window_counts_hold_for_out_of_order_times_and_a_full_history():
    """Counting is a binary search over each key's times, so they are kept sorted whatever order they come in."""
    from suture.sidecar.signals import _Matches

    m = _Matches(keep=5)
    for at in (10.0, 30.0, 20.0, 50.0, 40.0, 5.0, 60.0):  # replayed logs can go back in time
        key = m.add({}, at)
    assert list(m.times[key]) == [20.0, 30.0, 40.0, 50.0, 60.0]  # sorted, the newest 5 kept
    assert m.count(key, 60.0, 25.0) == 3  # after 35: 40, 50, 60
    assert m.count(key, 60.0, 40.0) == 4  # strictly after 20
    assert m.count(key, 60.0, None) == 5
    assert m.count("no such key", 60.0, 10.0) == 0
    assert m.total == 7

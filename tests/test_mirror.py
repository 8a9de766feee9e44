"""Mirror's typing-speed average and the adaptive debounce it gives (explicit clock values, no sleeping)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lsp_server.mirror import EWMA, PAUSE, Mirror


def typing(mirror: Mirror, start: float, gap: float, keys: int) -> float:
    """Type `keys` keystrokes `gap` seconds apart from `start`; returns the last one's time."""
    now = start
    for _ in range(keys):
        now += gap
        mirror.typed(now)
    return now


def test_typed_averages_keystroke_intervals() -> None:
    mirror = Mirror(1, "", last_change=10.0)
    assert mirror.interval == PAUSE  # nothing known yet: assume a slow typist
    mirror.typed(10.2)
    assert mirror.interval == pytest.approx((1 - EWMA) * PAUSE + EWMA * 0.2)
    assert mirror.last_change == 10.2
    typing(mirror, 10.2, 0.1, 40)
    assert mirror.interval == pytest.approx(0.1, rel=1e-3)  # converges to the typing interval


@pytest.mark.parametrize("pause", [PAUSE, PAUSE + 0.5, 60.0])
def test_typed_ignores_pauses_but_moves_the_clock(pause: float) -> None:
    mirror = Mirror(1, "", last_change=0.0)
    now = typing(mirror, 0.0, 0.1, 30)
    interval = mirror.interval
    mirror.typed(now + pause)
    assert mirror.interval == interval
    assert mirror.last_change == now + pause
    mirror.typed(now + pause + 0.1)  # the next keystroke after the pause counts again
    assert mirror.interval == pytest.approx((1 - EWMA) * interval + EWMA * 0.1)


def test_debounce_is_half_the_typing_interval_right_after_a_keystroke() -> None:
    mirror = Mirror(1, "", last_change=0.0)
    now = typing(mirror, 0.0, 0.12, 40)
    assert mirror.debounce(now, longest=1.0) == pytest.approx(0.06, rel=1e-2)
    # time since the keystroke counts against the wait
    assert mirror.debounce(now + 0.02, longest=1.0) == pytest.approx(0.04, rel=1e-2)
    assert mirror.debounce(now + 0.2, longest=1.0) == 0.0


def test_debounce_is_capped_by_longest() -> None:
    mirror = Mirror(1, "", last_change=0.0)
    now = typing(mirror, 0.0, 0.5, 40)  # slow typing: half the interval is 0.25 s
    assert mirror.debounce(now, longest=0.04) == pytest.approx(0.04)
    assert mirror.debounce(now, longest=0.0) == 0.0


@pytest.mark.parametrize("longest", [0.04, 0.5, 2.0, 100.0])
def test_debounce_is_zero_after_a_pause(longest: float) -> None:
    mirror = Mirror(1, "", last_change=0.0)
    now = typing(mirror, 0.0, 0.3, 20)
    assert mirror.debounce(now + PAUSE, longest) == 0.0
    fresh = Mirror(1, "", last_change=5.0)  # opened, never typed in
    assert fresh.debounce(5.0 + PAUSE, longest) == 0.0


@given(
    gaps=st.lists(st.floats(0.0, 3.0), max_size=30),
    since=st.floats(0.0, 5.0),
    longest=st.floats(0.0, 2.0),
)
def test_debounce_stays_in_zero_to_longest(gaps: list[float], since: float, longest: float) -> None:
    mirror = Mirror(1, "", last_change=0.0)
    now = 0.0
    for gap in gaps:
        now += gap
        mirror.typed(now)
    assert 0.0 < mirror.interval <= PAUSE  # an average of gaps shorter than a pause
    wait = mirror.debounce(now + since, longest)
    assert 0.0 <= wait <= longest
    assert wait <= mirror.interval / 2
    if since >= PAUSE:
        assert wait == 0.0

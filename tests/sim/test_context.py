"""Each context scheme selects what it promises, under the budget, and never brings a dropped frame back."""

import pytest

from worldsim.context import ContextScheme, autoregressive, hierarchical, long_range

SCHEMES = [("autoregressive", {}), ("long-range", {}), ("long-range", {"recent": 3}), ("hierarchical", {"level_size": 3})]


CASES = [(name, kwargs, budget) for name, kwargs in SCHEMES for budget in (1, 2, 5, 8, 16)
         if kwargs.get("recent", 0) < budget]  # `recent` must leave room for the first frame


@pytest.mark.parametrize("name,kwargs,budget", CASES)
def test_within_budget_sorted_and_nested(name, kwargs, budget):
    scheme = ContextScheme(name, budget, **kwargs)
    previous = None
    for length in range(1, 300):
        chosen = scheme.select(length)
        assert chosen == sorted(set(chosen)) and all(0 <= i < length for i in chosen)
        assert len(chosen) <= budget
        if length <= budget and name != "hierarchical":
            assert chosen == list(range(length))
        if previous is not None:  # nested: the env forgets frames as soon as they drop out
            assert set(chosen) <= set(previous) | {length - 1}
        previous = chosen


def test_autoregressive_is_the_newest_frames():
    assert autoregressive(100, 8) == list(range(92, 100))
    assert autoregressive(3, 8) == [0, 1, 2]


def test_long_range_keeps_first_recent_and_spreads_the_rest():
    chosen = long_range(1000, 16, recent=8)
    assert len(chosen) == 16 and chosen[0] == 0
    assert chosen[-8:] == list(range(992, 1000))
    far = chosen[:8]
    gaps = [b - a for a, b in zip(far, far[1:])] + [992 - far[-1]]
    assert max(gaps) <= 2 * 992 / 8 and min(gaps) >= 992 / 8 / 2  # uniform over the whole past to within 2x
    assert far[1] >= 992 / 8 / 2  # not bunched at the start


def test_hierarchical_levels_double_their_stride_going_back():
    chosen = hierarchical(1000, 16, level_size=4)
    assert len(chosen) == 16 and chosen[0] == 0
    levels = chosen[1:][::-1]  # newest first
    gaps = [a - b for a, b in zip(levels, levels[1:])]
    assert gaps[:3] == [1, 1, 1]  # level 0: infill at stride 1 next to the present
    assert gaps == sorted(gaps)  # sparser further back
    assert set(gaps) == {1, 2, 4, 8}  # keyframes at doubling strides
    assert levels[0] == 999


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="unknown context scheme"):
        ContextScheme("fdm")
    with pytest.raises(ValueError, match="recent"):
        ContextScheme("long-range", budget=4, recent=4)
    with pytest.raises(ValueError, match="budget"):
        autoregressive(5, 0)

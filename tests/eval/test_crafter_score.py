import math

import numpy as np
import pytest

from worldsim.eval.crafter_score import crafter_score, evaluate_crafter, score_ci95


def test_score_is_the_papers_geometric_mean_of_success_rates():
    none = np.zeros((4, 22), bool)
    assert crafter_score(none) == pytest.approx(0.0)
    assert crafter_score(~none) == pytest.approx(100.0)
    one = none.copy()
    one[:, 3] = True  # one achievement every episode, the rest never
    assert crafter_score(one) == pytest.approx(math.exp(math.log(101) / 22) - 1)
    half = none.copy()
    half[:2, :] = True  # every achievement in half the episodes
    assert crafter_score(half) == pytest.approx(50.0)
    # rare achievements count: the same four unlocks spread over four achievements score higher
    spread = none.copy()
    spread[0, :4] = True
    focused = none.copy()
    focused[:, 0] = True
    assert crafter_score(spread) > 3 * crafter_score(focused)  # 0.81 against 0.23, four unlocks each
    with pytest.raises(ValueError, match="episodes >= 1"):
        crafter_score(np.zeros((0, 22), bool))


def test_score_interval_holds_the_score_and_narrows_with_episodes():
    rng = np.random.default_rng(0)
    few, many = rng.random((10, 22)) < 0.2, rng.random((200, 22)) < 0.2
    for u in (few, many):
        s = score_ci95(u)
        assert s["ci95"][0] <= s["mean"] <= s["ci95"][1]
    width = lambda s: s["ci95"][1] - s["ci95"][0]  # noqa: E731
    assert width(score_ci95(many)) < width(score_ci95(few))


def test_random_play_in_real_crafter_is_scored():
    pytest.importorskip("crafter")
    from gymnasium import spaces

    from worldsim.agents.random import RandomAgent

    result = evaluate_crafter(RandomAgent(spaces.Discrete(17), 1, seed=0), seeds=[0, 1, 2], max_steps=60, hold=2)
    assert result["episodes"] == 3 and 3 <= result["env_steps"] <= 180
    assert len(result["success"]) == 22 and all(0 <= v <= 1 for v in result["success"].values())
    assert result["return"]["ci95"][0] <= result["return"]["mean"] <= result["return"]["ci95"][1]
    assert 0 <= result["score"]["mean"] <= 100 and len(result["returns"]) == 3
    # the same seeds and agent seed play the same episodes
    again = evaluate_crafter(RandomAgent(spaces.Discrete(17), 1, seed=0), seeds=[0, 1, 2], max_steps=60, hold=2)
    assert again["returns"] == result["returns"] and again["success"] == result["success"]

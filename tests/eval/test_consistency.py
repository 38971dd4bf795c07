"""The look-away loop's comparisons, and the memoryless reference they are read against."""

import numpy as np
import pytest

from worldsim.eval.consistency import loop_scores, memoryless_frames


def _frames(n, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 16, 16, 3), dtype=np.uint8)


def test_memoryless_reference_leaves_each_episode_out():
    back = np.stack([np.full((4, 4, 3), v, np.uint8) for v in (0, 30, 90)])
    ref = memoryless_frames(back)
    assert ref.dtype == np.uint8 and ref.shape == back.shape
    assert [int(r[0, 0, 0]) for r in ref] == [60, 45, 15]  # the mean of the two others, never its own return


def test_memoryless_reference_needs_two_episodes():
    with pytest.raises(ValueError, match="at least 2 episodes"):
        memoryless_frames(_frames(1))


def test_a_simulator_that_remembers_scores_above_the_reference_and_one_that_forgot_does_not():
    before = _frames(6, seed=1)
    real_back = before.copy()  # a static world: the return is the frame left
    remembered = loop_scores(before, real_back, real_back)
    typical = memoryless_frames(real_back)
    forgot = loop_scores(before, real_back, typical)
    ref = remembered["memoryless_vs_real_return"]["psnr"]
    assert np.allclose(forgot["sim_return_vs_real_return"]["psnr"], ref)  # drawing the typical view IS the reference
    assert min(remembered["sim_return_vs_real_return"]["psnr"]) > max(ref)
    assert set(loop_scores(before[:1], real_back[:1], real_back[:1])) == {
        "real_return_vs_before", "sim_return_vs_before", "sim_return_vs_real_return"}  # one episode: no reference

"""Window rows -> latent frames, and the resumable distributed sampler."""

from __future__ import annotations

import pytest
import torch

from worldsim.models.latents import latent_actions, latent_rewards, latent_terminated, num_latent_frames
from worldsim.train.sampler import ResumableDistributedSampler


def test_latent_frame_zero_covers_row_zero_and_later_frames_k_rows():
    k = 2
    action = torch.arange(5).reshape(1, 5, 1)  # row t's action is t
    has = torch.tensor([[False, True, True, True, False]])
    acts, mask = latent_actions(action, has, k)
    assert acts.shape == (1, 3, 2, 1)
    assert acts[0, :, :, 0].tolist() == [[0, 0], [1, 2], [3, 4]]  # frame 0: row 0 in the last slot
    assert mask[0].tolist() == [[False, False], [True, True], [True, False]]
    reward = torch.tensor([[5.0, 1.0, 2.0, 0.0, 3.0]])
    assert latent_rewards(reward, k)[0].tolist() == [5.0, 3.0, 3.0]
    term = torch.tensor([[False, False, False, False, True]])
    assert latent_terminated(term, k)[0].tolist() == [0.0, 0.0, 1.0]
    assert num_latent_frames(9, 4) == 3
    with pytest.raises(ValueError, match="1 \\+ m\\*k"):
        num_latent_frames(6, 2)


def _take(sampler, n):
    out = []
    for i in sampler:
        out.append(i)
        if len(out) == n:
            break
    return out


def test_ranks_read_disjoint_windows_and_resume_at_another_world_size():
    n, batch = 50, 12
    two = [ResumableDistributedSampler(n, r, 2, seed=3, global_batch=batch) for r in range(2)]
    epoch = [list(s) for s in two]
    assert not set(epoch[0]) & set(epoch[1])
    assert len(epoch[0]) + len(epoch[1]) == 48  # whole global batches only
    # After 24 global samples at 2 ranks, 3 ranks continue with exactly the unread windows.
    seen = set(epoch[0][:12]) | set(epoch[1][:12])
    three = [ResumableDistributedSampler(n, r, 3, seed=3, global_batch=batch) for r in range(3)]
    for s in three:
        s.set_position(0, 24)
    rest = [i for s in three for i in s]
    assert len(rest) == 24 and not set(rest) & seen and set(rest) | seen == set(epoch[0]) | set(epoch[1])
    # Epochs roll over to a new order.
    s = two[0]
    s.advance(48)
    assert s.state() == {"epoch": 1, "consumed": 0} and list(s) != epoch[0]
    with pytest.raises(ValueError, match="fewer than one global batch"):
        ResumableDistributedSampler(5, 0, 1, seed=0, global_batch=8)

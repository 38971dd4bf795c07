import numpy as np
import pytest

from worldsim.video import read_mp4, side_by_side, write_mp4


def test_write_read_round_trip_with_scale_and_odd_sizes(tmp_path):
    frames = np.zeros((5, 7, 9, 3), np.uint8)
    frames[:, :, :4] = 200  # a bright left part survives lossy coding
    back = read_mp4(write_mp4(tmp_path / "a.mp4", frames, fps=10, scale=2))
    assert back.shape == (5, 14, 18, 3)  # 7x9 upscaled to 14x18: already even
    assert abs(float(back[:, :, :8].mean()) - 200) < 8 and float(back[:, :, 10:].mean()) < 8
    assert read_mp4(write_mp4(tmp_path / "b.mp4", frames)).shape == (5, 8, 10, 3)  # padded to even


def test_side_by_side_and_errors(tmp_path):
    a, b, c = (np.full((4 - i, 6, 5, 3), 50 * i, np.uint8) for i in range(3))
    strip = side_by_side(a, b, c, gap=1)
    assert strip.shape == (2, 6, 17, 3)
    assert (strip[:, :, 5] == 255).all() and (strip[:, :, 6:11] == 50).all()
    with pytest.raises(ValueError, match="height"):
        side_by_side(a, np.zeros((4, 5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        write_mp4(tmp_path / "x.mp4", np.zeros((2, 4, 4, 3), np.float32))

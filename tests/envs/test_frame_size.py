"""The shared ``size`` argument of the real worlds."""

import numpy as np
import pytest

from worldsim.envs.frame_size import parse_size


@pytest.mark.parametrize(("size", "hw"), [(64, (64, 64)), ((48, 80), (48, 80)), (np.int64(32), (32, 32)), ([9, 17], (9, 17))])
def test_sizes(size, hw):
    assert parse_size(size) == hw


@pytest.mark.parametrize("bad", [(0, 10), -1, (4.5, 8), (1, 2, 3), "64", None])
def test_bad_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="frame size"):
        parse_size(bad)

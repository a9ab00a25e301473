import pytest

from repro.io import InputError
from repro.metrics import compute_metric


def test_wall_seconds_is_the_mean_per_sample():
    rows = [{"wall_seconds": 0.5}, {"wall_seconds": 1.5}, {"wall_seconds": 0.25}]
    result = compute_metric("wall_seconds", rows)
    assert result.value == pytest.approx(0.75)
    assert result.per_example == [0.5, 1.5, 0.25]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "1", None])
def test_wall_seconds_rejects_bad_values(bad):
    with pytest.raises(InputError, match="wall_seconds"):
        compute_metric("wall_seconds", [{"wall_seconds": 1.0}, {"wall_seconds": bad}])


def test_wall_seconds_needs_the_field():
    with pytest.raises(InputError, match="wall_seconds"):
        compute_metric("wall_seconds", [{"hypothesis": "x"}])

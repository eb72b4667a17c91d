"""Rate interpolation used by every rate-distortion benchmark."""

import math

import pytest
import torch

from collagekit.metrics import at_rate


def test_at_rate_interpolates_in_log_rate() -> None:
    points = [(0.1, 20.0), (0.4, 30.0)]  # log-midpoint of 0.1 and 0.4 is 0.2
    assert at_rate(points, 0.2) == pytest.approx(25.0)
    assert at_rate(list(reversed(points)), 0.1) == pytest.approx(20.0)
    assert not math.isclose(at_rate(points, 0.25), 26.25)  # not linear in rate


def test_at_rate_never_extrapolates() -> None:
    assert at_rate([(0.1, 20.0), (0.4, 30.0)], 0.5) is None
    assert at_rate([(0.1, 20.0)], 0.1) is None


def test_median_time_calls_repeats_times_and_keeps_the_last_result() -> None:
    from collagekit.timing import median_time

    calls = []
    timed = median_time(lambda: calls.append(len(calls)) or len(calls), 3, torch.device("cpu"))
    assert calls == [0, 1, 2] and timed.result == 3
    assert timed.seconds >= 0 and timed.cpu_seconds >= 0
    with pytest.raises(ValueError, match="repeats"):
        median_time(lambda: None, 0)

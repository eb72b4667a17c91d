"""BD-rate and BD-PSNR (collagekit.bjontegaard) against published examples and exact cases."""

import math

import pytest

from collagekit.bjontegaard import Pchip, bd_psnr, bd_rate, monotone, within

# JCTVC-E137 data (the JCT-VC Bjøntegaard spreadsheet's PCHIP variant) with the BD-rates it gives, as
# quoted by Netflix/vmaf python/test/bd_rate_calculator_test.py (BDrateCalculatorJCTVCTest, whose
# calculator is "validated against JCTVC-E137"; there as fractions: -0.00465215420752807 and
# -0.018779823450567612). Points are (rate in kbit/s, PSNR in dB); the first curve is the anchor.
JCTVC_E137 = [
    (
        [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)],
        [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)],
        -0.465215420752807,
    ),
    (
        [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)],
        [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)],
        -1.8779823450567612,
    ),
]

# The usage example of the `bjontegaard` package (FAU-LMS/bjontegaard README: x265 presets measured
# with ffmpeg). Its README prints no result; the values are what bjontegaard 1.3.0 returns with
# method="pchip" (SciPy's PchipInterpolator), to which this module agreed to within 1e-10 on 2,000
# random curves of 2-8 points when it was written.
FAU_ANCHOR = list(zip([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]))
FAU_TEST = list(zip([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]))


@pytest.mark.parametrize(("anchor", "test", "expected"), JCTVC_E137)
def test_bd_rate_matches_the_jctvc_spreadsheet(anchor, test, expected) -> None:
    assert bd_rate(anchor, test) == pytest.approx(expected, abs=1e-9)


def test_bd_metrics_match_the_bjontegaard_package_example() -> None:
    assert bd_rate(FAU_ANCHOR, FAU_TEST) == pytest.approx(-4.417485350589045, abs=1e-9)
    assert bd_psnr(FAU_ANCHOR, FAU_TEST) == pytest.approx(0.11969278542479489, abs=1e-9)
    # Swapping the roles flips the sign of BD-PSNR (same interval, same interpolants).
    assert bd_psnr(FAU_TEST, FAU_ANCHOR) == pytest.approx(-0.11969278542479489, abs=1e-9)


def test_exact_shifts_give_exact_deltas() -> None:
    anchor = [(0.12, 24.0), (0.3, 27.5), (0.55, 29.0), (1.1, 33.2)]
    better = [(r, q + 0.7) for r, q in anchor]
    cheaper = [(0.8 * r, q) for r, q in anchor]
    assert bd_psnr(anchor, better) == pytest.approx(0.7, abs=1e-12)
    assert bd_rate(anchor, cheaper) == pytest.approx(-20.0, abs=1e-9)
    assert bd_rate(anchor, anchor) == pytest.approx(0.0, abs=1e-12)


def test_pchip_interpolates_and_integrates_exactly() -> None:
    f = Pchip([0.0, 1.0, 3.0], [0.0, 1.0, 9.0])
    assert [f(0.0), f(1.0), f(3.0)] == pytest.approx([0.0, 1.0, 9.0])
    steps = 20_000  # midpoint rule on the piecewise cubic
    numeric = sum(f(0.5 + 2.5 * (i + 0.5) / steps) for i in range(steps)) * 2.5 / steps
    assert f.integral(0.5, 3.0) == pytest.approx(numeric, rel=1e-8)
    line = Pchip([1.0, 2.0], [3.0, 5.0])  # two points: the straight line
    assert line(1.25) == pytest.approx(3.5)
    with pytest.raises(ValueError):
        Pchip([0.0, 0.0, 1.0], [1.0, 2.0, 3.0])


def test_dominated_points_are_dropped() -> None:
    # (0.5, 27.9) costs more than (0.4, 28.0) for less quality; duplicates keep the best quality.
    curve = [(0.4, 28.0), (0.2, 25.0), (0.5, 27.9), (0.8, 30.0), (0.8, 29.0)]
    assert monotone(curve) == [(0.2, 25.0), (0.4, 28.0), (0.8, 30.0)]


def test_window_restricts_the_compared_interval() -> None:
    anchor = [(0.05, 20.0), (0.2, 25.0), (0.6, 29.0), (2.0, 35.0)]
    clipped = within(anchor, (0.1, 1.0))
    assert clipped[0][0] == 0.1 and clipped[-1][0] == 1.0
    assert [p for p in clipped[1:-1]] == [(0.2, 25.0), (0.6, 29.0)]
    assert Pchip([math.log(r) for r, _ in monotone(anchor)], [q for _, q in monotone(anchor)])(math.log(0.1)) == pytest.approx(clipped[0][1])
    # A test curve equal to the anchor inside the window, different outside it, differs by nothing there.
    test = [(0.05, 10.0), *clipped, (2.0, 45.0)]
    assert bd_psnr(anchor, test, (0.1, 1.0)) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(anchor, test) != pytest.approx(0.0, abs=1e-3)
    # Curves that share no rate interval inside the window have no BD figure (never extrapolated).
    assert bd_psnr([(0.1, 20.0), (0.2, 24.0)], [(0.5, 28.0), (0.9, 30.0)]) is None
    assert bd_rate([(0.1, 20.0), (0.2, 24.0)], [(0.5, 28.0), (0.9, 30.0)]) is None
    assert bd_psnr(anchor, [(1.5, 33.0), (3.0, 38.0)], (0.1, 1.0)) is None

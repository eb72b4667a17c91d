"""Bjøntegaard-delta metrics: BD-PSNR and BD-rate between two rate-distortion curves (DESIGN section 4).

Bjøntegaard (VCEG-M33, 2001) summarises the gap between two curves as the mean vertical distance
between them over the interval both cover: quality over log-rate for BD-PSNR (dB), log-rate over
quality for BD-rate (turned into a percentage). VCEG-M33 fits one cubic polynomial through the points;
this module uses the variant of the JCT-VC and JVET common-test-condition sheets (JCTVC-L1100,
JVET-T2010) and of the ``bjontegaard`` package's default: piecewise cubic Hermite interpolation (PCHIP,
Fritsch-Carlson slopes), integrated exactly. PCHIP passes through every point, never overshoots
between them and accepts any number of points >= 2, which matters here: the anchors' quality sweeps
reach well beyond the interval compared, where one least-squares cubic would bend to fit points
that are not compared at all.

Conventions: ``anchor`` and ``test`` are lists of (rate, quality) points, in any order. BD-PSNR > 0
and BD-rate < 0 mean the test curve is better. Points dominated by a cheaper point of the same curve
(no higher quality at a higher rate) are dropped first: nobody would choose that setting, and the
curve must be monotone to be read in both directions. ``window=(lo, hi)`` restricts both curves to
rates in [lo, hi] first (the ends interpolated on each curve). Neither metric extrapolates: it is
None when the curves, so restricted, share no interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Curve = Sequence[tuple[float, float]]  # (rate, quality) points


def pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Derivatives at the knots of the shape-preserving piecewise cubic through (x, y), x increasing.

    Interior knots: the weighted harmonic mean of the neighbouring secant slopes (0 at a local
    extremum); ends: the three-point formula, clamped so the end piece keeps the data's shape
    (Fritsch & Carlson 1980; Moler, Numerical Computing with MATLAB, ch. 3: what MATLAB's and
    SciPy's ``pchip`` compute). Two points give the straight line.
    """
    h = np.diff(x)
    delta = np.diff(y) / h
    if len(x) == 2:
        return np.array([delta[0], delta[0]])
    d = np.zeros_like(y)
    w1, w2 = 2 * h[1:] + h[:-1], h[1:] + 2 * h[:-1]
    same_sign = delta[:-1] * delta[1:] > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        d[1:-1] = np.where(same_sign, (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:]), 0.0)
    d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _end_slope(h0: float, h1: float, delta0: float, delta1: float) -> float:
    d = ((2 * h0 + h1) * delta0 - h0 * delta1) / (h0 + h1)
    if np.sign(d) != np.sign(delta0):
        return 0.0
    if np.sign(delta0) != np.sign(delta1) and abs(d) > abs(3 * delta0):
        return 3 * delta0
    return d


class Pchip:
    """The PCHIP interpolant through (x, y) (x strictly increasing): values and exact integrals.

    On knot interval k, with s = t - x[k]: p(s) = y[k] + d[k] s + c[k] s^2 + e[k] s^3.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if len(self.x) < 2 or np.any(np.diff(self.x) <= 0):
            raise ValueError("PCHIP needs >= 2 points with strictly increasing x")
        self.d = pchip_slopes(self.x, self.y)
        h = np.diff(self.x)
        delta = np.diff(self.y) / h
        self.c = (3 * delta - 2 * self.d[:-1] - self.d[1:]) / h
        self.e = (self.d[:-1] - 2 * delta + self.d[1:]) / h**2

    def _primitive(self, k: int, s: float) -> float:
        return s * (self.y[k] + s * (self.d[k] / 2 + s * (self.c[k] / 3 + s * self.e[k] / 4)))

    def __call__(self, t: float) -> float:
        k = int(np.clip(np.searchsorted(self.x, t, side="right") - 1, 0, len(self.x) - 2))
        s = t - self.x[k]
        return float(self.y[k] + s * (self.d[k] + s * (self.c[k] + s * self.e[k])))

    def integral(self, a: float, b: float) -> float:
        """The integral over [a, b], a subinterval of [x[0], x[-1]]."""
        total = 0.0
        for k in range(len(self.x) - 1):
            lo, hi = max(a, self.x[k]), min(b, self.x[k + 1])
            if hi > lo:
                total += self._primitive(k, hi - self.x[k]) - self._primitive(k, lo - self.x[k])
        return total


def monotone(points: Curve) -> list[tuple[float, float]]:
    """The points that no cheaper point of the curve matches in quality, by increasing rate."""
    kept: list[tuple[float, float]] = []
    for rate, quality in sorted((float(r), float(q)) for r, q in points):
        if not (math.isfinite(rate) and math.isfinite(quality)) or rate <= 0:
            continue
        if kept and rate == kept[-1][0]:
            kept[-1] = (rate, max(quality, kept[-1][1]))
        elif not kept or quality > kept[-1][1]:
            kept.append((rate, quality))
    return kept


def within(points: Curve, window: tuple[float, float] | None) -> list[tuple[float, float]]:
    """The monotone curve restricted to rates in ``window``; where the curve crosses an edge, the
    edge point is interpolated on the curve (PCHIP in log-rate). Empty when the curve misses it."""
    pts = monotone(points)
    if window is None or len(pts) < 2:
        return pts
    lo, hi = max(window[0], pts[0][0]), min(window[1], pts[-1][0])
    if hi <= lo:
        return []
    curve = Pchip(np.log([r for r, _ in pts]), np.array([q for _, q in pts]))
    inside = [(r, q) for r, q in pts if lo < r < hi]
    return [(lo, curve(math.log(lo))), *inside, (hi, curve(math.log(hi)))]


def _mean_gap(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float | None:
    """Mean of test(x) - anchor(x) over the x interval both cover; points are (x, y), x increasing."""
    if len(anchor) < 2 or len(test) < 2:
        return None
    lo, hi = max(anchor[0][0], test[0][0]), min(anchor[-1][0], test[-1][0])
    if not hi > lo:
        return None
    fa, ft = (Pchip(np.array([p[0] for p in c]), np.array([p[1] for p in c])) for c in (anchor, test))
    return (ft.integral(lo, hi) - fa.integral(lo, hi)) / (hi - lo)


def bd_psnr(anchor: Curve, test: Curve, window: tuple[float, float] | None = None) -> float | None:
    """Mean quality gain (dB for PSNR) of ``test`` over ``anchor`` over their common log-rate interval."""
    a, t = within(anchor, window), within(test, window)
    return _mean_gap([(math.log(r), q) for r, q in a], [(math.log(r), q) for r, q in t])


def bd_rate(anchor: Curve, test: Curve, window: tuple[float, float] | None = None) -> float | None:
    """Mean rate change of ``test`` against ``anchor`` at equal quality, in percent, over their
    common quality interval (-10 = the test curve needs 10 % fewer bits)."""
    a, t = within(anchor, window), within(test, window)
    gap = _mean_gap([(q, math.log(r)) for r, q in a], [(q, math.log(r)) for r, q in t])
    return None if gap is None else (math.exp(gap) - 1.0) * 100.0

"""Comparing managers fairly when some have few cases: empirical Bayes and funnel limits.

A rate on 5 cases swings far more by chance than one on 80.  Two standard answers:

- :func:`shrink_rates` — an empirical-Bayes estimate: the managers' rates are taken as draws
  from a beta distribution fitted to the team (beta-binomial, by the method of moments), and
  each manager's rate is pulled towards the team's by as much as their few cases warrant:
  ``(x + M p̂) / (n + M)``.  With many cases the estimate stays near the raw rate; with few it
  moves towards the team's rate ``p̂``.
- :func:`funnel_limits` — the control limits of a funnel plot: the rates a manager with
  ``n`` cases would show by binomial chance alone around the team's rate, ``p̂ ± z √(p̂(1 − p̂)/n)``
  (95 % and 99.8 % by default).  A manager outside them differs by more than chance.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Two-sided normal quantiles of the funnel plot's limits.
LIMITS = {"95%": 1.959964, "99.8%": 3.090232}


def beta_prior(successes: Sequence[float], trials: Sequence[float]) -> tuple[float, float]:
    """The team rate ``p̂`` and the prior weight ``M = α + β`` of a beta-binomial fit.

    Method of moments with unequal n (Kleinman 1973): the weighted spread
    ``S = Σ n (p − p̂)²`` is compared with what binomial chance alone gives; the excess sets
    the intra-class correlation ``ρ = 1 / (M + 1)``.  No excess (or fewer than two managers
    with cases) gives ``M = inf``: every estimate is the team's rate.
    """
    x, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    keep = n > 0
    x, n = x[keep], n[keep]
    total = n.sum()
    if total <= 0:
        return math.nan, math.inf
    p = float(x.sum() / total)
    k = len(n)
    if k < 2 or p <= 0 or p >= 1:
        return p, math.inf
    spread = float(np.sum(n * (x / n - p) ** 2)) / (p * (1 - p))
    room = total - float(np.sum(n ** 2)) / total - (k - 1)
    rho = (spread - (k - 1)) / room if room > 0 else 0.0
    if rho <= 0:
        return p, math.inf
    rho = min(rho, 1 - 1e-9)
    return p, 1 / rho - 1


def shrink_rates(successes: Sequence[float], trials: Sequence[float]) -> np.ndarray:
    """Empirical-Bayes rates (0–1) per manager; NaN where ``trials`` is 0."""
    x, n = np.asarray(successes, dtype=float), np.asarray(trials, dtype=float)
    p, weight = beta_prior(x, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        if math.isinf(weight):
            out = np.full(len(n), p)
        else:
            out = (x + weight * p) / (n + weight)
    return np.where(n > 0, out, np.nan)


def funnel_limits(p: float, n: Sequence[float], z: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper funnel limits (0–1) around rate ``p`` for each ``n`` at quantile ``z``."""
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = z * np.sqrt(p * (1 - p) / n)
    return np.clip(p - half, 0, 1), np.clip(p + half, 0, 1)

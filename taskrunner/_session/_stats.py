"""The statistical test behind ``max_confidence``.

For the target outcome, each option's sessions give a mean and a variance. The best option
is the one with the highest mean; its confidence against another option is the one-sided
probability from Welch's z statistic, ``Phi((m_best - m_other) / sqrt(v_best/n_best +
v_other/n_other))`` (normal approximation of Welch's t test, fine for the sample sizes an
A/B test concludes on). For boolean outcomes the variance of each option is that of the
Agresti-Caffo adjusted proportion ``p = (successes + 1) / (n + 2)``, so that 3/3 against
0/3 is not "certain". The test's confidence is the smallest of the best option's
confidences against each other option, times 100 (0-100). It is None while any option has
fewer than two sessions with the outcome.
"""

from __future__ import annotations

import math

from .._store._protocol import OptionStats

__all__ = ["MIN_SAMPLES", "best_option", "confidence", "outcome_kind"]

#: Sessions with the target outcome each option needs before a confidence is computed.
MIN_SAMPLES = 2


def _phi(z: float) -> float:
    if math.isinf(z):
        return 1.0 if z > 0 else 0.0
    return 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))


def outcome_kind(stats: list[OptionStats], outcome: str) -> str:
    """The type the sessions recorded ``outcome`` with (``"float"`` if unknown)."""
    for s in stats:
        if outcome in s.kinds:
            return s.kinds[outcome]
    return "float"


def best_option(stats: list[OptionStats], outcome: str) -> str | None:
    """The option with the highest mean of ``outcome`` (None without figures)."""
    scored = [(s.outcomes[outcome][1], s.option) for s in stats if outcome in s.outcomes]
    if not scored:
        return None
    return max(scored, key=lambda t: t[0])[1]


def confidence(
    stats: list[OptionStats], outcome: str, options: list[str], kind: str = "float"
) -> float | None:
    """The confidence (0-100) that the best option beats every other on ``outcome``.

    ``options`` are the test's options (each needs :data:`MIN_SAMPLES` values); ``kind`` is
    the outcome's type (``"boolean"`` uses the adjusted proportion).
    """
    figures: dict[str, tuple[int, float, float]] = {}
    for s in stats:
        if outcome in s.outcomes:
            figures[s.option] = s.outcomes[outcome]
    if len(options) < 2 or any(
        o not in figures or figures[o][0] < MIN_SAMPLES for o in options
    ):
        return None

    def variance(n: int, mean: float, var: float) -> float:
        if kind == "boolean":
            p = (mean * n + 1) / (n + 2)
            return p * (1 - p)
        return var

    best = max(options, key=lambda o: figures[o][1])
    nb, mb, vb = figures[best]
    worst = 1.0
    for other in options:
        if other == best:
            continue
        no, mo, vo = figures[other]
        se = math.sqrt(variance(nb, mb, vb) / nb + variance(no, mo, vo) / no)
        diff = mb - mo
        z = (math.inf if diff > 0 else 0.0) if se == 0 else diff / se
        worst = min(worst, _phi(z))
    return round(100.0 * worst, 4)

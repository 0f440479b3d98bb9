"""Selection on validation, scoring on test, and paired bootstrap intervals over frames.

The rule, applied alike to every mode (the edge's and the baselines'):

1. every setting is measured on the **validation** frames, and so is the reference, the float
   model (the whole untuned model on the lossless PNG frame);
2. a setting **passes** ("at the same accuracy") when the lower end of the paired 95% interval of
   its accuracy minus the reference's is at least ``-ISO_POINTS`` points: a setting whose interval
   reaches below the bar does not pass, however close its point estimate;
3. each mode's **selected** setting is its cheapest passing one (mean bytes per frame); the
   headline is the cheapest selected importance-guided setting. :func:`select` refuses frames of
   any split but validation;
4. the selected settings are measured once on the **test** frames and reported there with their
   intervals, whether they still pass, and whether their difference from the float model is
   distinguishable from zero (the interval excludes 0).

Intervals are percentile bootstraps (:func:`scipy.stats.bootstrap`, ``paired=True``: frames are
resampled together for both sides) at 95% with ``N_RESAMPLES`` resamples and a fixed seed.
"""

from __future__ import annotations

import numpy as np

from benchmarks.rate_sweep import Measured

__all__ = [
    "ISO_POINTS",
    "CONFIDENCE",
    "mean_interval",
    "diff_interval",
    "ratio_interval",
    "compare",
    "select",
    "select_per_mode",
    "fair_treatment",
    "score",
]

ISO_POINTS = 0.5  # "at the same accuracy": at most 0.5 points below the float model
CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 0
SELECTION_SPLIT = "validation"


def _bootstrap(data: tuple[np.ndarray, ...], statistic, paired: bool = True) -> tuple[float, float]:
    from scipy.stats import bootstrap

    data = tuple(np.asarray(d, np.float64) for d in data)
    point = float(statistic(*data, axis=-1))
    if all(np.all(d == d[0]) for d in data):  # no spread to resample: the interval is the point
        return point, point
    res = bootstrap(
        data,
        statistic,
        paired=paired,
        vectorized=True,
        n_resamples=N_RESAMPLES,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_interval(x: np.ndarray) -> tuple[float, float]:
    """95% interval of the mean of ``x`` over frames."""
    return _bootstrap((x,), lambda a, axis: np.mean(a, axis=axis))


def diff_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired 95% interval of ``mean(a) - mean(b)`` (the same frames on both sides)."""
    return _bootstrap((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis))


def independent_diff_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% interval of ``mean(a) - mean(b)`` for two different sets of frames (resampled apart)."""
    return _bootstrap((a, b), lambda x, y, axis: np.mean(x, axis=axis) - np.mean(y, axis=axis), paired=False)


def ratio_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Paired 95% interval of ``mean(a) / mean(b)``."""
    return _bootstrap((a, b), lambda x, y, axis: np.mean(x, axis=axis) / np.mean(y, axis=axis))


def _same_frames(a: Measured, b: Measured) -> None:
    if a.split != b.split or len(a.correct) != len(b.correct):
        raise ValueError(
            f"{a.name} ({a.split}, n={len(a.correct)}) and {b.name} ({b.split}, n={len(b.correct)}) "
            "were not measured on the same frames"
        )


def compare(cand: Measured, ref: Measured, points: float = ISO_POINTS) -> dict:
    """Accuracy of ``cand`` minus ``ref`` (points) with its paired interval; ``passes``: the
    interval's lower end >= ``-points``; ``distinguishable``: the interval excludes 0."""
    _same_frames(cand, ref)
    d = 100 * (cand.top1 - ref.top1)
    lo, hi = diff_interval(cand.correct, ref.correct)
    lo, hi = 100 * lo, 100 * hi
    return {
        "diff_pt": d,
        "diff_ci_pt": [lo, hi],
        "passes": bool(lo >= -points - 1e-9),
        "distinguishable": bool(lo > 0 or hi < 0),
    }


def select(cands: list[Measured], ref: Measured, points: float = ISO_POINTS) -> Measured | None:
    """The cheapest candidate that passes against ``ref`` on the validation frames (None: none)."""
    for m in [*cands, ref]:
        if m.split != SELECTION_SPLIT:
            raise ValueError(
                f"settings are chosen on the {SELECTION_SPLIT} split only; {m.name} was measured on {m.split}"
            )
    passing = [c for c in cands if compare(c, ref, points)["passes"]]
    return min(passing, key=lambda c: c.mean_bytes) if passing else None


def select_per_mode(
    cands: list[Measured], ref: Measured, points: float = ISO_POINTS
) -> dict[str, Measured | None]:
    """Each mode's selected setting (see :func:`select`), in first-seen order of the modes."""
    modes: dict[str, list[Measured]] = {}
    for c in cands:
        modes.setdefault(c.setting.mode, []).append(c)
    return {mode: select(ms, ref, points) for mode, ms in modes.items()}


def fair_treatment(selected: dict, codec: str, cost=lambda m: m.mean_bytes) -> str | None:
    """A frame codec's fair baseline: of the whole model fine-tuned on that codec (mode
    ``{codec}_fair``) and the untuned model (mode ``codec``), the one whose selected setting is
    cheaper on the validation split (None: neither passes there). Whether to fine-tune is the
    baseline's hyper-parameter, chosen on validation like the edge's: fine-tuning at random
    qualities can cost the model accuracy at the qualities that pass, and then the untuned model
    is the stronger baseline. ``selected`` maps modes to their selected setting (a
    :class:`Measured`, or whatever ``cost`` reads its validation bytes from)."""
    cands = [m for m in (f"{codec}_fair", codec) if selected.get(m) is not None]
    return min(cands, key=lambda m: cost(selected[m])) if cands else None


def score(m: Measured, ref: Measured, points: float = ISO_POINTS) -> dict:
    """A measured setting with intervals: bytes, top-1 and the comparison with ``ref``."""
    b_lo, b_hi = mean_interval(m.bytes)
    a_lo, a_hi = mean_interval(m.correct)
    return {
        "split": m.split,
        "n": int(len(m.correct)),
        "bytes": m.mean_bytes,
        "bytes_ci": [b_lo, b_hi],
        "top1": m.top1,
        "top1_ci": [a_lo, a_hi],
        **compare(m, ref, points),
    }

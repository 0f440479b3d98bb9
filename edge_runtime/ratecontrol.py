"""Closed-loop rate control: meet a byte budget per frame by adjusting keep ratio and bit depth.

After each frame the controller compares the bytes it cost with the target and moves the keep
ratio multiplicatively, ``keep *= (target / bytes) ** gain`` (bytes grow about linearly with the
kept positions, so this is a damped Newton step in log space). When the ratio hits its bounds the
bit depth moves instead: one bit down when even ``min_keep`` is too expensive, one bit up when
``max_keep`` still leaves more than a quarter of the budget unused. A kbit/s target becomes bytes
per frame at the measured frame rate (an exponential average of frame intervals).

With temporal coding (``per_second=True``) frames cost very different amounts (a frame coded
alone after a scene cut, then small predicted ones), so the budget is kept **per second**: a
bucket holds the bytes over or under target, clipped to one second's budget, and the next frame's
effective target is the per-frame target minus the bucket spread over a second of frames. A
frame coded alone does not move the keep ratio (its size says nothing about the predicted frames
that follow); :attr:`cut_ceiling` is the most such a frame may cost (``rate.cut_max_bytes``, or 3 x
the per-frame target), which the pipeline enforces by lowering that frame's keep ratio.

``error`` reports how far the sent bytes are from the target: the mean relative error of the
per-frame bytes and the relative error of the mean.
"""

from __future__ import annotations

import math

from edge_runtime.config import RateConfig

__all__ = ["RateController"]

_EMPTY_BYTES = 64  # an empty frame's message is about this big; it tells us nothing about the slope


class RateController:
    """Per-frame ``keep`` and ``bits`` to use; call :meth:`update` with each frame's bytes."""

    def __init__(
        self, cfg: RateConfig, *, keep: float, bits: int, fps: float = 30.0, per_second: bool = False
    ) -> None:
        self.cfg = cfg
        self.per_second = per_second
        self.bucket = 0.0  # bytes over (+) or under (-) the budget so far, at most one second's
        self.keep = min(cfg.max_keep, max(cfg.min_keep, keep))
        self.bits = min(cfg.max_bits, max(cfg.min_bits, bits))
        self.fps = fps
        self.frames = 0
        self.sum_bytes = 0.0
        self.sum_target = 0.0
        self.sum_abs_err = 0.0
        self.last_error = 0.0

    @property
    def target_bytes(self) -> float:
        if self.cfg.target_bytes > 0:
            return self.cfg.target_bytes
        return self.cfg.target_kbps * 1000.0 / 8.0 / max(self.fps, 1e-3)

    def observe_interval(self, seconds: float) -> None:
        """Feed the time between frames (for kbit/s targets)."""
        if seconds > 0:
            self.fps = 0.9 * self.fps + 0.1 * (1.0 / seconds)

    @property
    def cut_ceiling(self) -> float:
        """Most bytes the first frame after a scene cut may cost (temporal coding)."""
        return self.cfg.cut_max_bytes or 3.0 * self.target_bytes

    def update(self, nbytes: int, *, intra: bool = False) -> None:
        """Account one sent frame of ``nbytes`` and choose keep / bits for the next. ``intra``: a
        frame coded alone although temporal coding is on (a cut: per-second mode keeps the keep)."""
        cfg, target = self.cfg, self.target_bytes
        self.frames += 1
        self.sum_bytes += nbytes
        self.sum_target += target
        self.last_error = (nbytes - target) / target
        self.sum_abs_err += abs(self.last_error)
        if self.per_second:
            cap = max(self.fps, 1.0) * target
            self.bucket = min(cap, max(-cap, self.bucket + nbytes - target))
            target = max(0.3 * target, target - self.bucket / max(self.fps, 1.0))
            if intra:
                return
        if nbytes <= _EMPTY_BYTES:
            return
        keep = self.keep * (target / nbytes) ** cfg.gain
        if keep > cfg.max_keep:
            keep = cfg.max_keep
            if nbytes < 0.75 * target and self.bits < cfg.max_bits:
                self.bits += 1
                keep = max(cfg.min_keep, keep * 0.8)  # more bits cost more: start a little lower
        elif keep < cfg.min_keep:
            keep = cfg.min_keep
            if nbytes > target and self.bits > cfg.min_bits:
                self.bits -= 1
        self.keep = keep if math.isfinite(keep) else self.keep

    @property
    def error(self) -> dict:
        """``mean_abs``: mean |bytes - target| / target per frame; ``of_mean``: (mean bytes -
        mean target) / mean target (the budget over a window)."""
        if not self.frames:
            return {"mean_abs": 0.0, "of_mean": 0.0, "frames": 0}
        return {
            "mean_abs": self.sum_abs_err / self.frames,
            "of_mean": (self.sum_bytes - self.sum_target) / self.sum_target,
            "frames": self.frames,
        }

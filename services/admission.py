"""How long queued work will take: a running fit of model-call time against the hits per call.

Admission control needs the seconds a queue will cost, not its length: 10,000 queued
events are 7 s of GNN work but 0.1 s of LineFit, and one 8,000-hit event costs as much
as eighty 100-hit ones. ``WorkEstimate`` fits ``seconds = fixed + per_hit * hits`` to
recent model calls (hits, not events, are the unit: the methods' cost grows with the
hits of an event, which the server knows before computing), weighting older calls down
by ``decay`` per call (an exponentially weighted least-squares line), so it follows
load changes within a few dozen calls. The fixed cost per call matters: at low load the
calls hold one event and cost mostly overhead; charging that per hit would overstate
the cost of a full queue many times over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class WorkEstimate:
    """Estimated seconds of model work for queued hits (calls of at most ``max_batch_size`` events)."""

    max_batch_size: int = 512
    decay: float = 0.9
    fixed_s: float = 0.0
    per_hit_s: float = 0.0
    _weight: float = 0.0
    _x: float = 0.0
    _t: float = 0.0
    _xx: float = 0.0
    _xt: float = 0.0

    @property
    def known(self) -> bool:
        """Return True once at least one model call was measured."""
        return self._weight > 0

    def observe(self, hits: int, seconds: float) -> None:
        """Add one model call over ``hits`` hits that took ``seconds``."""
        if hits <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        d = self.decay
        self._weight = d * self._weight + 1.0
        self._x = d * self._x + hits
        self._t = d * self._t + seconds
        self._xx = d * self._xx + hits * hits
        self._xt = d * self._xt + hits * seconds
        mean_x, mean_t = self._x / self._weight, self._t / self._weight
        var_x = self._xx / self._weight - mean_x * mean_x
        cov = self._xt / self._weight - mean_x * mean_t
        # Fit a line only where call sizes varied enough to tell the two costs apart;
        # otherwise (and if noise gives a negative slope or intercept) charge all per hit.
        if var_x > (0.1 * mean_x) ** 2 and cov > 0:
            slope = cov / var_x
            intercept = mean_t - slope * mean_x
            if intercept >= 0:
                self.fixed_s, self.per_hit_s = intercept, slope
                return
        self.fixed_s, self.per_hit_s = 0.0, self._t / self._x

    def batch_seconds(self, hits: int) -> float:
        """Return the estimated time of one model call over ``hits`` hits."""
        return self.fixed_s + self.per_hit_s * hits if hits > 0 else 0.0

    def seconds(self, events: int, hits: int) -> float:
        """Return the estimated time to compute ``events`` queued events of ``hits`` hits in all."""
        if events <= 0:
            return 0.0
        calls = -(-events // self.max_batch_size)
        return calls * self.fixed_s + self.per_hit_s * hits

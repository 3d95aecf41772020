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

Decisions against a deadline use ``planned_seconds``: the estimate times ``margin``, one
plus twice the recent relative error of the estimate (its exponentially weighted RMS),
so a server whose call times jitter (a shared machine) keeps more headroom; and since a
caller waits for the end of the whole call its events are in, the last call counts as
holding at least ``fill_events`` events (those arriving meanwhile join it).
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
    _error2: float = 0.0
    _error_weight: float = 0.0

    @property
    def known(self) -> bool:
        """Return True once at least one model call was measured."""
        return self._weight > 0

    def observe(self, hits: int, seconds: float) -> None:
        """Add one model call over ``hits`` hits that took ``seconds``."""
        if hits <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        d = self.decay
        predicted = self.batch_seconds(hits)
        if self.known and predicted > 0:
            self._error_weight = d * self._error_weight + 1.0
            self._error2 = d * self._error2 + (seconds / predicted - 1.0) ** 2
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

    @property
    def margin(self) -> float:
        """Return the factor deadline decisions apply to estimates: 1 + 2 x the recent relative error."""
        if not self._error_weight:
            return 1.0
        return 1.0 + 2.0 * math.sqrt(self._error2 / self._error_weight)

    def batch_seconds(self, hits: int) -> float:
        """Return the estimated time of one model call over ``hits`` hits."""
        return self.fixed_s + self.per_hit_s * hits if hits > 0 else 0.0

    def seconds(self, events: int, hits: int) -> float:
        """Return the estimated time to compute ``events`` queued events (``hits`` hits in all) in full calls."""
        if events <= 0:
            return 0.0
        calls = -(-events // self.max_batch_size)
        return calls * self.fixed_s + self.per_hit_s * hits

    def planned_seconds(self, events: int, hits: int, fill_events: int = 0) -> float:
        """Return ``seconds`` with the margin, the last call padded to ``fill_events`` events (mean hits per event)."""
        if events <= 0:
            return 0.0
        size = self.max_batch_size
        calls = -(-events // size)
        last = events - (calls - 1) * size
        padded = (calls - 1) * size + min(size, max(last, fill_events))
        return self.margin * (calls * self.fixed_s + self.per_hit_s * hits * padded / events)

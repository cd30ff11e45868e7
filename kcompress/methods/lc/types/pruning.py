"""Pruning C-steps: constraint forms (L0: keep κ weights; L1: weights in an L1 ball of
radius κ) and penalty forms (α‖θ‖₀ → hard threshold √(2α/μ); α‖θ‖₁ → soft threshold α/μ).

Θ is the sparse array itself; it costs 32 bits per non-zero plus the cheaper position code
(bitmap or relative indices, as counted in :mod:`kcompress.core.stats`).
"""
import numpy as np

from kcompress.core.stats import position_bits
from kcompress.errors import require
from kcompress.methods.lc.types.base import Compression, float_bits, register

_POSITIVE = (float, lambda v: v > 0 and np.isfinite(v), "must be a positive number")


class _Sparse(Compression):
    """Shared storage count of the pruning types: Θ is the pruned array."""

    def _keep(self, delta):
        self.theta = {"nonzeros": int(np.count_nonzero(delta)), "positions": position_bits(delta.ravel())}
        return delta

    def storage(self):
        nnz = self.theta["nonzeros"]
        return {"params": nnz, "bits": float_bits(nnz) + self.theta["positions"]}


@register
class ConstraintL0(_Sparse):
    """Keep the κ entries of largest magnitude (κ < 1: that share of the entries)."""

    name = "prune-l0"
    params = {"kappa": (float, lambda v: v > 0 and (v < 1 or v == int(v)),
                        "must be a share in (0, 1) or a whole number of weights to keep")}

    def count(self, size):
        return int(round(self.kappa * size)) if self.kappa < 1 else int(self.kappa)

    def validate_for(self, shape):
        size = int(np.prod(shape))
        require(1 <= self.count(size) <= size,
                f"{self.name}: kappa={self.kappa:g} keeps {self.count(size)} of {size} weights (need 1..{size})")

    def compress(self, x, mu=None):
        flat = x.ravel()
        keep = np.argpartition(-np.abs(flat), self.count(flat.size) - 1)[: self.count(flat.size)]
        delta = np.zeros_like(flat)
        delta[keep] = flat[keep]
        return self._keep(delta.reshape(x.shape))


@register
class ConstraintL1(_Sparse):
    """Euclidean projection onto the L1 ball ‖θ‖₁ ≤ κ (Duchi et al. 2008)."""

    name = "prune-l1"
    params = {"kappa": _POSITIVE}

    def compress(self, x, mu=None):
        a = np.abs(x.ravel())
        if a.sum() <= self.kappa:
            return self._keep(x.copy())
        u = np.sort(a)[::-1]
        css = np.cumsum(u)
        j = np.arange(1, u.size + 1)
        rho = np.nonzero(u > (css - self.kappa) / j)[0][-1]
        shift = (css[rho] - self.kappa) / (rho + 1)
        return self._keep(np.sign(x) * np.maximum(np.abs(x) - shift, 0))


class _Penalty(_Sparse):
    """min α·cost(θ) + μ/2‖x − θ‖²: a shrinkage of x at α/μ (:meth:`shrink`)."""

    params = {"alpha": _POSITIVE}
    needs_mu = True

    def compress(self, x, mu):
        return self._keep(self.shrink(x, self.alpha / mu).astype(x.dtype))


@register
class PenaltyL0(_Penalty):
    """min α‖θ‖₀ + μ/2‖x − θ‖²: keep x_i where x_i² > 2α/μ (hard threshold)."""

    name = "penalty-l0"

    @staticmethod
    def shrink(x, t):
        return np.where(x * x > 2 * t, x, 0)


@register
class PenaltyL1(_Penalty):
    """min α‖θ‖₁ + μ/2‖x − θ‖²: soft threshold at α/μ."""

    name = "penalty-l1"

    @staticmethod
    def shrink(x, t):
        return np.sign(x) * np.maximum(np.abs(x) - t, 0)

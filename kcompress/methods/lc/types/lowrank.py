"""Low-rank C-steps on a layer's kernel as a matrix W (m × n): truncated SVD to a target rank,
and rank selection, which picks the rank r minimising μ/2·‖W − W_r‖² + α·r·(m + n).

Θ = (U, V) with W_r = U·V, U = (m × r), V = (r × n): r·(m + n) floats. The final model
holds such a layer as two layers (see :mod:`kcompress.methods.lc.algorithm`).
"""
import numpy as np

from kcompress.errors import require
from kcompress.methods.lc.types.base import Compression, float_bits, register


def truncated_svd(x, rank):
    """``(U·diag(s), V, s)`` of the best rank-``rank`` approximation U·V of matrix ``x``."""
    u, s, vt = np.linalg.svd(x.astype(np.float64), full_matrices=False)
    return u[:, :rank] * s[:rank], vt[:rank], s


class _Factored(Compression):
    """Shared by the low-rank types: 2-D input, Θ = (U, V)."""

    needs_matrix = True

    def validate_for(self, shape):
        require(len(shape) == 2, f"{self.name}: needs one layer's kernel as a matrix, got shape {tuple(shape)}")

    def _factors(self, x, rank, s):
        u, v, _ = truncated_svd(x, rank) if s is None else s
        self.theta = {"u": u.astype(np.float32), "v": v.astype(np.float32), "rank": int(rank), "shape": x.shape}
        return (u @ v).astype(x.dtype)

    def storage(self):
        m, n = self.theta["shape"]
        count = self.theta["rank"] * (m + n)
        return {"params": count, "bits": float_bits(count)}


@register
class LowRank(_Factored):
    """The best rank-``rank`` approximation (truncated SVD)."""

    name = "lowrank"
    params = {"rank": (int, lambda v: v >= 1, "must be a positive integer")}

    def validate_for(self, shape):
        super().validate_for(shape)
        require(self.rank <= min(shape), f"{self.name}: rank={self.rank} exceeds min{tuple(shape)} = {min(shape)}")

    def compress(self, x, mu=None):
        return self._factors(x, self.rank, None)


@register
class RankSelection(_Factored):
    """The rank r minimising μ/2·Σ_{i>r} s_i² + α·r·(m + n), then its truncated SVD."""

    name = "ranksel"
    params = {"alpha": (float, lambda v: v > 0 and np.isfinite(v), "must be a positive number")}
    needs_mu = True

    def compress(self, x, mu):
        u, v, s = truncated_svd(x, min(x.shape))
        tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])  # tail[r] = Σ_{i>r} s_i²
        ranks = np.arange(len(tail))
        rank = int(np.argmin(mu / 2 * tail + self.alpha * ranks * sum(x.shape)))
        return self._factors(x, rank, (u[:, :rank], v[:rank], s))

"""Additive combinations Δ(Θ) = Δ₁(Θ₁) + Δ₂(Θ₂) + … (e.g. a codebook plus a sparse
correction), solved by alternating the parts' own C-steps: each part compresses what the
others leave, x − Σ_{j≠i} Δⱼ, until the error stops falling. Parts keep their warm starts.
"""
import numpy as np

from kcompress.errors import require
from kcompress.methods.lc.types.base import Compression


class Additive(Compression):
    """A sum of compressions; its storage is the sum of theirs."""

    name = "additive"
    params = {}

    def __init__(self, parts, iterations=10, tol=1e-6):
        super().__init__()
        require(len(parts) >= 2, "an additive combination needs at least two parts")
        require(not any(p.needs_matrix for p in parts),
                f"{'+'.join(p.name for p in parts)}: low-rank cannot be part of an additive combination")
        self.parts = list(parts)
        self.iterations = iterations
        self.tol = tol
        self.pieces = None
        self.needs_mu = any(p.needs_mu for p in parts)

    def describe(self):
        return "+".join(p.describe() for p in self.parts)

    def validate_for(self, shape):
        for p in self.parts:
            p.validate_for(shape)

    def compress(self, x, mu=None):
        pieces = self.pieces or [np.zeros_like(x) for _ in self.parts]
        last = np.inf
        for _ in range(self.iterations):
            for i, part in enumerate(self.parts):
                rest = sum(p for j, p in enumerate(pieces) if j != i)
                pieces[i] = part.compress(x - rest, mu)
            err = float(np.sum((x - sum(pieces)) ** 2))
            if np.isfinite(last) and last - err <= self.tol * last:
                break
            last = err
        self.pieces = pieces
        self.theta = {"parts": [p.theta for p in self.parts]}
        return sum(pieces).astype(x.dtype)

    def storage(self):
        counts = [p.storage() for p in self.parts]
        return {"params": sum(c["params"] for c in counts), "bits": sum(c["bits"] for c in counts)}

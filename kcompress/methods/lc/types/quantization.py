"""Quantization C-steps: an adaptive k-entry codebook (1-D k-means, warm-started from the
previous C-step's codebook), binary {−1, 1}, scaled binary {−c, c} and scaled ternary
{−c, 0, c} with the optimal scale c.

Δ(Θ) holds only codebook values, so a quantized layer stores ⌈log₂ k⌉ bits per weight plus
the codebook (32 bits per entry).
"""
import numpy as np

from kcompress.core.kmeans import assign, kmeans_1d  # noqa: F401 (assign: part of this module's API)
from kcompress.core.stats import index_bits
from kcompress.errors import require
from kcompress.methods.lc.types.base import Compression, float_bits, register


@register
class AdaptiveQuantization(Compression):
    """A codebook of ``k`` values learned by k-means on the weights (warm-started)."""

    name = "quant"
    params = {"k": (int, lambda v: 2 <= v <= 2**16, "must be an integer from 2 to 65536")}

    def validate_for(self, shape):
        require(int(np.prod(shape)) >= self.k, f"{self.name}: k={self.k} is more than the {int(np.prod(shape))} weights")

    def compress(self, x, mu=None):
        flat = x.ravel().astype(np.float64)
        start = self.theta["codebook"] if self.theta else np.quantile(flat, (np.arange(self.k) + 0.5) / self.k)
        codebook, labels = kmeans_1d(flat, start)
        codebook = codebook.astype(np.float32)
        self.theta = {"codebook": codebook, "size": flat.size}
        return codebook[labels].reshape(x.shape).astype(x.dtype)

    def storage(self):
        return {"params": self.k, "bits": self.theta["size"] * index_bits(self.k) + float_bits(self.k)}


class _FixedCodebook(Compression):
    """Codebooks {−c, c} or {−c, 0, c}: Θ is the scale c (or nothing when c is fixed at 1)."""

    levels = 2
    scaled = True

    def storage(self):
        return {"params": int(self.scaled), "bits": self.theta["size"] * index_bits(self.levels)
                + float_bits(int(self.scaled))}


@register
class Binary(_FixedCodebook):
    """Δ = sign(x) ∈ {−1, 1} (zero maps to 1)."""

    name = "binary"
    scaled = False

    def compress(self, x, mu=None):
        self.theta = {"scale": 1.0, "size": x.size}
        return np.where(x >= 0, 1.0, -1.0).astype(x.dtype)


@register
class ScaledBinary(_FixedCodebook):
    """Δ = c·sign(x) with the optimal c = mean |x|."""

    name = "binary-scaled"

    def compress(self, x, mu=None):
        c = float(np.mean(np.abs(x)))
        self.theta = {"scale": c, "size": x.size}
        return np.where(x >= 0, c, -c).astype(x.dtype)


@register
class ScaledTernary(_FixedCodebook):
    """Δ ∈ {−c, 0, c}: the j largest |x_i| become c·sign(x_i), with c = their mean |x|, and
    j chosen to maximise the error reduction (Σ_top-j |x|)² / j."""

    name = "ternary"
    levels = 3

    def compress(self, x, mu=None):
        a = np.abs(x.ravel()).astype(np.float64)
        order = np.argsort(-a)
        css = np.cumsum(a[order])
        j = int(np.argmax(css**2 / np.arange(1, a.size + 1))) + 1
        c = css[j - 1] / j
        delta = np.zeros(a.size, x.dtype)
        delta[order[:j]] = c * np.sign(x.ravel()[order[:j]])
        self.theta = {"scale": c, "size": x.size}
        return delta.reshape(x.shape)

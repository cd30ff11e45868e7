"""The C-step interface shared by every compression type, and the registry of types by name.

A compression type is a plain numpy object that knows nothing of Keras or training. Its
:meth:`Compression.compress` solves the C-step

    Θ = argmin_Θ  μ/2 · ‖x − Δ(Θ)‖² + C(Θ)

for an array ``x`` (= w − λ/μ in the LC loop, the reference weights for direct compression),
returns the decompressed array Δ(Θ) (same shape as ``x``) and keeps Θ in ``self.theta`` so
that the next call can warm-start from it. Constraint forms ignore μ; penalty forms
(``C(Θ) = α·cost``) need it. :meth:`Compression.storage` counts Θ's free parameters and bits.
"""
from kcompress.core.stats import FLOAT_BITS
from kcompress.errors import require

REGISTRY = {}


def register(cls):
    """Class decorator: make ``cls`` available to task strings under ``cls.name``."""
    REGISTRY[cls.name] = cls
    return cls


class Compression:
    """Base class: subclasses set ``name``, ``params`` and implement :meth:`compress` and
    :meth:`storage`. ``params`` maps a parameter name to ``(type, check, message)``."""

    name = ""
    params = {}
    needs_matrix = False  # True: the C-step needs a 2-D matrix (a layer's kernel as is)
    needs_mu = False  # True: the C-step depends on μ (penalty forms)

    def __init__(self, **values):
        unknown = sorted(set(values) - set(self.params))
        require(not unknown, f"{self.name}: unknown parameter(s) {', '.join(unknown)} "
                             f"(takes {', '.join(self.params) or 'none'})")
        missing = sorted(set(self.params) - set(values))
        require(not missing, f"{self.name}: missing parameter(s) {', '.join(missing)} (e.g. {self.example()})")
        for key, (kind, check, message) in self.params.items():
            try:
                value = kind(values[key])
            except (TypeError, ValueError):
                value = None
            require(value is not None and check(value), f"{self.name}: {key}={values[key]} {message}")
            setattr(self, key, value)
        self.theta = None

    @classmethod
    def example(cls):
        return cls.name + (":" + ",".join(f"{k}=..." for k in cls.params) if cls.params else "")

    def describe(self):
        """``name:key=value,...`` as in a task string."""
        values = ",".join(f"{k}={getattr(self, k):g}" for k in self.params)
        return self.name + (":" + values if values else "")

    def validate_for(self, shape):
        """Check that this compression fits an array of ``shape`` (UsageError if not)."""

    def compress(self, x, mu):
        """The C-step on array ``x`` at penalty parameter ``mu``: returns Δ(Θ), keeps Θ."""
        raise NotImplementedError

    def storage(self):
        """``{"params": free real parameters of Θ, "bits": bits to store Θ}`` (after a C-step)."""
        raise NotImplementedError


def float_bits(count):
    return int(count) * FLOAT_BITS

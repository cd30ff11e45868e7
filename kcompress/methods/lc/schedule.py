"""The μ schedule of an LC run (plain Python: validated before any TensorFlow work starts)."""
from dataclasses import dataclass

import numpy as np

from kcompress.errors import require


@dataclass
class Schedule:
    """The μ values, epochs per L-step, learning-rate decay per step, and multipliers on/off."""

    mus: tuple
    l_epochs: int = 1
    lr_decay: float = 0.99
    multipliers: bool = True

    @classmethod
    def geometric(cls, mu0, factor, steps, **kwargs):
        """μ_k = mu0·factor^k for k = 0..steps−1."""
        return cls(tuple(float(mu0) * float(factor) ** k for k in range(int(steps))), **kwargs)

    def validate(self):
        require(len(self.mus) > 0, "the μ schedule is empty (--mu-steps must be positive)")
        require(all(np.isfinite(m) and m > 0 for m in self.mus), "every μ must be a positive number")
        require(int(self.l_epochs) >= 1, f"--l-epochs must be at least 1, got {self.l_epochs}")
        require(0 < float(self.lr_decay) <= 1, f"--lr-decay must be in (0, 1], got {self.lr_decay}")
        return self

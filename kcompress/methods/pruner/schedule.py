"""The λ/μ schedule of the pruner masks, and the callback that applies and records it.

:class:`LambdaMuSchedule` is plain Python (testable without training): given what happened
in the epochs so far it decides the next λ and μ.

- λ starts at ``lambda_start`` and is multiplied by ``lambda_factor`` every ``lambda_every``
  epochs up to ``lambda_max`` (the published schedule: 1 → 10⁷, ×10 every 20 epochs);
- with ``on_stall``, λ is also raised as soon as the gates stop moving: the mean over gates of
  the variance of σ(wᵢ) over the last ``stall_window`` epochs falls below ``stall_threshold``
  while the gates have not converged — the "flat valley" where L_pru's gradient vanishes;
- μ is a fixed coefficient, or ``adaptive``: μ = ⟨L_task⟩ / ⟨L_pru⟩ over the last ``mu_window``
  epochs. The published formula μ = ⟨L_task⟩ / (λ·⟨L_pru⟩) makes μ·λ·L_pru ≈ ⟨L_task⟩ whatever λ is, so
  λ would have no effect; here μ only normalises L_pru to the scale of the task loss and λ
  alone sets the pressure (μ·λ·L_pru ≈ λ·⟨L_task⟩).

:class:`PrunerCallback` sets λ, μ on the penalty at each epoch start and records, at each
epoch end, L_sel, L_rej, λ, μ, open gates per layer and the gate variance; it stops training
once every gate is within ε of 0 or 1 with exactly n open per layer.
"""
from collections import deque
from dataclasses import dataclass

import numpy as np

from kcompress.backend import keras
from kcompress.errors import require
from kcompress.methods.pruner.gates import gate_summary


@dataclass
class LambdaMuSchedule:
    lambda_start: float = 1.0
    lambda_factor: float = 10.0
    lambda_every: int = 20
    lambda_max: float = 1e7
    mu: object = "adaptive"  # "adaptive" or a float
    mu_window: int = 10
    on_stall: bool = True
    stall_window: int = 5
    stall_threshold: float = 1e-5

    def validate(self):
        require(self.lambda_start > 0, f"--lambda-start must be positive, got {self.lambda_start}")
        require(self.lambda_factor >= 1, f"--lambda-factor must be >= 1, got {self.lambda_factor}")
        require(int(self.lambda_every) > 0, f"--lambda-every must be positive, got {self.lambda_every}")
        require(self.lambda_max >= self.lambda_start, f"--lambda-max must be >= --lambda-start, got {self.lambda_max}")
        require(self.mu == "adaptive" or float(self.mu) > 0, f"--mu must be 'adaptive' or positive, got {self.mu}")
        return self

    def start(self, task_loss, pruning_loss):
        """Reset; ``task_loss``/``pruning_loss`` at the start seed the adaptive μ."""
        self.lam, self.since_raise, self.raises = float(self.lambda_start), 0, []
        self.losses = deque([(float(task_loss), float(pruning_loss))], maxlen=int(self.mu_window))
        self.snapshots = deque(maxlen=int(self.stall_window))
        return self.lam, self.current_mu()

    def current_mu(self):
        if self.mu != "adaptive":
            return float(self.mu)
        task, pru = np.mean(np.asarray(self.losses), axis=0)
        return float(task / max(pru, 1e-12))

    def motion(self):
        """Mean over gates of the variance of σ(w) over the snapshot window (nan until full)."""
        if len(self.snapshots) < self.snapshots.maxlen:
            return float("nan")
        return float(np.mean(np.var(np.stack(self.snapshots), axis=0)))

    def end_epoch(self, epoch, task_loss, pruning_loss, gate_values):
        """Record epoch ``epoch``; returns ``(λ, μ)`` for the next epoch."""
        self.losses.append((float(task_loss), float(pruning_loss)))
        self.snapshots.append(np.asarray(gate_values, dtype=np.float64))
        self.since_raise += 1
        self.last_motion = self.motion()
        stalled = self.on_stall and self.last_motion < float(self.stall_threshold)
        if self.lam < self.lambda_max and (self.since_raise >= int(self.lambda_every) or stalled):
            self.lam = min(self.lam * float(self.lambda_factor), float(self.lambda_max))
            self.since_raise = 0
            self.snapshots.clear()
            self.raises.append((epoch + 1, self.lam, "stall" if stalled else "schedule"))
        return self.lam, self.current_mu()


class PrunerCallback(keras.callbacks.Callback):
    """Applies a :class:`LambdaMuSchedule` to a :class:`~kcompress.methods.pruner.gates.PrunerPenalty`,
    logs the gate diagnostics per epoch and stops when the gates have converged."""

    def __init__(self, penalty, schedule, epsilon, initial_task_loss):
        super().__init__()
        self.penalty, self.schedule, self.epsilon = penalty, schedule, float(epsilon)
        self.initial_task_loss = float(initial_task_loss)
        self.converged_epoch = None

    def on_train_begin(self, logs=None):
        lam, mu = self.schedule.start(self.initial_task_loss, float(self.penalty.pruning_loss()))
        self._assign(lam, mu)

    def _assign(self, lam, mu):
        self.penalty.lam.assign(lam)
        self.penalty.mu.assign(mu)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        l_sel, l_rej = (float(t) for t in self.penalty.parts())
        summary = gate_summary(self.penalty, self.epsilon)
        values = np.concatenate(list(summary["values"].values()))
        weights = np.concatenate([g.w.numpy() for g in self.penalty.gates.values()])
        logs.update(l_sel=l_sel, l_rej=l_rej, lam=float(self.penalty.lam.numpy()), mu=float(self.penalty.mu.numpy()),
                    open_gates=float(sum(summary["open"].values())), gate_weight_var=float(np.var(weights)),
                    **{f"open_{name}": float(k) for name, k in summary["open"].items()})
        self._assign(*self.schedule.end_epoch(epoch, logs.get("loss", np.nan), l_sel + l_rej, values))
        logs["gate_motion"] = self.schedule.last_motion
        if summary["converged"]:
            self.converged_epoch = epoch + 1
            self.model.stop_training = True

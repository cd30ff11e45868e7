"""The λ/μ schedule of the pruner masks, and the callback that applies and records it.

:class:`LambdaMuSchedule` is plain Python (testable without training): given what happened
in the epochs so far it decides the next λ and μ.

- λ starts at ``lambda_start`` and is multiplied by ``lambda_factor`` every ``lambda_every``
  epochs up to ``lambda_max`` (the published schedule: 1 → 10⁷, ×10 every 20 epochs);
- ``lambda_rule="stall"`` (the default) also raises λ ×``lambda_factor`` as soon as the gates stop moving:
  the mean over gates of the variance of σ(wᵢ) over the last ``stall_window`` epochs falls below
  ``stall_threshold`` while the gates have not converged — the "flat valley" where L_pru's
  gradient vanishes;
- ``lambda_rule="slope"`` instead raises λ at the end of each epoch in inverse proportion to the change
  of L_pru = L_sel + L_rej since the previous epoch: λ ← λ·min(factor, c/|ΔL_pru|) with
  c = ``slope_scale``, whenever that multiplier is above 1 (|ΔL_pru| < c). A flat valley gets a
  steep raise at once, a falling L_pru none; ``lambda_rule="schedule"`` keeps the timed raises only.
  Every raise restarts the ``lambda_every`` count;
- μ is a fixed coefficient, or ``adaptive``: μ = ⟨L_task⟩ / ⟨L_pru⟩ over the last ``mu_window``
  epochs, which only normalises L_pru to the scale of the task loss and leaves the pressure to λ
  (μ·λ·L_pru ≈ λ·⟨L_task⟩); or ``balanced``, note 003's formula μ = ⟨L_task⟩ / (λ·⟨L_pru⟩) with the
  λ of the coming epoch, which makes μ·λ = ⟨L_task⟩ / ⟨L_pru⟩ whatever λ is: λ's schedule cancels;
- ``size_coefficient="units"`` multiplies L_pru by c = the number of gated units (note 004: a coefficient
  "related somehow to the size of the net", as the flat valley appeared on big networks); μ is computed
  from L_pru without c, so c multiplies the pressure of every μ rule.

Every knob is read from the :class:`~kcompress.methods.pruner.settings.PrunerSettings` it is given
(``lambda_start`` ... ``mu_window``), which declare their defaults and checks once.

:class:`PrunerCallback` sets λ, μ on the penalty at each epoch start and records, at each
epoch end, L_sel, L_rej, L_pru, λ, μ, the network learning rate, open gates per layer and the
gate variance; it stops training once every gate is within ε of 0 or 1 with exactly n open per
layer. :class:`DropOnPruning` is the ``on-pruning`` learning-rate rule of the gate phase: the
network learning rate ×γ once, when a share of the gates due to close have closed — "start
high, lower it once pruning has started".
"""
from collections import deque
from dataclasses import dataclass

import numpy as np

from kcompress.backend import keras
from kcompress.methods.pruner.gates import gate_summary
from kcompress.methods.pruner.settings import MU_RULES, PrunerSettings


@dataclass
class LambdaMuSchedule:
    """λ and μ of each epoch, from validated ``settings`` (their fields, not copies)."""

    settings: PrunerSettings

    def start(self, task_loss, pruning_loss):
        """Reset; ``task_loss``/``pruning_loss`` at the start seed an adaptive or balanced μ."""
        self.lam, self.since_raise, self.raises = float(self.settings.lambda_start), 0, []
        self.losses = deque([(float(task_loss), float(pruning_loss))], maxlen=self.settings.mu_window)
        self.snapshots = deque(maxlen=self.settings.stall_window)
        return self.lam, self.current_mu()

    def current_mu(self):
        """μ for the coming epoch, whose λ is ``self.lam``."""
        mu = self.settings.mu
        if mu not in MU_RULES:
            return float(mu)
        task, pru = np.mean(np.asarray(self.losses), axis=0)
        ratio = float(task / max(pru, 1e-12))
        return ratio / self.lam if mu == "balanced" else ratio

    def coefficient(self, units):
        """c on L_pru for a network of ``units`` gated units: note 004's coefficient tied to the network's size."""
        return float(units) if self.settings.size_coefficient == "units" else 1.0

    def motion(self):
        """Mean over gates of the variance of σ(w) over the snapshot window (nan until full)."""
        if len(self.snapshots) < self.snapshots.maxlen:
            return float("nan")
        return float(np.mean(np.var(np.stack(self.snapshots), axis=0)))

    def end_epoch(self, epoch, task_loss, pruning_loss, gate_values):
        """Record epoch ``epoch``; returns ``(λ, μ)`` for the next epoch."""
        change = abs(float(pruning_loss) - self.losses[-1][1])
        self.losses.append((float(task_loss), float(pruning_loss)))
        self.snapshots.append(np.asarray(gate_values, dtype=np.float64))
        self.since_raise += 1
        self.last_motion = self.motion()
        factor, why = self.raise_factor(change)
        if self.lam < self.settings.lambda_max and factor > 1:
            self.lam = min(self.lam * factor, self.settings.lambda_max)
            self.since_raise = 0
            self.snapshots.clear()
            self.raises.append((epoch + 1, self.lam, why))
        return self.lam, self.current_mu()

    def raise_factor(self, change):
        """``(multiplier of λ, why)`` after an epoch in which L_pru changed by ``change``."""
        s = self.settings
        if self.since_raise >= s.lambda_every:
            return s.lambda_factor, "schedule"
        if s.lambda_rule == "stall" and self.last_motion < s.stall_threshold:
            return s.lambda_factor, "stall"
        if s.lambda_rule == "slope":
            return min(s.lambda_factor, s.slope_scale / max(change, 1e-30)), "slope"
        return 1.0, None


class PrunerCallback(keras.callbacks.Callback):
    """Applies a :class:`LambdaMuSchedule` to a :class:`~kcompress.methods.pruner.gates.PrunerPenalty`,
    logs the gate diagnostics per epoch and stops when the gates have converged."""

    def __init__(self, penalty, schedule, epsilon, initial_task_loss):
        super().__init__()
        self.penalty, self.schedule, self.epsilon = penalty, schedule, float(epsilon)
        self.initial_task_loss = float(initial_task_loss)
        self.converged_epoch = None

    def on_train_begin(self, logs=None):
        self.penalty.coefficient.assign(self.schedule.coefficient(self.penalty.units()))
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
        lr = float(keras.backend.get_value(self.model.optimizer.learning_rate))
        logs.update(l_sel=l_sel, l_rej=l_rej, l_pru=l_sel + l_rej, lam=float(self.penalty.lam.numpy()),
                    mu=float(self.penalty.mu.numpy()), lr=lr,
                    open_gates=float(sum(summary["open"].values())), gate_weight_var=float(np.var(weights)),
                    **{f"open_{name}": float(k) for name, k in summary["open"].items()})
        self._assign(*self.schedule.end_epoch(epoch, logs.get("loss", np.nan), l_sel + l_rej, values))
        logs["gate_motion"] = self.schedule.last_motion
        if summary["converged"]:
            self.converged_epoch = epoch + 1
            self.model.stop_training = True


def closed_share(open_counts, sizes, targets):
    """Share of the gates due to close (Σ N − n over layers) that are closed now; 1 if none is due."""
    due = sum(sizes[name] - targets[name] for name in targets)
    closed = sum(sizes[name] - open_counts[name] for name in targets)
    return 1.0 if due == 0 else closed / due


class DropOnPruning(keras.callbacks.Callback):
    """The ``on-pruning`` learning-rate rule: at the end of the first epoch in which at least
    ``share`` of the gates due to close are closed (σ < ½), the network optimizer's learning rate
    is multiplied by ``gamma`` (once); ``dropped_epoch`` says when (1-based, None if never)."""

    def __init__(self, penalty, share, gamma):
        super().__init__()
        self.penalty, self.share, self.gamma = penalty, float(share), float(gamma)
        self.sizes = {name: int(g.w.shape[0]) for name, g in penalty.gates.items()}
        self.dropped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        if self.dropped_epoch is not None:
            return
        opened = {name: int((g.values().numpy() > 0.5).sum()) for name, g in self.penalty.gates.items()}
        if closed_share(opened, self.sizes, self.penalty.targets) >= self.share:
            lr = self.model.optimizer.learning_rate
            keras.backend.set_value(lr, keras.backend.get_value(lr) * self.gamma)
            self.dropped_epoch = epoch + 1

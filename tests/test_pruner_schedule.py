"""The pruner's λ/μ schedule (methods/pruner/schedule.py): λ raised on time, on stall or by the slope of
L_pru, the coefficient tied to the network's size, the share of gates due to close; the adaptive and
balanced μ rules worked by hand (note 003) and what --help says each implies."""
import numpy as np
import pytest

from cli_help import help_of
from kcompress.methods.pruner import gates as G
from kcompress.methods.pruner.schedule import closed_share, LambdaMuSchedule
from kcompress.methods.pruner.settings import PrunerSettings


def test_schedule_raises_lambda_on_time_and_on_stall():
    sched = LambdaMuSchedule(PrunerSettings.from_dict(dict(lambda_every=3, lambda_max=100.0, lambda_rule="schedule",
                                                           mu="adaptive", mu_window=2)))
    assert sched.start(task_loss=2.0, pruning_loss=1.0) == (1.0, 2.0)
    lams = [sched.end_epoch(e, 4.0, 1.0, np.full(5, 0.9))[0] for e in range(12)]
    assert lams == [1, 1, 10, 10, 10, 100, 100, 100, 100, 100, 100, 100]
    assert sched.current_mu() == pytest.approx(4.0)  # ⟨L_task⟩/⟨L_pru⟩ over the last 2 epochs
    stall = LambdaMuSchedule(PrunerSettings.from_dict(dict(lambda_every=100, stall_window=3, mu=0.5)))
    stall.start(1.0, 1.0)
    lams = [stall.end_epoch(e, 1.0, 1.0, np.full(5, 0.9))[0] for e in range(6)]
    assert lams == [1, 1, 10, 10, 10, 100]  # gates not moving: λ ×10 once the window is full
    assert stall.current_mu() == 0.5


def _schedule(**settings):
    return LambdaMuSchedule(PrunerSettings.from_dict(settings))


@pytest.mark.parametrize("size, c", [("none", 1.0), ("units", 40.0)])
def test_size_coefficient_multiplies_the_pruning_loss_by_the_gated_units(size, c):
    """Note 004's coefficient tied to the network's size. Two layers of N = 30 (keep 10) and 10 (keep 5), all
    σ = 1/2 (w = 0): L_sel = |15 − 10|/30 + |5 − 5|/10 = 1/6, L_rej = 1/4 + 1/4 = 1/2, L_pru = 2/3; with
    μ = 0.5 and λ = 3, the penalty is c·0.5·3·2/3 = c with c = 30 + 10 = 40 for units."""
    from kcompress.methods.pruner.schedule import PrunerCallback

    gates = {name: G.Gate(init=0.0, name=name) for name in ("a", "b")}
    for gate, width in zip(gates.values(), (30, 10)):
        gate.build((None, width))
    penalty = G.PrunerPenalty(gates, {"a": 10, "b": 5})
    callback = PrunerCallback(penalty, _schedule(mu=0.5, lambda_start=3.0, size_coefficient=size), 0.01, 1.0)
    callback.on_train_begin()
    assert float(penalty.pruning_loss()) == pytest.approx(2 / 3, rel=1e-6)
    assert float(penalty()) == pytest.approx(c, rel=1e-6)


def test_slope_rule_raises_lambda_in_inverse_proportion_to_the_change_of_l_pru():
    sched = _schedule(lambda_every=100, lambda_rule="slope", slope_scale=1e-3, mu=1.0)
    sched.start(task_loss=1.0, pruning_loss=1.0)
    changes = [0.1, 5e-4, 1e-5, 0.0]  # no raise; ×c/Δ = ×2; ×10 (capped at the factor); ×10
    l_pru = 1.0 - np.cumsum(changes)
    lams = [sched.end_epoch(e, 1.0, p, np.full(3, 0.5))[0] for e, p in enumerate(l_pru)]
    assert lams == pytest.approx([1.0, 2.0, 20.0, 200.0], rel=1e-6)
    assert [why for *_, why in sched.raises] == ["slope"] * 3
    timed = _schedule(lambda_every=2, lambda_rule="slope", slope_scale=1e-3, mu=1.0)
    timed.start(1.0, 1.0)
    assert [timed.end_epoch(e, 1.0, 1.0 - 0.5 * (e + 1), np.zeros(3))[0] for e in range(4)] == [1, 10, 10, 100]


def test_schedule_rule_ignores_stalled_gates():
    sched = _schedule(lambda_every=100, stall_window=2, lambda_rule="schedule", mu=1.0)
    sched.start(1.0, 1.0)
    assert [sched.end_epoch(e, 1.0, 1.0, np.full(5, 0.9))[0] for e in range(6)] == [1.0] * 6


def test_closed_share_counts_the_gates_due_to_close():
    # a: 10 of 10 open, keep 4 (6 due, 0 closed); b: 4 of 8 open, keep 2 (6 due, 4 closed)
    assert closed_share({"a": 10, "b": 4}, {"a": 10, "b": 8}, {"a": 4, "b": 2}) == pytest.approx(4 / 12)
    assert closed_share({"a": 3}, {"a": 3}, {"a": 3}) == 1.0


def _windowed_schedule(**settings):
    return LambdaMuSchedule(PrunerSettings.from_dict(dict(mu_window=2, lambda_every=1, lambda_rule="schedule",
                                                          **settings)))


@pytest.mark.parametrize("mu, want", [("adaptive", [2.0, 3.0, 4.0]), ("balanced", [2.0, 0.3, 0.04])])
def test_adaptive_and_balanced_mu_by_hand(mu, want):
    """Window 2, λ ×10 every epoch. Losses (L_task, L_pru): start (2, 1), then (4, 1), then (4, 1).
    Means: (2, 1) → (3, 1) → (4, 1). adaptive μ = ⟨L_task⟩/⟨L_pru⟩ = 2, 3, 4 with λ = 1, 10, 100;
    balanced (note 003) μ = ⟨L_task⟩/(λ·⟨L_pru⟩) = 2/1, 3/10, 4/100: μ·λ = 2, 3, 4, λ cancels."""
    sched = _windowed_schedule(mu=mu)
    steps = [sched.start(2.0, 1.0)] + [sched.end_epoch(e, 4.0, 1.0, np.zeros(3)) for e in range(2)]
    assert [lam for lam, _ in steps] == [1.0, 10.0, 100.0]
    assert [m for _, m in steps] == pytest.approx(want)
    products = [lam * m for lam, m in steps]
    assert products == pytest.approx([2.0, 3.0, 4.0] if mu == "balanced" else [2.0, 30.0, 400.0])


def test_mu_help_says_what_each_rule_implies():
    from kcompress.errors import UsageError

    text = help_of("pruner")
    assert "μ·λ·L_pru ≈ λ·⟨L_task⟩ and λ sets the pressure" in text
    assert "μ·λ = ⟨L_task⟩/⟨L_pru⟩ whatever λ is: λ's schedule cancels" in text
    with pytest.raises(UsageError, match="--mu"):
        PrunerSettings.from_dict({"mu": "sometimes"})

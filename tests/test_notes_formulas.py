"""The research notes' formulas against numbers worked by hand from the notes (never a copy of the
implementation): note 003's product rejection loss and adaptive μ, note 002's α schedule."""
import math
import re

import numpy as np
import pytest

from kcompress.methods.alpha.settings import NOTE_002_RECIPE, AlphaSettings, alpha_schedule
from kcompress.methods.pruner.settings import PrunerSettings


def _rejection(sigma, rejection):
    from kcompress.backend import tf
    from kcompress.methods.pruner.gates import rejection_loss

    w = np.log(np.asarray(sigma, np.float64) / (1 - np.asarray(sigma, np.float64))).astype(np.float32)
    return float(rejection_loss(tf.sigmoid(w), w, rejection))


def test_product_rejection_loss_is_note_003s_at_three_gates_of_one_half():
    # Σσ(1−σ)/N = 3·0.25/3 = 0.25, Πσ = 0.125: L_rej = [0.75 + 3·0.125]/3 = 0.375 (not 0.625)
    assert _rejection([0.5] * 3, "sum") == pytest.approx(0.25, abs=1e-6)
    assert _rejection([0.5] * 3, "product") == pytest.approx(0.375, abs=1e-6)


def test_product_rejection_loss_is_note_003s_at_300_open_gates():
    # σ = 0.982: Σσ(1−σ)/N = 0.982·0.018 = 0.017676, Πσ = 0.982^300 = 0.0043: L_rej = 0.0220 (not 1.32)
    assert _rejection([0.982] * 300, "sum") == pytest.approx(0.017676, abs=2e-6)
    assert _rejection([0.982] * 300, "product") == pytest.approx(0.0220, abs=5e-5)


def _schedule(**settings):
    from kcompress.methods.pruner.schedule import LambdaMuSchedule

    return LambdaMuSchedule(PrunerSettings.from_dict(dict(mu_window=2, lambda_every=1, lambda_rule="schedule",
                                                          **settings)))


@pytest.mark.parametrize("mu, want", [("adaptive", [2.0, 3.0, 4.0]), ("balanced", [2.0, 0.3, 0.04])])
def test_adaptive_and_balanced_mu_by_hand(mu, want):
    """Window 2, λ ×10 every epoch. Losses (L_task, L_pru): start (2, 1), then (4, 1), then (4, 1).
    Means: (2, 1) → (3, 1) → (4, 1). adaptive μ = ⟨L_task⟩/⟨L_pru⟩ = 2, 3, 4 with λ = 1, 10, 100;
    balanced (note 003) μ = ⟨L_task⟩/(λ·⟨L_pru⟩) = 2/1, 3/10, 4/100: μ·λ = 2, 3, 4, λ cancels."""
    sched = _schedule(mu=mu)
    steps = [sched.start(2.0, 1.0)] + [sched.end_epoch(e, 4.0, 1.0, np.zeros(3)) for e in range(2)]
    assert [lam for lam, _ in steps] == [1.0, 10.0, 100.0]
    assert [m for _, m in steps] == pytest.approx(want)
    products = [lam * m for lam, m in steps]
    assert products == pytest.approx([2.0, 3.0, 4.0] if mu == "balanced" else [2.0, 30.0, 400.0])


def _help_of(method):
    """``compress --method METHOD --help`` on one line."""
    import contextlib
    import io

    from kcompress.cli.main import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["compress", "--method", method, "--help"])
    return re.sub(r"(\w-) ", r"\1", " ".join(out.getvalue().split()))  # argparse wraps after hyphens


def test_mu_help_says_what_each_rule_implies():
    from kcompress.errors import UsageError

    text = _help_of("pruner")
    assert "μ·λ·L_pru ≈ λ·⟨L_task⟩ and λ sets the pressure" in text
    assert "μ·λ = ⟨L_task⟩/⟨L_pru⟩ whatever λ is: λ's schedule cancels" in text
    with pytest.raises(UsageError, match="--mu"):
        PrunerSettings.from_dict({"mu": "sometimes"})


def test_exp_alpha_schedule_is_note_002s_legend():
    """Note 002: 'an exponential schedule with a decay rate of 0.05' with α = 0.95, 0.6, 0.45 in the legend."""
    alphas = AlphaSettings().alphas()
    assert [round(alphas[k - 1], 3) for k in (1, 10, 16)] == [0.951, 0.607, 0.449]
    geometric = alpha_schedule("geometric", 0.05, 0.05)
    assert [round(geometric[k - 1], 3) for k in (1, 15, 16)] == [0.95, 0.463, 0.44]
    # e^(−0.05k) ≥ 0.05 up to k = 59 (ln 20 / 0.05 = 59.9), then 0
    assert len(alphas) == 60 and alphas[-2] == pytest.approx(math.exp(-2.95)) and alphas[-1] == 0.0


def test_note_002_recipe_is_the_defaults_without_the_lr_drop_end():
    from kcompress.cli.main import parse

    argv = ["compress", "--from", "m", "--method", "alpha", "--out", "x", *NOTE_002_RECIPE.split()]
    values = {k: v for k, v in parse(argv)[1].items() if k not in ("from_dir", "method", "out")}
    recipe = AlphaSettings.from_dict(values)
    assert recipe == AlphaSettings().replace(alpha_lr_drops=0)
    assert recipe.epochs_per_alpha == 350 and recipe.lr == 1e-3 and recipe.patience == 0
    assert NOTE_002_RECIPE in _help_of("alpha")

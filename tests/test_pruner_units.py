"""Removing closed units for real (methods/pruner/units.py): the smaller model computes the hard-gated one."""
import numpy as np
import pytest

from kcompress.core.zoo import build_model
from kcompress.methods.pruner import gates as G
from kcompress.methods.pruner.units import remove_units


def _close_all_but(gates, targets, rng):
    """Set gate weights to random ±values with exactly ``targets[layer]`` open; return the open sets."""
    kept = {}
    for name, gate in gates.items():
        width = gate.w.shape[0]
        idx = np.sort(rng.choice(width, targets[name], replace=False))
        w = -rng.uniform(0.5, 6.0, width)
        w[idx] = rng.uniform(0.5, 6.0, len(idx))
        gate.w.assign(w.astype(np.float32))
        kept[name] = idx.tolist()
    return kept


@pytest.mark.parametrize("model_name, targets", [
    ("lenet300", {"dense_1": 105, "dense_2": 35}),
    ("convnet", {"conv_1": 5, "conv_2": 11, "dense_1": 40}),
])
def test_removal_computes_the_hard_gated_model(model_name, targets, reference, rng):
    if model_name == "lenet300":
        model = reference.model
    else:
        model = build_model("convnet", (28, 28), 10)
        for bn in ("bn_1", "bn_2"):  # non-trivial batch-norm statistics, so slicing them matters
            layer = model.get_layer(bn)
            layer.set_weights([rng.uniform(0.5, 2, w.shape).astype(np.float32) for w in layer.get_weights()])
    gated, gates = G.add_gates(model, list(targets))
    kept = _close_all_but(gates, targets, rng)
    penalty = G.PrunerPenalty(gates, targets)
    assert G.kept_units(penalty) == kept
    pruned = remove_units(G.strip_gates(gated), kept)
    x = reference.data.x_test[:128]
    want = G.harden(gated).predict(x, verbose=0)
    np.testing.assert_allclose(pruned.predict(x, verbose=0), want, atol=2e-5)
    for name, n in targets.items():
        assert pruned.get_layer(name).get_weights()[0].shape[-1] == n
    assert not any(isinstance(l, G.Gate) for l in pruned.layers)
    assert pruned.count_params() < model.count_params()


def test_removal_rejects_the_output_layer(reference):
    from kcompress.errors import UsageError

    with pytest.raises(UsageError, match="output layer"):
        remove_units(reference.model, {"dense_3": [0, 1]})

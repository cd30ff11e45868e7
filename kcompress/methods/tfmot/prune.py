"""``--method prune``: tfmot magnitude pruning to a target sparsity, fine-tuned, stripped.

Each chosen kernel is wrapped by ``prune_low_magnitude``; the smallest-magnitude weights are
masked to zero on a ``polynomial`` schedule (sparsity rises from 0 at ``--begin-step`` to
the target at ``--end-step``, as in Zhu & Gupta 2017) or a ``constant`` one (the target
from ``--begin-step`` on), or with structured ``--m-by-n`` sparsity. The mask is refreshed
every ``--frequency`` steps while the model is fine-tuned on the reference's own loss;
then the wrappers are stripped and the saved model is a plain Keras model whose kernels
hold exactly the target share of zeros (up to rounding of one weight per kernel). Every kernel
is pruned, each to the target on its own: a separable convolution's depthwise and pointwise
kernels and a depthwise convolution's kernel too, which tfmot's registry leaves dense
(:func:`~kcompress.methods.tfmot.common.make_prunable`).
"""
import tensorflow_model_optimization as tfmot

from kcompress.errors import require
from kcompress.methods.base import CompressionResult, unset_values
from kcompress.methods.tfmot import common


def make_schedule(p, cfg, steps_per_epoch):
    """The tfmot pruning schedule of :class:`PruneSettings` ``p`` for fine-tuning config ``cfg``."""
    total = int(cfg.epochs) * steps_per_epoch
    frequency = int(p.frequency or max(1, steps_per_epoch // 10))
    require(p.begin_step < total, f"--begin-step {p.begin_step} is beyond the {total} fine-tuning steps")
    if p.schedule == "constant":
        return tfmot.sparsity.keras.ConstantSparsity(p.target_sparsity, p.begin_step, frequency=frequency)
    # by default the target is reached half-way, on a mask update (a multiple of frequency)
    end = int(p.end_step or p.begin_step + frequency * max(1, round(total / 2 / frequency)))
    require(end > p.begin_step, f"--end-step {end} must come after --begin-step {p.begin_step}")
    require(end <= total, f"--end-step {end} is beyond the {total} fine-tuning steps ({cfg.epochs} epochs)")
    require((end - p.begin_step) % frequency == 0,
            f"--end-step {end} - --begin-step {p.begin_step} must be a multiple of --frequency {frequency}, "
            "or the last mask update misses the target sparsity")
    return tfmot.sparsity.keras.PolynomialDecay(0.0, p.target_sparsity, p.begin_step, end, frequency=frequency)


def m_by_n_fits(layer, m_by_n):
    """``layer``, if tfmot's M-by-N sparsity can take its kernels (rank 2 or 4; a Conv1D's rank-3
    kernel failed inside the first training step); else a ValueError: the layer is skipped."""
    shapes = [tuple(k.shape) for k in common.kernels(layer).values()]
    if m_by_n and any(len(s) not in (2, 4) for s in shapes):
        raise ValueError(f"--m-by-n takes kernels of rank 2 or 4 (Dense, 2-D convolutions), not of shape {shapes}")
    return layer


def prune(reference, model, settings):
    """Prune ``model`` (a copy of the reference or a later stage) with :class:`PruneSettings`
    ``settings``; returns (plain, history, record)."""
    resolved = {}  # the schedule as tfmot got it (steps filled in), for run.json

    def make_wrap(cfg):
        schedule = make_schedule(settings, cfg, common.steps_per_epoch(reference, cfg))
        resolved.update(schedule.get_config()["config"])
        return lambda layer: tfmot.sparsity.keras.prune_low_magnitude(
            common.make_prunable(m_by_n_fits(layer, settings.m_by_n)), pruning_schedule=schedule,
            sparsity_m_by_n=settings.m_by_n)

    def strip(wrapped):
        return common.unhook(tfmot.sparsity.keras.strip_pruning(wrapped))

    plain, history, record = common.run_stage(reference, model, settings, make_wrap, strip,
                                              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    record["pruning"] = {"sparsity": settings.target_sparsity, "schedule": settings.schedule,
                         "tfmot_schedule": resolved}
    return plain, history, record


def used(record):
    """What a pruning stage trained with: its fine-tuning config and tfmot's schedule (steps filled in)."""
    return {**record["finetune"], **record["pruning"]["tfmot_schedule"]}


def run(reference, settings):
    plain, history, record = prune(reference, reference.model, settings)
    return CompressionResult(model=plain, record=record, history=history, resolved=unset_values(settings, used(record)))

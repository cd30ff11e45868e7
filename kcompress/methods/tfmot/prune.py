"""``--method prune``: tfmot magnitude pruning to a target sparsity, fine-tuned, stripped.

Each chosen kernel is wrapped by ``prune_low_magnitude``; the smallest-magnitude weights are
masked to zero on a ``polynomial`` schedule (sparsity rises from 0 at ``--begin-step`` to
the target at ``--end-step``, as in Zhu & Gupta 2017) or a ``constant`` one (the target
from ``--begin-step`` on), or with structured ``--m-by-n`` sparsity. The mask is refreshed
every ``--frequency`` steps while the model is fine-tuned on the reference's own loss;
then the wrappers are stripped and the saved model is a plain Keras model whose kernels
hold exactly the target share of zeros (up to rounding of one weight per layer).
"""
import tensorflow_model_optimization as tfmot

from kcompress.errors import require
from kcompress.methods.base import CompressionResult
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


def prune(reference, model, settings):
    """Prune ``model`` (a copy of the reference or a later stage) with :class:`PruneSettings`
    ``settings``; returns (plain, history, record)."""
    resolved = {}  # the schedule as tfmot got it (steps filled in), for run.json

    def make_wrap(cfg):
        schedule = make_schedule(settings, cfg, common.steps_per_epoch(reference, cfg))
        resolved.update(schedule.get_config()["config"])
        return lambda layer: tfmot.sparsity.keras.prune_low_magnitude(
            layer, pruning_schedule=schedule, sparsity_m_by_n=settings.m_by_n)

    plain, history, record = common.run_stage(reference, model, settings, make_wrap,
                                              tfmot.sparsity.keras.strip_pruning,
                                              callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    record["pruning"] = {"sparsity": settings.target_sparsity, "schedule": settings.schedule,
                         "tfmot_schedule": resolved}
    return plain, history, record


def run(reference, settings):
    plain, history, record = prune(reference, reference.model, settings)
    return CompressionResult(model=plain, record=record, history=history)

"""How the shared training loop executes: several steps per call and XLA, with a fallback.

:func:`choose_execution` picks the path for a ``fit`` (the measurements behind the defaults are in
its docstring); :func:`fit_with_fallback` runs ``model.fit`` on it and, when XLA cannot compile the
step before any step ran, runs again without XLA. The path that ran lands in ``run.json``.
"""
from kcompress.backend import tf
from kcompress.errors import Terminated

STEPS_PER_EXECUTION = 100
# Fewer training steps than this in a run do not repay compiling the step with XLA (1.7-3.8 s for
# LeNet-300-100, which then saves 0.9-2 ms per step): such runs keep the plain graph.
XLA_MIN_STEPS = 1000
# Layers whose training step XLA compiles into something far slower than the plain graph: tfmot's
# clustering wrappers (the sparse gradient of their centroid gather; ~20x slower per epoch, see
# bench/results/README.md, "Execution paths").
XLA_SLOW_LAYERS = ("ClusterWeights", "ClusterWeightsRNN", "ClusterWeightsMHA")
XLA_FAILURES = (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError, tf.errors.InternalError,
                tf.errors.NotFoundError)


def choose_execution(model, callbacks, steps_per_execution=None, jit_compile=None, planned_steps=None):
    """The execution path for training ``model`` with ``callbacks``: several steps per call
    and XLA unless told otherwise, impossible, or not worth it (``planned_steps``, the training
    steps the run will take, under :data:`XLA_MIN_STEPS`).

    Together they cut an epoch of LeNet-300-100 by 37 % (batch 256) to 58 % (batch 64); see
    bench/results/README.md, "Execution paths". A callback with per-batch hooks (tfmot's
    UpdatePruningStep, a batch-wise schedule) would see the batches only in groups, so it
    keeps one step per call; a model with more than one
    replica keeps the plain graph (XLA across replicas is untested here), and so does a model
    with a layer of :data:`XLA_SLOW_LAYERS`.
    """
    hooks = sorted({type(cb).__name__ for cb in callbacks if cb._implements_train_batch_hooks()})
    reasons = []
    if steps_per_execution is None:
        steps_per_execution = 1 if hooks else STEPS_PER_EXECUTION
        if hooks:
            reasons.append(f"one step per call: per-batch callbacks {', '.join(hooks)}")
    if jit_compile is None:
        slow = sorted({type(l).__name__ for l in model._flatten_layers()} & set(XLA_SLOW_LAYERS))
        short = planned_steps is not None and planned_steps < XLA_MIN_STEPS
        jit_compile = model.distribute_strategy.num_replicas_in_sync == 1 and not slow and not short
        if model.distribute_strategy.num_replicas_in_sync > 1:
            reasons.append("no XLA: several replicas")
        elif slow:
            reasons.append(f"no XLA: {', '.join(slow)} trains ~20x slower under XLA")
        elif short:
            reasons.append(f"no XLA: {planned_steps} steps do not repay compiling")
    return {"steps_per_execution": int(steps_per_execution), "jit_compile": bool(jit_compile),
            "reason": "; ".join(reasons)}


def apply_execution(model, execution):
    """Set ``model``'s steps per call and XLA flag; its train function is rebuilt only when
    they change (a rebuild retraces and, under XLA, recompiles: ~0.5 s for LeNet-300-100)."""
    steps, jit = execution["steps_per_execution"], execution["jit_compile"]
    current = model._steps_per_execution
    if bool(model.jit_compile) == jit and current is not None and int(current.numpy()) == steps:
        return
    model.jit_compile = jit
    if current is None:
        model._configure_steps_per_execution(steps)
    else:
        current.assign(steps)
    model.train_function = model.test_function = model.predict_function = None


def fit_with_fallback(model, fit_args, execution):
    """``model.fit(**fit_args)`` on ``execution``'s path; if XLA cannot compile the step
    (an op without an XLA kernel, e.g. in a wrapper layer) before any step ran, run again
    without XLA and note why in ``execution``."""
    apply_execution(model, execution)
    if not execution["jit_compile"]:
        return model.fit(**fit_args)
    start = int(model.optimizer.iterations.numpy())
    try:
        return model.fit(**fit_args)
    except XLA_FAILURES as error:
        if int(model.optimizer.iterations.numpy()) != start or Terminated.requested:
            raise  # a step ran (not a compile failure), or it is a SIGTERM's interrupt in TensorFlow's clothes
        message = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        reason = "; ".join(filter(None, [execution["reason"], f"no XLA: {message}"]))
        execution.update(jit_compile=False, reason=reason)
        apply_execution(model, execution)
        return model.fit(**fit_args)

"""Method ``lc``: the Learning-Compression algorithm (see :mod:`kcompress.lc`).

    python cli.py compress --from models/ref --method lc --out models/lc-p5 \\
        --task "all:prune-l0:kappa=0.05" [--task "dense_3:quant:k=2"] [--tasks-file tasks.yaml] \\
        [--mu0 9e-5 --mu-factor 1.1 --mu-steps 40 | --mu-list 1e-4,1e-3] [--l-epochs 4] [--lr-decay 0.99]

From Python: ``api.compress("models/ref", "lc", out, task=["all:prune-l0:kappa=0.05"], mu_steps=40)``.
The shared flags ``--lr``, ``--optimizer``, ``--momentum``, ``--batch-size`` set the L-steps'
training (default: the reference's, SGD with Nesterov momentum); ``--layers`` says which
layers ``all``/``each`` in a task mean (default: every Dense/Conv2D layer). Codebooks of one
bit per weight need the L-steps to travel further than the reference's rate takes them: on
LeNet-300-100, ``each:quant:k=2`` ends at 7.8 % test error with ``--lr 0.05`` and 6.3 % with
``--lr 0.1`` (``bench/results/compress_lc_row3_batch.md``).
"""
from kcompress.errors import require
from kcompress.lc.algorithm import LC, Schedule
from kcompress.lc.base import REGISTRY
from kcompress.lc.factorize import factorised_model
from kcompress.lc.report import plot_steps
from kcompress.lc.tasks import load_tasks_file, parse_task, resolve
from kcompress.methods.base import CompressionResult, finetune_config, target_layers
from kcompress.objectives import primary_metric

NAME = "lc"
HELP = "Learning-Compression (Carreira-Perpiñán): L-steps with a μ/2‖w − Δ(Θ) − λ/μ‖² penalty, C-steps, multipliers"
SWEEPABLE = ()
DEFAULTS = {"task": None, "tasks_file": None, "mu0": 9e-5, "mu_factor": 1.1, "mu_steps": 40, "mu_list": None,
            "l_epochs": 4, "lr_decay": 0.99, "no_multipliers": False}


def add_arguments(group):
    d = DEFAULTS
    group.add_argument("--task", action="append", metavar="LAYERS:COMPRESSION",
                       help="repeatable; LAYERS = all | each | name[,name...]; COMPRESSION = NAME[:key=value,...] "
                            f"or a sum A+B; names: {', '.join(REGISTRY)}; e.g. all:prune-l0:kappa=0.05, "
                            "each:quant:k=2, dense_2:lowrank:rank=10, all:quant:k=2+prune-l0:kappa=0.01")
    group.add_argument("--tasks-file", metavar="FILE.yaml", help="YAML list of tasks (strings or layers/compression mappings)")
    group.add_argument("--mu0", type=float, default=d["mu0"], help="first μ of the schedule μ0·factor^k")
    group.add_argument("--mu-factor", type=float, default=d["mu_factor"], help="factor between consecutive μ")
    group.add_argument("--mu-steps", type=int, default=d["mu_steps"], help="number of μ steps (L/C steps)")
    group.add_argument("--mu-list", help="explicit comma list of μ values (overrides --mu0/--mu-factor/--mu-steps)")
    group.add_argument("--l-epochs", type=int, default=d["l_epochs"], help="epochs per L-step")
    group.add_argument("--lr-decay", type=float, default=d["lr_decay"], help="L-step learning rate = lr·decay^step")
    group.add_argument("--no-multipliers", action="store_true", help="quadratic-penalty method (no Lagrange multipliers λ)")


def _settings(settings):
    """``settings`` with this method's defaults for whatever is unset."""
    return {k: settings[k] if settings.get(k) is not None else v for k, v in DEFAULTS.items()}


def task_specs(s):
    """The parsed tasks of ``--task`` (a string or a list) and ``--tasks-file``."""
    given = s["task"] or []
    specs = [parse_task(t) for t in ([given] if isinstance(given, str) else given)]
    if s["tasks_file"]:
        specs += load_tasks_file(s["tasks_file"])
    require(specs, "--method lc needs --task (e.g. --task all:prune-l0:kappa=0.05) or --tasks-file")
    return specs


def schedule(s):
    """The μ schedule of ``--mu-list`` or ``--mu0/--mu-factor/--mu-steps``."""
    options = dict(l_epochs=int(s["l_epochs"]), lr_decay=float(s["lr_decay"]), multipliers=not s["no_multipliers"])
    if s["mu_list"]:
        values = s["mu_list"].split(",") if isinstance(s["mu_list"], str) else s["mu_list"]
        try:
            mus = tuple(float(v) for v in values)
        except ValueError:
            require(False, f"--mu-list {s['mu_list']!r}: expected comma-separated numbers")
        return Schedule(mus, **options).validate()
    require(float(s["mu_factor"]) >= 1, f"--mu-factor must be at least 1, got {s['mu_factor']}")
    return Schedule.geometric(s["mu0"], s["mu_factor"], s["mu_steps"], **options).validate()


def run(reference, settings):
    s = _settings(settings)
    require(settings.get("epochs") is None, "--method lc trains --l-epochs per μ step; --epochs does not apply")
    require(settings.get("lr_schedule") in (None, "fixed"), "--method lc decays the rate by --lr-decay per step; "
                                                             "--lr-schedule does not apply")
    require(not settings.get("patience"), "--method lc does not stop early; --patience does not apply")
    specs, sched = task_specs(s), schedule(s)
    model = reference.model
    kernels = {l.name: tuple(l.kernel.shape) for l in model.layers if hasattr(l, "kernel")}
    targets = [l.name for l in target_layers(model, settings.get("layers"))]
    tasks = resolve(specs, kernels, targets)
    cfg = finetune_config(reference, settings, verbose=0)
    lc = LC(model, reference.data, tasks, cfg, sched).run()
    final, factorised = factorised_model(model, tasks)
    record = {**lc.record(), "factorised": factorised}
    ref_error = (reference.run.get("metrics") or {}).get(primary_metric(reference.data.task))
    title = "LC: " + "; ".join(t["task"] for t in record["tasks"])

    def plots(folder):
        plot_steps(record, folder / "lc_steps.png", ref_error, title)

    return CompressionResult(final, record, lc.history, plots)

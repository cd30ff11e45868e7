"""Settings of ``--method lc``: the tasks (what is compressed, how) and the μ schedule.

    kcompress compress --from models/ref --method lc --out models/lc-p5 \\
        --task "all:prune-l0:kappa=0.05" [--task "dense_3:quant:k=2"] [--tasks-file tasks.yaml] \\
        [--mu0 9e-5 --mu-factor 1.1 --mu-steps 40 | --mu-list 1e-4,1e-3] [--l-epochs 4] [--lr-decay 0.99] \\
        [--sweep kappa=0.01,0.02,0.05 [--sweep mu_steps=20,40]]

``--lr``, ``--optimizer``, ``--momentum``, ``--batch-size`` set the L-steps' training (unset: the
reference's, SGD with Nesterov momentum); ``--layers`` says which layers ``all``/``each`` in a
task mean (unset: every Dense/Conv2D layer). Codebooks of one bit per weight need the L-steps to
travel further than the reference's rate takes them: on LeNet-300-100, ``each:quant:k=2`` ends
at 7.8 % test error with ``--lr 0.05`` and 6.3 % with ``--lr 0.1``
(``bench/results/compress_lc_row3_batch.md``).
"""
import math
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import float_list, option, positive, refuse_blank, split_list
from kcompress.errors import require
from kcompress.methods.base import MethodSettings
from kcompress.methods.lc.schedule import Schedule
from kcompress.methods.lc.tasks import load_tasks_file, parse_task, with_param


FLOAT_DECADES = 308  # the largest float is 1.8e308
MAX_MU_STEPS = 10_000  # the papers run 20-100; more is a typo, and its μ list alone would fill memory


def _texts(value):
    return tuple(split_list(value)) if not isinstance(value, str) else (value,)


@dataclass(frozen=True)
class LCSettings(MethodSettings):
    """Tasks (layers → compression) and the μ schedule of the L/C steps."""

    NAME, RUNNER = "lc", "kcompress.methods.lc.method"
    HELP = ("Learning-Compression (Carreira-Perpiñán): L-steps with a μ/2‖w − Δ(Θ) − λ/μ‖² penalty, "
            "C-steps, multipliers")
    BUDGET = "mu_steps"
    # LC pruning, then shared values for the survivors (zeros kept: methods/tfmot/cluster.py), or int8 survivors
    THEN = ("cluster", "qat")
    # keep 1 % (kappa=0.01): 67.9x fewer bits at +0.41 pp on LeNet-300-100 in 40 μ steps (~85 s); the
    # schedule is not searched: in 20 steps μ reaches only 6e-4 and the same task ends at 38 % test error
    SEARCH = {"task": ("all:prune-l0:kappa=0.005", "all:prune-l0:kappa=0.01", "all:prune-l0:kappa=0.02",
                       "all:prune-l0:kappa=0.05", "each:quant:k=2", "each:quant:k=4")}
    # keep 2 %: 36.4x at +0.04 pp on half the sample's test split, 107x followed by 16 shared values (keep 1 %:
    # +0.72 pp there, over a 0.5 pp budget): bench/results/auto_defaults.md
    RECIPE, RECIPE_GAIN = {"task": "all:prune-l0:kappa=0.02"}, 36.4

    task: tuple = option((), "repeatable; LAYERS:COMPRESSION with LAYERS = all | each | name[,name...] and "
                             "COMPRESSION = NAME[:key=value,...] or a sum A+B; e.g. all:prune-l0:kappa=0.05, "
                             "each:quant:k=2, dense_2:lowrank:rank=10, all:quant:k=2+prune-l0:kappa=0.01",
                         parse=_texts, metavar="LAYERS:COMPRESSION", repeat=True)
    tasks_file: Optional[str] = option(None, "YAML list of tasks (strings or layers/compression mappings; unset: "
                                             "the --task flags only)", metavar="FILE.yaml")
    mu0: float = option(9e-5, "first μ of the schedule μ0·factor^k", sweep=True)
    mu_factor: float = option(1.1, "factor between consecutive μ", sweep=True)
    mu_steps: int = option(40, "number of μ steps (L/C steps)", sweep=True)
    mu_list: Optional[tuple] = option(None, "explicit comma list of μ values (unset: --mu0/--mu-factor/--mu-steps)",
                                      parse=float_list("--mu-list"))
    l_epochs: int = option(4, "epochs per L-step", sweep=True)
    lr_decay: float = option(0.99, "L-step learning rate = lr·decay^step", sweep=True)
    multipliers: bool = option(True, "Lagrange multipliers λ (--no-multipliers: the quadratic-penalty method)",
                               sweep=True)
    sweep: tuple = option((), "repeatable; NAME=V1,V2,...: one model per value of a task parameter (kappa, k, "
                              "rank, alpha, ...: replaced in every --task that sets it) or of an LC setting "
                              "(mu_steps, l_epochs, ...); several --sweep flags sweep every combination",
                          parse=_texts, metavar="NAME=V1,V2", repeat=True)

    def check(self):
        super().check()
        require(self.task or self.tasks_file,
                "--method lc needs --task (e.g. --task all:prune-l0:kappa=0.05) or --tasks-file")
        several = [name for name, items in self.sweep_axes({"sweep": self.sweep}).items() if len(items) > 1]
        require(not several, f"--sweep {', '.join(several)}: several values make a sweep, which only "
                             "`compress` runs (one model per value)")
        self.task_specs()
        self.schedule()

    @classmethod
    def sweep_axes(cls, values):
        """``{name: [value, ...]}`` of the ``--sweep NAME=V1,V2`` entries in ``values``."""
        axes, given = {}, values.get("sweep")
        refuse_blank("sweep", given)  # an empty one would read as no sweep at all
        for entry in _texts(given if given is not None else ()):
            name, eq, items = str(entry).partition("=")
            name = name.strip().replace("-", "_")
            require(eq and name and split_list(items), f"--sweep {entry!r}: expected NAME=V1,V2,... "
                                                       "(e.g. kappa=0.01,0.02)")
            require(name not in axes, f"--sweep {name}: given twice")
            require(name in cls.sweepable() or name not in cls.names(),
                    f"--sweep {name}: not a setting a sweep may vary (those: {', '.join(cls.sweepable())})")
            axes[name] = split_list(items)
        return axes

    @classmethod
    def at_point(cls, values, point):
        """The values of one combination: a setting takes its value, a task parameter is
        replaced in every ``--task`` that sets it, and ``sweep`` keeps ``NAME=value`` of each
        ``--sweep`` axis, so that ``run.json`` says which point of the sweep the model is."""
        swept = cls.sweep_axes(values)
        out = {**values, "sweep": tuple(f"{k}={v}" for k, v in point.items() if k in swept)}
        for name, value in point.items():
            if name in cls.names():
                out[name] = value
            else:
                out["task"] = with_param(_texts(out.get("task") or ()), name, value)
        return out

    def task_specs(self):
        """The parsed tasks of ``--task`` and ``--tasks-file`` (exit 2 naming a bad one)."""
        specs = [parse_task(t) for t in self.task]
        return specs + (load_tasks_file(self.tasks_file) if self.tasks_file else [])

    def schedule(self):
        """The μ schedule of ``--mu-list`` or ``--mu0/--mu-factor/--mu-steps``."""
        options = dict(l_epochs=self.l_epochs, lr_decay=self.lr_decay, multipliers=self.multipliers)
        if self.mu_list:
            require(all(math.isfinite(m) and m > 0 for m in self.mu_list),
                    f"--mu-list values must be finite and positive, got {', '.join(map(str, self.mu_list))}")
            return Schedule(self.mu_list, **options).validate()
        positive(self.mu0, "--mu0")
        require(int(self.mu_steps) <= MAX_MU_STEPS, f"--mu-steps {self.mu_steps}: at most {MAX_MU_STEPS} "
                                                    "(each is an L-step of --l-epochs epochs)")
        require(math.isfinite(self.mu_factor) and self.mu_factor >= 1,
                f"--mu-factor must be a finite number >= 1, got {self.mu_factor}")
        # the last μ, mu0·factor^(steps−1), must be a float (factor^k alone overflowed as an internal error)
        power = max(int(self.mu_steps) - 1, 0) * math.log10(self.mu_factor)
        require(max(power, power + math.log10(self.mu0)) < FLOAT_DECADES,
                f"--mu-factor {self.mu_factor:g} over --mu-steps {self.mu_steps} takes μ past 1e{FLOAT_DECADES} "
                "(no float holds it): lower --mu-factor or --mu-steps")
        return Schedule.geometric(self.mu0, self.mu_factor, self.mu_steps, **options).validate()

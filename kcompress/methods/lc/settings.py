"""Settings of ``--method lc``: the tasks (what is compressed, how) and the μ schedule.

    kcompress compress --from models/ref --method lc --out models/lc-p5 \\
        --task "all:prune-l0:kappa=0.05" [--task "dense_3:quant:k=2"] [--tasks-file tasks.yaml] \\
        [--mu0 9e-5 --mu-factor 1.1 --mu-steps 40 | --mu-list 1e-4,1e-3] [--l-epochs 4] [--lr-decay 0.99]

``--lr``, ``--optimizer``, ``--momentum``, ``--batch-size`` set the L-steps' training (unset: the
reference's, SGD with Nesterov momentum); ``--layers`` says which layers ``all``/``each`` in a
task mean (unset: every Dense/Conv2D layer). Codebooks of one bit per weight need the L-steps to
travel further than the reference's rate takes them: on LeNet-300-100, ``each:quant:k=2`` ends
at 7.8 % test error with ``--lr 0.05`` and 6.3 % with ``--lr 0.1``
(``bench/results/compress_lc_row3_batch.md``).
"""
from dataclasses import dataclass

from kcompress.core.settings import float_list, option, positive, split_list
from kcompress.errors import require
from kcompress.methods.base import MethodSettings
from kcompress.methods.lc.schedule import Schedule


def _texts(value):
    return tuple(split_list(value)) if not isinstance(value, str) else (value,)


@dataclass(frozen=True)
class LCSettings(MethodSettings):
    """Tasks (layers → compression) and the μ schedule of the L/C steps."""

    NAME, RUNNER = "lc", "kcompress.methods.lc.method"
    HELP = ("Learning-Compression (Carreira-Perpiñán): L-steps with a μ/2‖w − Δ(Θ) − λ/μ‖² penalty, "
            "C-steps, multipliers")
    BUDGET = "mu_steps"
    # keep 1 % (kappa=0.01): 67.9x fewer bits at +0.41 pp on LeNet-300-100 in 40 μ steps (~85 s); the
    # schedule is not searched: in 20 steps μ reaches only 6e-4 and the same task ends at 38 % test error
    SEARCH = {"task": ("all:prune-l0:kappa=0.005", "all:prune-l0:kappa=0.01", "all:prune-l0:kappa=0.02",
                       "all:prune-l0:kappa=0.05", "each:quant:k=2", "each:quant:k=4")}

    task: tuple = option((), "repeatable; LAYERS:COMPRESSION with LAYERS = all | each | name[,name...] and "
                             "COMPRESSION = NAME[:key=value,...] or a sum A+B; e.g. all:prune-l0:kappa=0.05, "
                             "each:quant:k=2, dense_2:lowrank:rank=10, all:quant:k=2+prune-l0:kappa=0.01",
                         parse=_texts, metavar="LAYERS:COMPRESSION")
    tasks_file: str = option(None, "YAML list of tasks (strings or layers/compression mappings)", metavar="FILE.yaml")
    mu0: float = option(9e-5, "first μ of the schedule μ0·factor^k", sweep=True)
    mu_factor: float = option(1.1, "factor between consecutive μ", sweep=True)
    mu_steps: int = option(40, "number of μ steps (L/C steps)", sweep=True)
    mu_list: tuple = option(None, "explicit comma list of μ values (instead of --mu0/--mu-factor/--mu-steps)",
                            parse=float_list("--mu-list"))
    l_epochs: int = option(4, "epochs per L-step", sweep=True)
    lr_decay: float = option(0.99, "L-step learning rate = lr·decay^step", sweep=True)
    multipliers: bool = option(True, "Lagrange multipliers λ (--no-multipliers: the quadratic-penalty method)",
                               sweep=True)

    def check(self):
        super().check()
        require(self.task or self.tasks_file,
                "--method lc needs --task (e.g. --task all:prune-l0:kappa=0.05) or --tasks-file")
        self.task_specs()
        self.schedule()

    def task_specs(self):
        """The parsed tasks of ``--task`` and ``--tasks-file`` (exit 2 naming a bad one)."""
        from kcompress.methods.lc.tasks import load_tasks_file, parse_task

        specs = [parse_task(t) for t in self.task]
        return specs + (load_tasks_file(self.tasks_file) if self.tasks_file else [])

    def schedule(self):
        """The μ schedule of ``--mu-list`` or ``--mu0/--mu-factor/--mu-steps``."""
        options = dict(l_epochs=self.l_epochs, lr_decay=self.lr_decay, multipliers=self.multipliers)
        if self.mu_list:
            return Schedule(self.mu_list, **options).validate()
        positive(self.mu0, "--mu0")
        require(self.mu_factor >= 1, f"--mu-factor must be at least 1, got {self.mu_factor}")
        return Schedule.geometric(self.mu0, self.mu_factor, self.mu_steps, **options).validate()

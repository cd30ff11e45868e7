"""Settings of the tfmot methods: ``prune``, ``cluster`` and ``prune+cluster``.

The fine-tuning defaults are recipes measured on LeNet-300-100 / the MNIST sample:

- pruning needs the network to *move* weights into the survivors, so it keeps the reference's own
  optimizer and learning rate (SGD + Nesterov at lr 0.05 for models/ref; at 95 %: lr 0.05 +0.2 pp,
  0.02 +0.6 pp, 0.01 +0.8 pp) while the polynomial schedule ramps the sparsity up over the first
  half of the epochs (a plain tfmot recipe measured +1.6 pp at 95 %); a step decay (×0.1 after
  20 epochs) then settles the surviving weights;
- tfmot sums the gradients of all weights sharing a centroid into the centroid's gradient, so a
  centroid's gradient is thousands of times a weight's: plain SGD at lr 1e-2 throws the centroids
  away and LeNet-300-100 falls to chance. Adam scales each variable's step by its own gradient
  size, so at lr 1e-4 the centroids settle near the k-means solution while assignments adjust.

On a learned index (a regression reference) tfmot's wrapper, which re-assigns every weight at every
step, makes ε jump by thousands of positions between epochs and lose it (K = 16: 2,300-4,500 against
the reference's 1,194); weight sharing with *fixed* assignments (:mod:`kcompress.methods.tfmot.fixed_sharing`)
keeps it, with its own recipe: Adam at 3e-3 on batches of 4,096 for 100 epochs, keeping the epoch with
the lowest exact ε (``run.json``: ``best_checkpoint``). ``--assignments auto`` (the default) takes fixed
assignments for a regression reference and tfmot's for a classifier; unset ``--lr``/``--epochs``/
``--batch-size`` take the recipe of the assignments used (:data:`CLUSTER_RECIPES`). A pruned kernel
under fixed assignments starts from a k-means or a symmetric codebook, whichever trains to the lower
error (``--codebook auto``; :func:`kcompress.methods.tfmot.fixed_sharing.initial_codebook` has the
measurements).
"""
from dataclasses import dataclass
from typing import Optional

from kcompress.core.settings import Settings, option, positive
from kcompress.training.config import batch_size
from kcompress.errors import UsageError, require
from kcompress.methods.base import FinetuneSettings

SCHEDULES = ("polynomial", "constant")
CLUSTER_INITS = ("kmeans++", "linear", "density", "random")
ASSIGNMENTS = ("auto", "tfmot", "fixed")
CODEBOOKS = ("auto", "kmeans", "symmetric")
# The clustering stage's fine-tuning by assignments, for the fields left unset (None: the reference's).
CLUSTER_RECIPES = {
    "tfmot": {"lr": 1e-4, "epochs": 10, "batch_size": None, "fixed_stages": 1},
    "fixed": {"lr": 3e-3, "epochs": 100, "batch_size": 4096, "fixed_stages": 4},
}


def parse_m_by_n(value):
    """``--m-by-n 2:4`` -> ``(2, 4)`` as tfmot's ``sparsity_m_by_n`` expects (m zeros of n)."""
    if isinstance(value, (tuple, list)):
        return tuple(int(v) for v in value)
    try:
        m, n = (int(t) for t in str(value).split(":"))
    except ValueError:
        raise UsageError(f"--m-by-n {value!r}: expected M:N such as 2:4") from None
    require(0 < m < n, f"--m-by-n {value}: needs 0 < M < N")
    return m, n


@dataclass(frozen=True)
class PruneSettings(FinetuneSettings):
    """Magnitude pruning to a target sparsity, fine-tuned, stripped."""

    NAME, RUNNER = "prune", "kcompress.methods.tfmot.prune"
    HELP = ("tfmot magnitude pruning to --sparsity (polynomial or constant schedule, or --m-by-n), "
            "fine-tuned, stripped")
    SEARCH = {"sparsity": "0.8:0.98"}  # at 95 % LeNet-300-100 loses 0.2 pp; the gain in bits is in the tail
    THEN = ("qat",)  # int8 kernels that keep the zeros (prune-preserving QAT: methods/qat)
    RECIPE, RECIPE_GAIN = {"sparsity": 0.95}, 15.3

    sparsity: float = option(0.9, "target share of zero weights per pruned kernel, in [0, 1)", sweep=True)
    schedule: str = option("polynomial", "polynomial (gradual, Zhu & Gupta) or constant", choices=SCHEDULES,
                           sweep=True)
    begin_step: int = option(0, "optimizer step where pruning starts")
    end_step: Optional[int] = option(None, "step where the polynomial schedule reaches the target (unset: half the "
                                           "fine-tuning steps)")
    frequency: Optional[int] = option(None, "steps between mask updates (unset: a tenth of an epoch)")
    m_by_n: Optional[tuple] = option(None, "structured N:M sparsity instead of --sparsity, e.g. 2:4 (2 zeros in every "
                                           "4; unset: --sparsity, unstructured)", parse=parse_m_by_n, metavar="M:N")
    epochs: int = option(30, "fine-tuning epochs", sweep=True)
    lr_schedule: str = option("step", "fine-tuning learning-rate schedule", choices=("fixed", "step", "plateau"),
                              sweep=True)
    step_size: int = option(20, "epochs between step decays", sweep=True)

    def check(self):
        super().check()
        require(0.0 <= self.sparsity < 1.0, f"--sparsity must be in [0, 1), got {self.sparsity}")
        require(self.begin_step >= 0, f"--begin-step must be >= 0, got {self.begin_step}")
        for flag, value in (("--end-step", self.end_step), ("--frequency", self.frequency)):
            require(value is None or value > 0, f"{flag} must be positive, got {value}")
        if self.m_by_n:
            m, n = self.m_by_n
            require(self.sparsity in (m / n, self.defaults()["sparsity"]),
                    f"--m-by-n {m}:{n} fixes the sparsity at {m / n:g}; drop --sparsity")
        require(not (self.patience and self.schedule == "polynomial"),
                "--patience: early stopping could restore weights from before the target sparsity was reached; "
                "use it with --schedule constant")

    @property
    def target_sparsity(self):
        """The sparsity reached: ``--sparsity``, or M/N for ``--m-by-n``."""
        return self.m_by_n[0] / self.m_by_n[1] if self.m_by_n else self.sparsity


@dataclass(frozen=True)
class _Clustering(Settings):
    """The weight-sharing fields of ``cluster`` and ``prune+cluster``."""

    clusters: int = option(16, "number K of shared values per kernel (>= 2)", sweep=True)
    cluster_init: str = option("kmeans++", "centroid initialisation of tfmot's assignments", choices=CLUSTER_INITS,
                               sweep=True)
    assignments: str = option("auto", "tfmot: tfmot's wrapper, every weight re-assigned to its nearest value at every "
                                      "step; fixed: assigned once by k-means, then the K values and the biases are "
                                      "trained (Deep Compression); auto: fixed for a regression reference (a learned "
                                      "index, where it keeps ε), tfmot for a classifier", choices=ASSIGNMENTS, sweep=True)
    codebook: str = option("auto", "initial values of fixed assignments: kmeans (1-D k-means on the weights), "
                                   "symmetric (±m values, k-means on |w|); auto: k-means for a dense kernel, and for "
                                   "a pruned one (zeros kept) both, the one with the lower training error kept",
                           choices=CODEBOOKS, sweep=True)

    fixed_stages: Optional[int] = option(None, "fixed assignments made in this many stages, the fine-tuning epochs "
                                               "shared among them: ½, ¾, ⅞ … then all of each kernel's weights take "
                                               "their nearest shared value, the farthest first, while the others "
                                               "train on (INQ); 1: all at once (Deep Compression; unset: 4 with "
                                               "fixed assignments, 1 for the kernels tfmot's assignments leave)",
                                         sweep=True)

    def check(self):
        super().check()
        require(self.clusters >= 2, f"--clusters must be at least 2, got {self.clusters}")
        positive(self.fixed_stages, "--fixed-stages")


@dataclass(frozen=True)
class ClusterSettings(_Clustering, FinetuneSettings):
    """Weight sharing into K values per kernel, fine-tuned, stripped."""

    NAME, RUNNER = "cluster", "kcompress.methods.tfmot.cluster"
    HELP = ("tfmot weight sharing into --clusters K values per kernel (kmeans++/linear/density/random "
            "init), fine-tuned")
    SEARCH = {"clusters": (2, 4, 8, 16)}
    THEN = ("qat",)  # int8 kernels that keep the K values (cluster-preserving QAT: methods/qat)
    RECIPE, RECIPE_GAIN = {"clusters": 16}, 7.9

    optimizer: str = option("adam", "fine-tuning optimizer", choices=("sgd", "adam"), sweep=True)
    lr: Optional[float] = option(None, "fine-tuning learning rate (unset: 1e-4 with tfmot's assignments, 3e-3 with "
                                       "fixed ones)", sweep=True)
    epochs: Optional[int] = option(None, "fine-tuning epochs (unset: 10 with tfmot's assignments, 100 with fixed "
                                         "ones)", sweep=True)
    batch_size: Optional[object] = option(None, "mini-batch size or 'full' (unset: the reference's with tfmot's "
                                                "assignments, 4096 with fixed ones)", parse=batch_size, sweep=True)

    def for_task(self, task):
        """These settings on a reference of ``task``: assignments decided, unset fine-tuning
        fields from :data:`CLUSTER_RECIPES` (what ``run.json`` records)."""
        mode = self.assignments if self.assignments != "auto" else ("fixed" if task == "regression" else "tfmot")
        recipe = {k: v for k, v in CLUSTER_RECIPES[mode].items() if getattr(self, k) is None and v is not None}
        return self.replace(assignments=mode, **recipe)


@dataclass(frozen=True)
class PruneClusterSettings(_Clustering, PruneSettings):
    """Prune (the ``prune`` settings), then sparsity-preserving clustering (``cluster_*``)."""

    NAME, RUNNER = "prune+cluster", "kcompress.methods.tfmot.prune_cluster"
    HELP = ("prune (the --method prune flags), then sparsity-preserving clustering "
            "(--clusters, --assignments, --cluster-init, --cluster-epochs)")
    # 95 % + 4 values: 64x at +0.88 pp. Not K = 2: zero and one shared value cannot hold both signs
    # (LeNet-300-100 fell to chance in the auto search; tfmot refuses it).
    SEARCH = {"sparsity": "0.8:0.98", "clusters": (4, 8, 16)}
    THEN = ("qat",)  # int8 kernels that keep the zeros and the K values
    RECIPE, RECIPE_GAIN = {"sparsity": 0.9, "clusters": 16}, 31.2  # bench/results/auto_defaults.md

    cluster_epochs: Optional[int] = option(None, "fine-tuning epochs of the clustering stage (unset: 10 with tfmot's "
                                                 "assignments, 100 with fixed ones)", sweep=True)

    def check(self):
        super().check()
        positive(self.cluster_epochs, "--cluster-epochs")

    def stages(self):
        """``(PruneSettings, ClusterSettings)`` of the two stages, their fields read by name so that none is
        forgotten: every prune field; every :class:`_Clustering` field, ``--layers``, ``--batch-size``, ``--curve-every`` and
        ``--cluster-epochs`` as the epochs (the optimizer and rate stay the clustering recipe's)."""
        prune = PruneSettings(**self._fields(PruneSettings.names()))
        cluster = ClusterSettings(**self._fields((*_Clustering.names(), "layers", "batch_size", "curve_every")),
                                  epochs=self.cluster_epochs)
        return prune.validate(), cluster.validate()

    def _fields(self, names):
        """``{name: value}`` of these settings' fields ``names``: a stage takes them as they are."""
        return {name: getattr(self, name) for name in names}

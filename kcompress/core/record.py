"""The run record: what a model directory's ``run.json`` holds, as one typed object that every reader
and writer goes through (the file is parsed and checked by :func:`~kcompress.core.modeldir.read_run`).

Every ``train``, ``import`` and ``compress`` writes one; every command taking ``--from``, the
report and the tuner read one. The on-disk format is a flat JSON object: known keys become typed
fields, keys this version does not know (from other versions) are kept in ``extra`` and written
back unchanged, and a field that is None is left out, except ``command`` and ``parent``, whose
null says something (not run from the command line; a reference, with no parent).
"""
import platform
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Optional

from kcompress.core.modeldir import RUN_FILE, read_run, write_json

REFERENCE_KINDS = ("train", "import")  # records of a model that is its own reference (the root of a chain)
ALWAYS = ("command", "parent")  # written even when None
TFLITE_KEYS = ("tflite_bytes", "tflite_gzip_bytes")


@dataclass
class RunRecord:
    """One run: what ran, with what, on which data, what it measured and what it came from."""

    kind: Optional[str] = None  # train, import or compress
    command: Optional[list] = None  # sys.argv of a command-line run
    settings: dict = field(default_factory=dict)  # the settings as given (None: unset, see ``resolved``)
    versions: Optional[dict] = None
    created: Optional[str] = None  # None in the in-memory record of a bare model file or object
    seed: Optional[int] = None
    label: Optional[str] = None  # a sweep's setting ("" for a single compression)
    parent: Optional[str] = None  # the model directory compressed
    root: Optional[dict] = None  # the first reference of a chain: {"path", "bits"}
    data_spec: Optional[dict] = None  # {"data", "val_split", "seed"}: how to load the data again
    source: Optional[dict] = None  # an imported model file: {"path", "weights_sha1"}
    objective: Optional[dict] = None  # head, loss, metric and where each came from
    dataset: Optional[dict] = None
    train: Optional[dict] = None  # the reference's training config (compressions, imports)
    reference_metrics: Optional[dict] = None
    compression: Optional[dict] = None  # core.stats: {"layers": [...], "total": {...}}
    history: Optional[dict] = None
    method: Optional[dict] = None  # what the method recorded about itself
    resolved: Optional[dict] = None  # the values unset settings took in this run
    train_seconds: Optional[float] = None
    compress_seconds: Optional[float] = None
    execution: Optional[dict] = None
    tflite: Optional[dict] = None  # float32 TFLite sizes and the weights_sha1 they were measured on
    metrics: Optional[dict] = None
    weights_sha1: Optional[str] = None
    model_sha1: Optional[str] = None
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they are

    @classmethod
    def new(cls, kind, settings, **values):
        """The record of a run starting now: the command, the library versions and the time added."""
        command = list(sys.argv) if Path(sys.argv[0]).name in ("cli.py", "kcompress") else None
        return cls(kind=kind, command=command, settings=settings, versions=versions(),
                   created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), **values)

    @classmethod
    def from_dict(cls, values):
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in values.items() if k in known},
                   extra={k: v for k, v in values.items() if k not in known})

    @classmethod
    def read(cls, folder, where=None):
        """The record of model directory ``folder``; exit 2 (messages starting with ``where``,
        default ``--from FOLDER``) if it is missing, unreadable or not a kcompress record."""
        return cls.from_dict(read_run(folder, where))

    def to_dict(self):
        """The JSON object of ``run.json``."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**{k: v for k, v in values.items() if v is not None or k in ALWAYS}, **self.extra}

    def write(self, folder):
        write_json(Path(folder) / RUN_FILE, self.to_dict())

    @property
    def is_reference(self):
        """A trained or imported model: the root of any chain compressed from it."""
        return self.kind in REFERENCE_KINDS

    @property
    def method_name(self):
        """The compression method, or ``reference`` for a trained or imported model."""
        return self.settings.get("method", "reference")

    def method_detail(self, key, default=None):
        """One entry of what the method recorded about itself (``tasks`` of LC, ...)."""
        return (self.method or {}).get(key, default)

    @property
    def data_source(self):
        """``{"data", "val_split", "seed"}`` (None if unknown); a trained model's record written before
        ``data_spec`` existed has them in its settings."""
        if self.data_spec is None and self.kind == "train":
            return {"data": self.settings.get("data"), "val_split": self.settings.get("val_split", 0.0),
                    "seed": self.seed or 0}
        return self.data_spec

    @property
    def data_name(self):
        return (self.data_source or {}).get("data")

    @property
    def training(self):
        """The training config the model was made with: ``train`` of a compression or an import, the
        settings of a trained model."""
        return self.train or self.settings

    def metric(self, name, default=None):
        return (self.metrics or {}).get(name, default)

    def reference_metric(self, name, default=None):
        return (self.reference_metrics or {}).get(name, default)

    def objective_of(self, key):
        """One entry of the recorded objective (head, loss, metric, loss_from, metric_from), else None."""
        return (self.objective or {}).get(key)

    @property
    def total_compression(self):
        """The ``total`` of the compression statistics; a reference is 1x its own size (bits_ratio and
        root_bits_ratio 1.0)."""
        base = {"bits_ratio": 1.0, "root_bits_ratio": 1.0} if self.is_reference else {}
        return {**base, **(self.compression or {}).get("total", {})}

    @property
    def layer_compression(self):
        """The per-layer compression statistics (empty for a reference)."""
        return (self.compression or {}).get("layers", [])

    @property
    def root_bits(self):
        """The bits of the chain's first reference (None in records from before roots were recorded)."""
        return (self.root or {}).get("bits")

    @property
    def curves(self):
        """The per-epoch training history (empty when the run trained nothing)."""
        return self.history or {}

    @property
    def tflite_sizes(self):
        """The float32 TFLite sizes and the ``weights_sha1`` they were measured on: ``tflite`` (train,
        import) or the compression's totals; values None when not recorded."""
        total = (self.compression or {}).get("total", {})
        return self.tflite or {k: total.get(k) for k in (*TFLITE_KEYS, "weights_sha1")}


def versions():
    """Versions of the libraries that decide a run's numbers."""
    import importlib.metadata as md  # read only when a record is written

    pkgs = ("kcompress", "tensorflow", "tf-keras", "tensorflow-model-optimization", "keras-tuner", "tf2onnx", "onnxruntime", "ai-edge-litert", "numpy")
    out = {"python": platform.python_version()}
    for p in pkgs:
        try:
            out[p] = md.version(p)
        except md.PackageNotFoundError:
            out[p] = None
    return out

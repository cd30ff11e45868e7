"""The subcommands' parsers, built from the typed settings (no TensorFlow is imported here).

``compress --method NAME`` (and ``tune --method NAME``) get exactly that method's settings as
flags, with that method's defaults in the help; without ``--method``, ``compress --help`` lists
every method's own flags, and the shared training-step flags once.
"""
import argparse

from kcompress.api import DemoSettings
from kcompress.cli.flags import add_settings
from kcompress.core.modelspec import ModelSettings
from kcompress.core.source import Source
from kcompress.errors import UsageError, require
from kcompress.deploy.settings import ExportSettings
from kcompress.methods import REGISTRY, settings_class
from kcompress.methods.base import FinetuneSettings
from kcompress.training.config import TrainConfig
from kcompress.tuning.settings import AutoSettings, TuneSettings, Workers

AUTO = "auto"  # compress --method auto: a search over the registered methods, not one of them

PROG = "kcompress"
EXAMPLES = """examples:
  kcompress train    --model lenet300 --data mnist-sample --epochs 30 --out models/ref
  kcompress compress --from models/ref --method prune --sparsity 0.95 --out models/p95
  kcompress compress --from my.keras --data my.npz --method prune --sparsity 0.8 --out models/my-p80
  kcompress export   --from models/p95 --formats tflite,onnx --out exported/p95
  kcompress report   models/ref models/prune-sweep models/lc-sweep --out reports/mnist
  kcompress demo     # the whole path on the bundled MNIST sample
Each subcommand has --help with its defaults (compress --method NAME --help: that method's).
Exit codes: 0 ok, 2 bad input (a full disk or read-only --out too), 1 failure,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM)."""
AUTO_HELP = ("the smallest --objective within an error budget, by a Keras Tuner search over the methods and their "
             "declared settings (resumable; writes the Pareto front, exports and checks the chosen model)")
STRATEGIES = ("none", "mirrored", "multiworker")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2, and keeps its flags by
    destination (``flags``) for the ``--config`` values that must pass the same types and choices."""

    def __init__(self, *args, **kwargs):
        self.flags = {}
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs):
        return self._kept(super().add_argument(*args, **kwargs))

    def add_argument_group(self, *args, **kwargs):
        group = super().add_argument_group(*args, **kwargs)
        add = group.add_argument
        group.add_argument = lambda *a, **k: self._kept(add(*a, **k))
        return group

    def _kept(self, action):
        self.flags[action.dest] = action
        return action

    def error(self, message):
        sub = self.prog.removeprefix(PROG).strip()  # "compress", or "" for the top-level parser
        raise UsageError(f"{sub}: {message}" if sub else message)


def nonempty(value):
    """An argparse ``type`` for the flags whose text names a file, a folder or a host: refused when empty
    (an unset shell variable), which would otherwise read as "not given" or as the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("empty value")
    return value


def method_name(allowed):
    """An argparse ``type`` for ``--method``: one of ``allowed``, checked as the flag is read, so that an
    unknown name is reported as such rather than as the other method's flags it made "unrecognized"
    (a ``UsageError`` is not one argparse catches: it reaches the CLI as it is)."""
    def check(value):
        require(value in allowed or not nonempty(value), f"unknown --method {value!r} (one of {', '.join(allowed)})")
        return value
    return check


SEED_MAX = 2**32 - 1  # numpy's seeds


def seed(value):
    """``--seed``: an integer in 0..2³²−1, as numpy takes it (else its ValueError was an internal error)."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
    if not 0 <= number <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be in 0..{SEED_MAX}, got {number}")
    return number


def peek(argv, flag):
    """The value of ``flag`` in ``argv`` (``--flag v`` or ``--flag=v``), before any parsing."""
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _common(p):
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=seed, default=argparse.SUPPRESS, help="random seed: the same seed repeats the run "
                                                                       "(default: 0)")
    g.add_argument("--config", type=nonempty, metavar="FILE.yaml", help="YAML file whose keys give any of these flags")
    g.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    g.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up log lines")
    g.add_argument("--tensorboard", type=nonempty, metavar="DIR",
                   help="also write every training epoch's figures (loss, metrics, a method's penalty and gate counts) "
                        "as TensorBoard scalars into DIR, one step per epoch across all of the command's training")


def _out(p, what):
    p.add_argument("--out", type=nonempty, default=argparse.SUPPRESS, help=what)
    p.add_argument("--overwrite", action="store_true", default=argparse.SUPPRESS,
                   help="replace --out if it exists (the old one stays until the new one is complete)")


FROM_HELP = "a model directory, or your own model: a .keras or .h5 file or a SavedModel folder (then give --data)"


def _from(p, what=FROM_HELP, skip=()):
    p.add_argument("--from", dest="from_dir", type=nonempty, default=argparse.SUPPRESS, help=what)
    add_settings(p.add_argument_group("reference: its data, loss and metric"), Source, skip=skip)


def _train_parser(sub):
    p = sub.add_parser("train", help="train a zoo model and write a model directory")
    _out(p, "model directory to write (e.g. models/ref)")
    p.add_argument("--strategy", choices=STRATEGIES, default=argparse.SUPPRESS,
                   help="tf.distribute: mirrored = local GPUs (or KCOMPRESS_CPU_DEVICES logical CPUs); "
                        "multiworker = the processes in TF_CONFIG, each running this command (default: none)")
    add_settings(p.add_argument_group("model and data"), ModelSettings, sweeps=False)
    add_settings(p.add_argument_group("training"), TrainConfig, sweeps=False)
    _common(p)


def _evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="score a model (directory or file) on its (or another) dataset")
    _from(p)
    _common(p)


def _import_parser(sub):
    p = sub.add_parser("import", help="write a model directory from your own model file and data, evaluated once "
                                      "as the reference of later compressions (which then need no --data)")
    p.add_argument("source", type=nonempty, metavar="MODEL", help="a .keras or .h5 file or a SavedModel folder")
    _out(p, "model directory to write (e.g. models/mine)")
    add_settings(p.add_argument_group("its data, loss and metric"), Source)
    _common(p)


def _method_flags(p, method):
    """The flags of ``method``'s settings, or (no method yet) every method's own flags for ``--help``."""
    if method == AUTO:
        add_settings(p.add_argument_group(f"--method {AUTO}: {AUTO_HELP}"), AutoSettings, skip=Workers.names())
        add_settings(p.add_argument_group("distributed search"), Workers)
        return
    if method:
        cls = settings_class(method)
        add_settings(p.add_argument_group(f"--method {method}: {cls.HELP}"), cls)
        return
    added = set(FinetuneSettings.names())
    add_settings(p.add_argument_group("training steps of every method (defaults per method: see "
                                      "--method NAME --help)"), FinetuneSettings,
                 note=lambda f: None if f.default is None else "default: per method")
    for name in REGISTRY:
        cls = settings_class(name)
        add_settings(p.add_argument_group(f"--method {name}: {cls.HELP}"), cls, skip=added)
        added |= set(cls.names())
    add_settings(p.add_argument_group(f"--method {AUTO}: {AUTO_HELP}"), AutoSettings, skip={*added, *Workers.names()})
    add_settings(p.add_argument_group(f"--method {AUTO}: distributed search"), Workers)


def _compress_parser(sub, method):
    p = sub.add_parser("compress", help="compress a trained model with one method (or a sweep)")
    _from(p)
    p.add_argument("--method", type=method_name((*REGISTRY, AUTO)), default=argparse.SUPPRESS,
                   metavar="{" + ",".join([*REGISTRY, AUTO]) + "}",
                   help=f"compression method, or {AUTO}: search them for the best within an error budget")
    _out(p, "model directory to write (a folder of them for sweeps; with auto, the search's folder)")
    _method_flags(p, method)
    _common(p)


def _export_parser(sub):
    p = sub.add_parser("export", help="convert to TFLite/ONNX and verify against Keras")
    _from(p, skip=("loss",))
    _out(p, "folder for the files and report.json")
    add_settings(p.add_argument_group("export"), ExportSettings)
    _common(p)


def _tune_parser(sub, method):
    p = sub.add_parser("tune", help="search hyperparameters with Keras Tuner")
    g = p.add_argument_group("search")
    g.add_argument("--out", type=nonempty, default=argparse.SUPPRESS,
                   help="tuning directory (rerun the same command to resume)")
    g.add_argument("--overwrite", action="store_true", default=argparse.SUPPRESS,
                   help="start the search afresh (the old one stays until the new one is complete)")
    add_settings(g, TuneSettings, skip=Workers.names())
    add_settings(p.add_argument_group("distributed search"), Workers)
    c = p.add_argument_group("compression search (instead of training)")
    c.add_argument("--from", dest="from_dir", type=nonempty, default=argparse.SUPPRESS, help=FROM_HELP + " to compress")
    c.add_argument("--method", type=method_name(tuple(REGISTRY)), default=argparse.SUPPRESS,
                   metavar="{" + ",".join(REGISTRY) + "}",
                   help="compression method whose settings --space searches (its flags fix the others)")
    if method and method != AUTO:
        add_settings(p.add_argument_group("reference: its data, loss and metric"), Source)
        _method_flags(p, method)
    else:
        add_settings(p.add_argument_group("model and data (base settings of training trials)"), ModelSettings, sweeps=False)
        add_settings(p.add_argument_group("training (base settings of training trials)"), TrainConfig, sweeps=False)
    _common(p)


def _report_parser(sub):
    p = sub.add_parser("report", help="one table and error-vs-size figures over model, sweep and tuning folders")
    p.add_argument("dirs", nargs="+", type=nonempty, metavar="DIR",
                   help="model directories, sweep folders or tuning folders")
    p.add_argument("--no-files", dest="files", action="store_false",
                   help="leave out the deployable files' sizes (otherwise each model is converted once to every "
                        "TFLite variant and ONNX, and the smallest file is reported beside the bits)")
    _out(p, "folder for report.md, report.csv and the figures")
    _common(p)


def _demo_parser(sub):
    p = sub.add_parser("demo", help="train, compress and export LeNet-300-100 on the bundled MNIST sample")
    add_settings(p.add_argument_group("demo"), DemoSettings)
    _common(p)


def build_parser(method=None):
    """The whole parser; ``method`` (from ``--method``) picks the method flags of compress and tune."""
    parser = _Parser(prog=PROG, description="Train, tune, compress and export Keras models.", epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    method = method if method in REGISTRY or method == AUTO else None
    for make in (_train_parser, _import_parser, _evaluate_parser, _export_parser, _report_parser, _demo_parser):
        make(sub)
    _compress_parser(sub, method)
    _tune_parser(sub, method)
    parser.commands = sub.choices
    return parser

"""The command line: parse flags, call :mod:`kcompress.api`, print, return an exit code.

Exit codes: 0 success; 2 bad usage or bad input (one line, no traceback unless
``--debug``); 1 internal failure (including a training run that diverged); 130 interrupted.
Every subcommand accepts ``--config FILE.yaml`` whose keys are flag names (``batch-size``
or ``batch_size``); flags given on the command line win over the file.
"""
import argparse
import sys

from kcompress.errors import CheckFailed, TrainingDiverged, UsageError

PROG = "kcompress"
EXAMPLES = """examples:
  kcompress train    --model lenet300 --data mnist-sample --epochs 30 --out models/ref
  kcompress compress --from models/ref --method prune --sparsity 0.95 --out models/p95
  kcompress export   --from models/p95 --format tflite,onnx --out exported/p95
  kcompress demo     # the whole path on the bundled MNIST sample
Each subcommand has --help with its defaults. Exit codes: 0 ok, 2 bad input, 1 failure."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _fmt():
    return argparse.ArgumentDefaultsHelpFormatter


def _common(p):
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed repeats the run")
    p.add_argument("--config", metavar="FILE.yaml", help="YAML file whose keys give any of these flags")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")


def add_train_flags(p, finetune=False):
    """The training flags; with ``finetune`` they default to None (= the method's choice)."""
    d = (lambda v: None) if finetune else (lambda v: v)
    g = p.add_argument_group("fine-tuning (default: the method's choice)" if finetune else "training")
    g.add_argument("--epochs", type=int, default=d(30), help="epochs of training")
    g.add_argument("--batch-size", default=d(64), help="mini-batch size, or 'full' for full-batch")
    g.add_argument("--optimizer", choices=("sgd", "adam"), default=d("sgd"), help="optimizer")
    g.add_argument("--lr", type=float, default=d(0.05), help="(initial) learning rate")
    g.add_argument("--momentum", type=float, default=d(0.9), help="SGD momentum")
    g.add_argument("--lr-schedule", choices=("fixed", "step", "plateau"), default=d("fixed"),
                   help="fixed; step: ×gamma every step-size epochs; plateau: ×gamma when the monitored value stalls")
    g.add_argument("--patience", type=int, default=d(0), help="early-stopping patience in epochs (0 = off)")
    if finetune:
        return
    g.add_argument("--no-nesterov", dest="nesterov", action="store_false", help="plain instead of Nesterov momentum")
    g.add_argument("--gamma", type=float, default=0.1, help="learning-rate factor of step and plateau schedules")
    g.add_argument("--step-size", type=int, default=10, help="epochs between step decays")
    g.add_argument("--plateau-patience", type=int, default=5, help="epochs without improvement before a plateau decay")
    g.add_argument("--monitor", default="val_loss", help="what early stopping and plateau decay watch")
    g.add_argument("--loss", choices=("xent", "mse", "lse"), default=None,
                   help="loss (default: xent for classes, mse for regression); lse = log-sum-exp of |errors|, targets ε")
    g.add_argument("--lse-temperature", type=float, default=1e-3, help="temperature of the lse loss (in target units)")


def add_model_flags(g):
    """The model and data flags of ``train`` (and the base settings of ``tune``)."""
    g.add_argument("--model", default="lenet300", help="lenet300, lenet5, convnet or index64")
    g.add_argument("--data", default="mnist-sample", help="mnist-sample, mnist, keys:DIST:N, keys-file:PATH or PATH.npz")
    g.add_argument("--strict-keys", action="store_true",
                   help="refuse a key file whose keys are unsorted or repeated (default: sort and deduplicate, with a notice)")
    g.add_argument("--hidden", help="hidden Dense widths, e.g. 300,100 ('none' for no hidden layer)")
    g.add_argument("--activation", default="relu", help="hidden-layer activation")
    g.add_argument("--val-split", type=float, default=None,
                   help="share of train held out for validation (default 0.1; 0 for learned-index keys)")


def _train_parser(sub):
    p = sub.add_parser("train", help="train a zoo model and write a model directory", formatter_class=_fmt())
    add_model_flags(p)
    p.add_argument("--out", required=True, help="model directory to write (e.g. models/ref)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none",
                   help="tf.distribute: mirrored = local GPUs (or KCOMPRESS_CPU_DEVICES logical CPUs); "
                        "multiworker = the processes in TF_CONFIG, each running this command")
    add_train_flags(p)
    _common(p)


def _evaluate_parser(sub):
    p = sub.add_parser("evaluate", help="score a model directory on its (or another) dataset", formatter_class=_fmt())
    p.add_argument("--from", dest="from_dir", required=True, help="model directory")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    _common(p)


def _compress_parser(sub):
    from kcompress.methods import REGISTRY, get_method

    p = sub.add_parser("compress", help="compress a trained model with one method", formatter_class=_fmt())
    p.add_argument("--from", dest="from_dir", required=True, help="model directory of the reference")
    p.add_argument("--method", required=True, help=f"compression method: {', '.join(REGISTRY)}")
    p.add_argument("--out", required=True, help="model directory to write (a folder of them for sweeps)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--layers", help="comma-separated layer names to compress (default: the method's choice)")
    add_train_flags(p, finetune=True)
    groups = {}
    for name in REGISTRY:
        mod = get_method(name)
        g = p.add_argument_group(f"--method {name}: {mod.HELP}")
        before = {a.dest for a in p._actions}
        mod.add_arguments(g)
        # SHARED_SETTINGS: dests of flags a method shares with another one that may have defined them first
        groups[name] = [a.dest for a in p._actions if a.dest not in before] + list(getattr(mod, "SHARED_SETTINGS", ()))
    p.set_defaults(_method_keys=groups)
    _common(p)


def _export_parser(sub):
    p = sub.add_parser("export", help="convert to TFLite/ONNX and verify against Keras", formatter_class=_fmt())
    p.add_argument("--from", dest="from_dir", required=True, help="model directory")
    p.add_argument("--format", dest="formats", default="tflite,onnx", help="comma list of tflite, onnx")
    p.add_argument("--tflite-modes", default="float32,dynamic,float16,int8", help="TFLite variants to write")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max |exported − Keras| allowed for float exports")
    p.add_argument("--out", required=True, help="folder for the files and report.json")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _common(p)


def _tune_parser(sub):
    from kcompress import tuning

    p = sub.add_parser("tune", help="search hyperparameters with Keras Tuner", formatter_class=_fmt())
    tuning.add_arguments(p)
    _common(p)


def _demo_parser(sub):
    p = sub.add_parser("demo", help="train, compress and export LeNet-300-100 on the bundled MNIST sample",
                       formatter_class=_fmt())
    p.add_argument("--out", default="models/demo", help="folder for the demo's model directories")
    p.add_argument("--exported", default="exported/demo", help="folder for the demo's exported files")
    p.add_argument("--epochs", type=int, default=30, help="epochs of reference training")
    _common(p)


def build_parser():
    parser = _Parser(prog=PROG, description="Train, tune, compress and export Keras models.", epilog=EXAMPLES,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for make in (_train_parser, _evaluate_parser, _compress_parser, _export_parser, _tune_parser, _demo_parser):
        make(sub)
    return parser


def parse(argv):
    """Parse ``argv``, applying ``--config`` defaults: command-line flags win."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.config:
        sub = parser._subparsers._group_actions[0].choices[args.command]
        sub.set_defaults(**_read_config(args.config, sub))
        args = parser.parse_args(argv)
    return args


def _read_config(path, sub):
    from kcompress.yamlfile import read_yaml

    conf = read_yaml(path, f"--config {path}") or {}
    if not isinstance(conf, dict):
        raise UsageError(f"--config {path}: expected a mapping of flag names to values")
    dests = {a.dest for a in sub._actions}
    conf = {str(k).lstrip("-").replace("-", "_"): v for k, v in conf.items()}
    unknown = sorted(set(conf) - dests)
    if unknown:
        raise UsageError(f"--config {path}: unknown setting(s) {', '.join(unknown)}")
    return conf


def dispatch(args):
    """Call the API function for ``args.command``."""
    from kcompress import api

    v = {k: val for k, val in vars(args).items() if k not in ("command", "config", "debug", "_method_keys")}
    if args.command == "train":
        record = api.train(**v)
        print(_metrics_line("trained", args.out, record["metrics"]))
    elif args.command == "evaluate":
        print(_metrics_line("evaluated", args.from_dir, api.evaluate(args.from_dir, args.data)))
    elif args.command == "compress":
        from kcompress.methods.base import FINETUNE_KEYS

        keep = set(FINETUNE_KEYS) | {"layers"} | set(args._method_keys.get(args.method, ()))
        settings = {k: val for k, val in v.items() if k in keep}
        api.compress(args.from_dir, args.method, args.out, overwrite=args.overwrite, seed=args.seed, **settings)
    elif args.command == "export":
        api.export(**v)
    elif args.command == "tune":
        api.tune(**v)
    elif args.command == "demo":
        api.demo(**v)


def _metrics_line(verb, where, metrics):
    shown = ", ".join(f"{k} {val:.4g}" for k, val in metrics.items() if isinstance(val, float))
    return f"{verb} {where}: {shown}"


# (exception, exit code, what the one-line message calls it); the first match wins.
OUTCOMES = (
    (UsageError, 2, "error"),
    (TrainingDiverged, 1, "training diverged"),
    (CheckFailed, 1, "check failed"),
    (Exception, 1, "internal error"),
)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        dispatch(parse(argv))
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if debug:
            raise
        code, what = next((c, w) for kind, c, w in OUTCOMES if isinstance(e, kind))
        if what == "internal error":
            e = f"{e.__class__.__name__}: {e} (run with --debug for the traceback)"
        print(f"{PROG}: {what}: {e}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())

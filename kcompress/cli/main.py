"""The command line: parse flags, call :mod:`kcompress.api`, print, return an exit code.

Exit codes: 0 success; 2 bad usage or bad input (one line, no traceback unless ``--debug``);
1 internal failure (including a training run that diverged); 130 interrupted. Every subcommand
accepts ``--config FILE.yaml`` whose keys are flag names (``batch-size`` or ``batch_size``);
flags given on the command line win over the file. Building the parser imports no TensorFlow:
``--help`` and usage errors answer at once.
"""
import contextlib
import logging
import os
import sys

from kcompress.cli.parsers import build_parser, peek
from kcompress.errors import CheckFailed, TrainingDiverged, UsageError, require

PROG = "kcompress"
RUN_KEYS = ("command", "config", "debug", "verbose")


def parse(argv):
    """``(command, values)``: the subcommand and every setting given, ``--config`` file first,
    then the command line on top."""
    conf = _read_config(peek(argv, "--config")) if peek(argv, "--config") else {}
    method = peek(argv, "--method") or conf.get("method")
    parser = build_parser(method)
    args = parser.parse_args(argv)
    given_values = {k: v for k, v in vars(args).items() if k not in RUN_KEYS}
    known = {a.dest for a in parser.commands[args.command]._actions} - set(RUN_KEYS)
    unknown = sorted(set(conf) - known)
    require(not unknown, f"--config {args.config}: unknown setting(s) {', '.join(unknown)} for {args.command}")
    if args.verbose:
        os.environ["KCOMPRESS_VERBOSE"] = "1"
    return args.command, {**conf, **given_values}


def _read_config(path):
    from kcompress.core.yamlfile import read_yaml

    conf = read_yaml(path, f"--config {path}") or {}
    require(isinstance(conf, dict), f"--config {path}: expected a mapping of flag names to values")
    conf = {str(k).lstrip("-").replace("-", "_"): v for k, v in conf.items()}
    if "from" in conf:
        conf["from_dir"] = conf.pop("from")
    return conf


def _required(values, *names):
    for name in names:
        require(values.get(name) not in (None, ""), f"--{name.replace('_dir', '').replace('_', '-')} is required")


def dispatch(command, v):
    """Call the API function for ``command`` with the settings ``v``; a command that writes
    ``--out`` takes its lock first, so that a second writer exits at once, before TensorFlow loads."""
    from kcompress.core.modeldir import out_lock

    writes = command in ("train", "import", "compress", "export", "report") and v.get("out") and v.get("strategy") != "multiworker"
    writes = writes and v.get("method") != "auto"  # a search locks its own --out (not on a worker)
    with out_lock(v["out"]) if writes else contextlib.nullcontext():
        _call(command, v)


def _call(command, v):
    from kcompress import api

    seed = v.pop("seed", 0)
    if command == "train":
        _required(v, "out")
        out = v.pop("out")
        print(_metrics_line("trained", out, api.train(out, seed=seed, **v)["metrics"]))
    elif command == "import":
        _required(v, "out")
        api.import_model(v.pop("source"), v.pop("out"), v.pop("data", None), overwrite=v.pop("overwrite", False), **v)
    elif command == "evaluate":
        _required(v, "from_dir")
        print(_metrics_line("evaluated", v["from_dir"], api.evaluate(v.pop("from_dir"), **v)))
    elif command == "compress":
        _required(v, "from_dir", "method", "out")
        api.compress(v.pop("from_dir"), v.pop("method"), v.pop("out"), overwrite=v.pop("overwrite", False),
                     seed=seed, **v)
    elif command == "export":
        _required(v, "from_dir", "out")
        api.export(v.pop("from_dir"), v.pop("out"), seed=seed, **v)
    elif command == "report":
        _required(v, "out")
        api.report(v["dirs"], v["out"], overwrite=v.get("overwrite", False))
    elif command == "tune":
        _required(v, "out")
        api.tune(v.pop("out"), seed=seed, **v)
    elif command == "demo":
        api.demo(seed=seed, **v)


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
        dispatch(*parse(argv))
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


def run():
    """The ``kcompress`` console script: :func:`main`, then leave at once.

    Once TensorFlow is loaded, the interpreter's normal exit (module teardown, TensorFlow's
    thread pools and static destructors) took 1.6 s after the last file was written (issue 13,
    LeNet-300-100 LC run); every file is closed by then, so the process flushes its streams
    and exits without it. ``main`` itself returns normally for in-process callers."""
    code = main()
    if "tensorflow" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(run())

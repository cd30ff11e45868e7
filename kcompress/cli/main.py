"""The command line: parse flags, call :mod:`kcompress.api`, print, return an exit code.

Exit codes: 0 success; 2 bad usage or bad input (one line, no traceback unless ``--debug``), a full
disk, a read-only or forbidden folder included; 1 internal failure (including a training run that
diverged); 130 interrupted (Ctrl-C), 143 terminated (SIGTERM, handled like Ctrl-C). Every subcommand
accepts ``--config FILE.yaml`` whose keys are flag names (``batch-size`` or ``batch_size``);
flags given on the command line win over the file. Building the parser imports no TensorFlow:
``--help`` and usage errors answer at once.
"""
import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
import threading

from kcompress import api
from kcompress.cli.parsers import build_parser, peek
from kcompress.core.modeldir import out_lock
from kcompress.core.yamlfile import read_yaml
from kcompress.errors import CheckFailed, Terminated, TrainingDiverged, UsageError, require
from kcompress.training.tensorboard import logging_to

PROG = "kcompress"
RUN_KEYS = ("command", "config", "debug", "verbose", "tensorboard")


def parse(argv):
    """``(command, values)``: the subcommand and every setting given, ``--config`` file first,
    then the command line on top."""
    conf = _read_config(peek(argv, "--config")) if peek(argv, "--config") else {}
    method = peek(argv, "--method") or conf.get("method")
    require(not isinstance(method, (list, dict, bool)), f"--config {peek(argv, '--config')}: --method: expected one "
                                                        f"value, got {method!r}")
    method = None if method is None else str(method)
    parser = build_parser(method)
    args = parser.parse_args(argv)
    given_values = {k: v for k, v in vars(args).items() if k not in RUN_KEYS}
    flags = parser.commands[args.command].flags
    unknown = sorted(set(conf) - (set(flags) - {"help", "config", "debug", "verbose"}))
    require(not unknown, f"--config {args.config}: unknown setting(s) {', '.join(unknown)} for {args.command}")
    conf = {k: _checked(flags[k], v, args.config) for k, v in conf.items()}
    if args.verbose:
        os.environ["KCOMPRESS_VERBOSE"] = "1"
    tensorboard = args.tensorboard or conf.pop("tensorboard", None)  # a run option, not a setting: only when given
    return args.command, {**conf, **given_values, **({"tensorboard": tensorboard} if tensorboard else {})}


def _checked(action, value, path):
    """A ``--config`` value of a flag that is not a settings field (``seed``, ``out``, ``method``...: those are
    checked by their settings class) put through the flag's own type and choices, as on the command line."""
    flag = action.option_strings[0] if action.option_strings else action.dest
    if action.nargs == 0:
        require(isinstance(value, bool), f"--config {path}: {flag}: expected true or false, got {value!r}")
        return value
    if action.type is None and not action.choices:
        return value
    require(not isinstance(value, (list, dict, bool)) and value is not None,
            f"--config {path}: {flag}: expected one value, got {value!r}")
    try:
        value = action.type(str(value)) if action.type else str(value)
    except (argparse.ArgumentTypeError, ValueError, TypeError) as e:
        raise UsageError(f"--config {path}: {flag}: {e}") from None
    if action.choices and value not in action.choices:
        raise UsageError(f"--config {path}: {flag}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _read_config(path):
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
    writes = command in ("train", "import", "compress", "export", "report") and v.get("out") and v.get("strategy") != "multiworker"
    writes = writes and v.get("method") != "auto"  # a search locks its own --out (not on a worker)
    out = v.get("out")
    with out_lock(v["out"]) if writes else contextlib.nullcontext(), logging_to(v.pop("tensorboard", None)):
        try:
            _call(command, v)
        except Exception as e:
            reason = _system_refusal(e)
            if reason is None:
                raise
            path = getattr(e, "filename", None)
            if path:
                raise UsageError(f"{path}: {reason}" + (f" (--out {out})" if out else "")) from e
            raise UsageError(f"--out {out}: {reason}" if out else reason) from e


# What the system refuses for the user's reasons: full disk or quota, read-only or forbidden folder.
REFUSALS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _system_refusal(e):
    """The reason (``No space left on device``) if ``e`` is the system refusing a file for one of the
    :data:`REFUSALS`, else ``None``. TensorFlow's own file writes (a training checkpoint) raise its
    ``OpError`` classes and h5py an ``OSError`` without errno: both carry the reason in their message."""
    if isinstance(e, OSError) and e.errno is not None:
        return os.strerror(e.errno) if e.errno in REFUSALS else None
    if isinstance(e, OSError) or type(e).__module__.startswith("tensorflow"):
        return next((os.strerror(n) for n in REFUSALS if os.strerror(n) in str(e)), None)
    return None


def _call(command, v):
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
        api.report(v["dirs"], v["out"], overwrite=v.get("overwrite", False), files=v.get("files", True))
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


# Seconds between reminders while a SIGTERM has not yet stopped the command (see sigterm_as_interrupt).
REMIND_SECONDS = 0.5


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Turn SIGTERM into :class:`~kcompress.errors.Terminated` (a ``KeyboardInterrupt``) in the main
    thread for the block, so that ``kill PID`` cleans up like Ctrl-C: the lock, the staging folder and
    every other ``finally`` run, and a training checkpoint stays for the rerun to resume from. Without
    it SIGTERM ended the process on the spot, leaving the lock and the staging folder beside ``--out``.

    Python runs the handler in the main thread between bytecodes, so a long TensorFlow call finishes
    first (at most one ``fit`` call of up to 100 steps). Raised inside C code that calls Python, the
    exception can be lost or turned into another error (in ~1 of 20 LC runs killed at random moments:
    once the command ran on and exited 0, once it exited 1 on pybind11's ``RuntimeError``). Hence:
    any error that leaves the block after a SIGTERM is the termination; after the first SIGTERM a
    reminder goes to the main thread every :data:`REMIND_SECONDS`, and the handler raises again if the
    first one was swallowed (no exception in flight) and stays quiet while one propagates (the cleanup
    runs undisturbed); a command that still reaches its end exits 143 all the same. The previous
    handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    left, reminder, raised = threading.Event(), [], []

    def remind():
        while not left.wait(REMIND_SECONDS):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    def terminate(signum, frame):
        Terminated.requested = True
        if not reminder:
            reminder.append(threading.Thread(target=remind, name="kcompress-sigterm", daemon=True))
            reminder[0].start()
        if left.is_set() or (raised and sys.exc_info()[1] is not None):
            return  # stopping already: let the cleanup run
        raised.append(True)
        raise Terminated()

    Terminated.requested = False
    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
        if Terminated.requested:
            raise Terminated()  # the interrupt was swallowed and the command ran to its end
    except Exception as e:
        if Terminated.requested:
            raise Terminated() from e
        raise
    finally:
        left.set()
        if reminder:
            reminder[0].join()
        Terminated.requested = False
        signal.signal(signal.SIGTERM, previous)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        with sigterm_as_interrupt():
            dispatch(*parse(argv))
        return 0
    except Terminated:
        print(f"{PROG}: terminated", file=sys.stderr)
        return 143
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
    thread pools and static destructors) took 1.6 s after the last file was written (a
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

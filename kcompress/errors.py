"""Errors that the CLI turns into exit codes.

``UsageError``: the user's input is wrong (bad flag, missing file, shapes that don't fit);
exit code 2 with one line, never a traceback. ``TrainingDiverged``: training produced NaN;
exit code 1 with a clear message. ``CheckFailed``: a verification failed (exit 1).
``Terminated``: SIGTERM, raised like Ctrl-C's ``KeyboardInterrupt`` so that the same cleanup runs
(exit 143; Ctrl-C exits 130).
"""


class UsageError(Exception):
    """Bad usage or bad input: the CLI prints one line and exits with code 2."""


class CheckFailed(RuntimeError):
    """A verification failed (e.g. an exported file disagrees with Keras): exit code 1."""


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: a ``KeyboardInterrupt``, so every ``finally`` and interrupt path that cleans up
    after Ctrl-C (the lock, the staging folder) runs for it too; the CLI exits 143 instead of 130.

    ``requested`` is true from the signal until the command has stopped. An exception raised by a
    signal handler while C code runs Python (TensorFlow's ``nest`` importing a module, a pybind11
    callback) comes out as another error (seen: ``SystemError`` then ``RuntimeError`` from pybind11) or
    not at all; while ``requested``, an error is the stop, not a failure: no XLA fallback retries the
    step, and a training run keeps its checkpoint."""

    requested = False


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run was stopped and nothing was saved."""


def require(condition, message):
    """Raise ``UsageError(message)`` unless ``condition`` holds."""
    if not condition:
        raise UsageError(message)

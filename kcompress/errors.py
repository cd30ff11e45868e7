"""Errors that the CLI turns into exit codes.

``UsageError``: the user's input is wrong (bad flag, missing file, shapes that don't fit);
exit code 2 with one line, never a traceback. ``TrainingDiverged``: training produced NaN;
exit code 1 with a clear message. ``CheckFailed``: a verification failed (exit 1).
"""


class UsageError(Exception):
    """Bad usage or bad input: the CLI prints one line and exits with code 2."""


class CheckFailed(RuntimeError):
    """A verification failed (e.g. an exported file disagrees with Keras): exit code 1."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the run was stopped and nothing was saved."""


def require(condition, message):
    """Raise ``UsageError(message)`` unless ``condition`` holds."""
    if not condition:
        raise UsageError(message)

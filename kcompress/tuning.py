"""Placeholder replaced by the Keras Tuner work (issue 7)."""


def add_arguments(p):
    pass


def tune(**settings):
    from kcompress.errors import UsageError

    raise UsageError("tune is not available yet")

"""Spreading training over devices and processes with ``tf.distribute``.

 ``train --strategy mirrored`` replicates the model over the local GPUs, or over
the CPU's logical devices when there is no GPU (``KCOMPRESS_CPU_DEVICES=N`` splits the CPU
into N before TensorFlow starts); ``--strategy multiworker`` trains over the processes that
``TF_CONFIG`` names. Every worker runs the same command; only the chief writes ``--out``.
"""
import json
import os
import shutil
import tempfile
from pathlib import Path

from kcompress.errors import require

STRATEGIES = ("none", "mirrored", "multiworker")


def make_strategy(name):
    """The ``tf.distribute`` strategy for ``--strategy name`` (the default strategy for ``none``)."""
    require(name in STRATEGIES, f"unknown --strategy {name!r} (one of {', '.join(STRATEGIES)})")
    if name == "multiworker":
        require(os.environ.get("TF_CONFIG"), "--strategy multiworker needs TF_CONFIG naming the workers")
    _split_cpu()
    from kcompress.backend import tf  # TensorFlow loads only when work needs it

    if name == "none":
        return tf.distribute.get_strategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
        d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)


def _split_cpu():
    """Give the CPU ``KCOMPRESS_CPU_DEVICES`` logical devices (only possible before TF starts)."""
    n = int(os.environ.get("KCOMPRESS_CPU_DEVICES", "0") or 0)
    if n <= 1:
        return
    from kcompress.backend import tf  # TensorFlow loads only when work needs it

    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or ()) != n:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)


def is_chief_worker():
    """True unless ``TF_CONFIG`` makes this process a non-chief worker of a multi-worker run."""
    conf = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = conf.get("task", {})
    workers = conf.get("cluster", {})
    if task.get("type") == "chief" or not task:
        return True
    return task.get("type") == "worker" and int(task.get("index", 0)) == 0 and "chief" not in workers


def worker_out(out, strategy_name):
    """Where this process writes ``--out``: the real folder on the chief, a scratch one elsewhere."""
    if strategy_name != "multiworker" or is_chief_worker():
        return out
    return Path(tempfile.mkdtemp(prefix="kcompress-worker-")) / Path(out).name


def discard_worker_copy(out, written):
    """Remove a non-chief worker's scratch output (``written`` differs from ``out`` only there)."""
    if Path(written) != Path(out):
        shutil.rmtree(Path(written).parent, ignore_errors=True)

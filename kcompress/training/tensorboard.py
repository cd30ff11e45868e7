"""TensorBoard scalars of every training epoch a command runs: one event file whose step counts epochs
across all of the command's ``fit`` calls (LC's L-steps, the α values, the pruner's phases, the stages
of prune+cluster), so that their curves continue rather than overwrite each other, as Keras's own
TensorBoard callback would with each ``fit`` starting at epoch 0. TensorFlow loads only when logging.
Scalars are written with ``tf.summary.write`` and the scalars plugin's metadata, as ``tf.summary.scalar``
does, which needs the tensorboard package installed: viewing the logs needs it, writing them does not."""
import contextlib
import math

_active = []  # [writer, epochs logged] of the innermost logging_to block


@contextlib.contextmanager
def logging_to(folder):
    """Log every epoch of the block's training runs into ``folder`` (None: nothing is logged)."""
    if not folder:
        yield
        return
    from kcompress.backend import tf

    writer = tf.summary.create_file_writer(str(folder))
    _active.append([writer, 0])
    try:
        yield
    finally:
        _active.pop()
        writer.close()


def callbacks():
    """``[callback]`` writing each epoch's logs (loss, metrics, a penalty, the gates' counts) as scalars,
    or ``[]`` outside :func:`logging_to`."""
    if not _active:
        return []
    from kcompress.backend import keras, tf

    state = _active[-1]
    SummaryMetadata = tf.compat.v1.SummaryMetadata
    scalar = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()

    class EpochScalars(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            writer, step = state
            with writer.as_default():
                for name, value in (logs or {}).items():
                    if isinstance(value, (int, float)) and math.isfinite(value) or hasattr(value, "numpy"):
                        tf.summary.write(name, tf.constant(float(value)), step=step, metadata=scalar)
            writer.flush()
            state[1] += 1

    return [EpochScalars()]

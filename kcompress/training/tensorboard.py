"""TensorBoard scalars of every training epoch a command runs: one event file whose step counts epochs
across all of the command's ``fit`` calls (LC's L-steps, the α values, the pruner's phases, the stages
of prune+cluster), so that their curves continue rather than overwrite each other, as Keras's own
TensorBoard callback would with each ``fit`` starting at epoch 0. TensorFlow loads only when logging.
Scalars are written with ``tf.summary.write`` and the scalars plugin's metadata, as ``tf.summary.scalar``
does, which needs the tensorboard package installed: viewing the logs needs it, writing them does not."""
import contextlib
import math

_active = []  # [folder, writer, epochs logged] of the innermost logging_to block


@contextlib.contextmanager
def logging_to(folder):
    """Log every epoch of the block's training runs into ``folder`` (None: nothing is logged). The folder is
    made when the first epoch ends: a command refused before it trains leaves nothing."""
    if not folder:
        yield
        return
    state = [str(folder), None, 0]
    _active.append(state)
    try:
        yield
    finally:
        _active.pop()
        if state[1] is not None:
            state[1].close()


def callbacks():
    """``[callback]`` writing each epoch's logs (loss, metrics, a penalty, the gates' counts) as scalars,
    or ``[]`` outside :func:`logging_to`."""
    if not _active:
        return []
    from kcompress.backend import keras, tf  # TensorFlow loads only when work needs it

    state = _active[-1]
    SummaryMetadata = tf.compat.v1.SummaryMetadata
    scalar = SummaryMetadata(plugin_data=SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()

    class EpochScalars(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if state[1] is None:
                state[1] = tf.summary.create_file_writer(state[0])
            _, writer, step = state
            with writer.as_default():
                for name, value in (logs or {}).items():
                    if isinstance(value, (int, float)) and math.isfinite(value) or hasattr(value, "numpy"):
                        tf.summary.write(name, tf.constant(float(value)), step=step, metadata=scalar)
            writer.flush()
            state[2] += 1

    return [EpochScalars()]

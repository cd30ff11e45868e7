"""A user's own model as a reference: which files are models, what they say about their loss,
and loading them with no code from the file running.

``--from`` takes a model directory (``model.keras`` + ``run.json``, written by kcompress), a
``.keras`` file, an ``.h5`` file or a SavedModel folder. A bare model (a file, or a model object in
Python) carries no data and no record, so it needs ``--data``; :class:`Source` holds that and the
loss and metric to judge it by. Before TensorFlow loads, the file's own configuration is read
(the zip's ``config.json`` or the HDF5 ``model_config``): a ``Lambda`` layer or a class Keras does
not know is refused with one line, and the loss compiled into the file is found.
"""
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kcompress.core.data import check_spec
from kcompress.core.modeldir import MODEL_FILE, RUN_FILE, check_out_dir, is_model_dir
from kcompress.core.settings import Settings, option
from kcompress.core.tasks import LOSSES, METRICS
from kcompress.errors import UsageError, require

# Keras loss identifiers (as compiled into a file) -> kcompress loss names
KERAS_LOSSES = {
    "sparse_categorical_crossentropy": "xent", "categorical_crossentropy": "xent", "binary_crossentropy": "xent",
    "sparsecategoricalcrossentropy": "xent", "categoricalcrossentropy": "xent", "binarycrossentropy": "xent",
    "mean_squared_error": "mse", "mse": "mse", "meansquarederror": "mse",
    "mean_absolute_error": "mae", "mae": "mae", "meanabsoluteerror": "mae",
    "logsumexperror": "lse", "kcompress>logsumexperror": "lse",
}
# Layers that run code from the file: never loaded (Keras' safe mode refuses them too, with a traceback)
UNSAFE_LAYERS = ("Lambda",)


@dataclass(frozen=True)
class Source(Settings):
    """The data, loss and metric of a reference; unset: what its model directory recorded, or for a
    bare model file what the file and its output layer imply."""

    data: Optional[str] = option(None, "dataset: mnist-sample, mnist, keys:DIST:N, keys-file:PATH or PATH.npz "
                                       "(needed with a model file; unset: the data the model directory was made with)")
    loss: Optional[str] = option(None, "loss of fine-tuning (unset: the model directory's; for a model file the loss "
                                       "compiled into it, else xent for classes, mse for regression)", choices=LOSSES)
    metric: Optional[str] = option(None, "headline metric (unset: the model directory's; else error % for classes, "
                                         "max_error (ε) for keys, mse for other regression)", choices=METRICS)


def model_kind(path):
    """``dir`` (a model directory), ``keras``, ``h5`` or ``savedmodel``; exit 2 for anything else."""
    path = Path(path)
    require(path.exists(), f"--from {path}: no such file or directory")
    if path.is_dir():
        if is_model_dir(path):
            return "dir"
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        require(not Path(path, MODEL_FILE).is_file(), f"--from {path}: a folder holding {MODEL_FILE} but no {RUN_FILE}: "
                                                      f"give the file itself (--from {path / MODEL_FILE}) with --data")
        raise UsageError(f"--from {path}: not a model directory ({MODEL_FILE} + {RUN_FILE}) nor a SavedModel folder")
    if zipfile.is_zipfile(path):
        return "keras"
    with open(path, "rb") as f:
        if f.read(8) == b"\x89HDF\r\n\x1a\n":
            return "h5"
    raise UsageError(f"--from {path}: not a Keras model file (.keras zip or .h5), a SavedModel folder or a model directory")


def check_inputs(source=None, out=None, overwrite=False, data=None):
    """Exit 2, before TensorFlow loads, for what paths and file headers already tell: a ``--from`` that is no
    model (or a file model that would run code, or one given without ``data``), a ``data`` spec that cannot
    load, an ``--out`` that exists or overlaps ``--from``."""
    if isinstance(source, (str, Path)):
        kind = model_kind(source)
        if kind != "dir":
            check_safe(source, file_config(source, kind)[0])
            require(data is not None, f"--from {source}: a bare model carries no data; give --data (mnist-sample, "
                                      "keys:DIST:N, PATH.npz, ...)")
    if isinstance(data, str):
        check_spec(data)
    if out is not None:
        check_out_dir(out, overwrite, sources=(source,) if source is not None else ())


def file_config(path, kind):
    """``(model config, compile config)`` stored in a model file, read without TensorFlow
    (``None`` where the file has none); exit 2 if the file is damaged."""
    try:
        if kind == "keras":
            with zipfile.ZipFile(path) as z:
                doc = json.loads(z.read("config.json"))
            return doc, doc.get("compile_config")
        if kind == "h5":
            import h5py

            with h5py.File(path, "r") as f:
                model = f.attrs.get("model_config")
                training = f.attrs.get("training_config")
            return (json.loads(model) if model is not None else None,
                    json.loads(training) if training is not None else None)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as e:
        raise UsageError(f"--from {path}: not a readable Keras {kind} file ({e.__class__.__name__}: {e})") from None
    return None, None


def layer_classes(config):
    """Every ``class_name`` of a layer in a model config, nested models included."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "class_name" in node and isinstance(node.get("config"), dict) and "layers" in node["config"]:
                for layer in node["config"]["layers"]:
                    found.append(layer.get("class_name"))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def check_safe(path, config):
    """Exit 2 for a model whose file would run code when loaded (a ``Lambda`` layer)."""
    unsafe = sorted({c for c in layer_classes(config or {}) if c in UNSAFE_LAYERS})
    require(not unsafe, f"--from {path}: the model has a {', '.join(unsafe)} layer, whose code would run from the "
                        "file; kcompress loads models in safe mode (rebuild it with standard layers)")


def compiled_loss(compile_config):
    """The kcompress loss name of a loss compiled into a file (None: none, several, or unknown)."""
    loss = (compile_config or {}).get("loss")
    if isinstance(loss, dict) and "class_name" in loss:
        name = loss.get("registered_name") or loss["class_name"]
    elif isinstance(loss, str):
        name = loss
    else:
        return None
    return KERAS_LOSSES.get(str(name).lower())


def compiled_optimizer(compile_config):
    """``{"optimizer": sgd|adam, "lr": ..., "momentum": ...}`` of the optimizer compiled into a file, if it is one
    kcompress fine-tunes with (else ``{}``)."""
    opt = (compile_config or {}).get("optimizer_config") or (compile_config or {}).get("optimizer")
    if not isinstance(opt, dict):
        return {}
    name, conf = str(opt.get("class_name", "")).split(">")[-1].lower(), opt.get("config") or {}
    lr = conf.get("learning_rate")
    if name not in ("sgd", "adam") or not isinstance(lr, (int, float)):
        return {}
    found = {"optimizer": name, "lr": float(lr)}
    if name == "sgd":
        found.update(momentum=float(conf.get("momentum", 0.0)), nesterov=bool(conf.get("nesterov", False)))
    return found


def load_model_file(path, kind):
    """The Keras model in file ``path`` (safe mode, not compiled); exit 2 if Keras cannot load it."""
    from kcompress.backend import keras  # TensorFlow loads only when work needs it

    try:
        if kind == "savedmodel":
            return keras.models.load_model(path, compile=False)
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as e:  # Keras raises many kinds for a file it cannot read
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise UsageError(f"--from {path}: Keras cannot load it ({e.__class__.__name__}: {first}); a custom layer "
                         "must be registered with keras.saving.register_keras_serializable in your own script") from None

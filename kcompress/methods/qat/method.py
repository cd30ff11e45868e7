"""``--method qat``: tfmot quantization-aware training, an int8 TFLite file, and the plain model it computes.

1. The layers tfmot's default 8-bit scheme quantizes are annotated (``--layers`` narrows the choice):
   those its registry supports (Dense, Conv2D, DepthwiseConv2D, activations, pooling, Add, ...), and a
   BatchNormalization right after a linear Conv2D/DepthwiseConv2D/Dense, which tfmot's layout transform
   folds into that layer. A SeparableConv2D is first split into a DepthwiseConv2D and a 1×1 Conv2D
   named ``NAME_depthwise``/``NAME_pointwise`` (what tfmot's own transform does, but under names that map
   back). Every other layer (a custom layer, Conv1D, a BatchNormalization after a merge) is left in float,
   named in one ``[qat] left in float: ...`` line and ``run.json``'s ``layers.float``.
2. ``--preserve`` picks tfmot's scheme: ``none`` → ``Default8BitQuantizeScheme``; ``sparsity`` →
   ``Default8BitPrunePreserveQuantizeScheme`` (each kernel's zeros masked at every step); ``clusters`` /
   ``both`` → ``Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False/True)``. ``auto`` reads the
   quantized kernels (:func:`resolve_preserve`). tfmot takes a clustered kernel's shared values to be its
   *distinct* values (``tf.unique``; per output channel for a Conv2D when the channels' counts differ by at
   most one), up to 1,024 of them: the plain kernels of ``cluster``/``prune+cluster`` are in that form already.
   tfmot preserves clusters and zeros in Dense and Conv2D kernels only (not a DepthwiseConv2D's).
3. The QAT model is fine-tuned with the reference's loss by the shared loop (3 epochs by default, at the
   reference's rate, or Adam at 1e-3 where clusters are preserved: :mod:`kcompress.methods.qat.settings`).
4. The result is the *original* architecture holding the QAT model's trained weights, each quantized
   kernel replaced by its fake-quantized values — ``s·k`` with ``k`` the int8 weight and ``s`` the kernel's
   scale (one per Dense kernel, one per output channel of a convolution), exactly the values the
   int8 file stores (read back and compared), except where a batch norm follows: the converter folds it
   into the kernel before it stores it. Activations are not quantized in the Keras model, so its outputs differ from the
   file's: ``run.json``'s ``deploy.tflite_int8.agreement`` says by how much, and ``qat_model`` holds the
   test metric of the QAT model itself, activations quantized, which the file reproduces. tfmot's
   activation ranges are moving averages (decay 0.999) from ±6: a short fine-tuning leaves them coarse,
   where a weak model's outputs then differ (a residual CNN after 10 steps: file and QAT model agree on
   98 % of the test images, file and Keras model on 79 %; LeNet-300-100 after 213 steps: 99.8 %).
5. ``model_int8.tflite``: the QAT model converted to full-integer int8 (int8 input and output, the
   fake-quant ranges of training; the layers left in float calibrated on 300 training inputs), run in
   LiteRT on the whole test split against the plain model (:func:`kcompress.deploy.check.check_file`).
   ``model_qdq.onnx``: tf2onnx's conversion of the QAT model, QuantizeLinear/DequantizeLinear pairs
   around float32 weights — it runs quantized in onnxruntime but is no smaller than a float file
   (LeNet-300-100: 1.07 MB, as its float32 ONNX); a model tf2onnx cannot convert gets no ONNX file,
   and its ``deploy.onnx_qdq`` row says why. ``run.json``'s ``deploy`` holds both files' rows.
"""
import numpy as np
import tensorflow_model_optimization as tfmot
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit.default_8bit_quantize_registry import (
    Default8BitQuantizeRegistry,
)

from kcompress.backend import keras
from kcompress.core.objectives import predict, scores
from kcompress.core.surgery import rebuild
from kcompress.deploy.check import OnnxRunner, TFLiteRunner, check_file
from kcompress.deploy.convert import to_onnx, to_tflite
from kcompress.errors import require
from kcompress.methods.base import CompressionResult, kernel_names, target_layers, unset_values
from kcompress.methods.tfmot.cluster import SPARSE_SHARE
from kcompress.methods.tfmot.common import kernel_summary, kernels, stage_config
from kcompress.training.loop import fit

QAT = tfmot.quantization.keras
COMBINE = tfmot.experimental.combine
SCHEMES = {
    "none": QAT.default_8bit.Default8BitQuantizeScheme,
    "sparsity": COMBINE.Default8BitPrunePreserveQuantizeScheme,
    "clusters": lambda: COMBINE.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False),
    "both": lambda: COMBINE.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True),
}
INT8_FILE, ONNX_FILE = "model_int8.tflite", "model_qdq.onnx"
REPRESENTATIVE = 300  # training inputs that calibrate what the fake-quant ranges do not cover
SPLIT = ("_depthwise", "_pointwise")
FOLDED_INTO = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)  # tfmot folds a BN after these
# A kernel is clustered when its non-zeros take at most this many values, each shared by 8 weights or more
# on average: a trained or pruned kernel's are all distinct, an int8 kernel's ≤ 255.
MAX_SHARED, MIN_SHARERS = 256, 8


def run(reference, settings):
    model, chosen = split_separable(reference.model, chosen_names(reference.model, settings.layers))
    weighted = [l.name for l in reference.model.layers if kernel_names(l)]
    before = kernel_summary(reference.model, weighted)
    quantized, left = quantizable(model, chosen)
    preserve = resolve_preserve(settings.preserve, [k for n in quantized for k in kernels(model.get_layer(n)).values()])
    if left:
        print(f"[qat] left in float: {', '.join(left)}")
    qat = quantize(model, quantized, SCHEMES[preserve]())
    cfg = stage_config(reference, settings.for_preserve(preserve))
    history = train(qat, reference.data, cfg, preserve)
    plain = dequantized(reference.model, qat)
    files, deployed = deploy(qat, plain, reference.data)
    record = {"preserve": preserve, "layers": {"quantized": quantized, "float": left}, "finetune": cfg.to_dict(),
              "execution": history.execution, "kernels_before": before, "kernels": kernel_summary(plain, weighted),
              "qat_model": scores(reference.data.y_test, predict(qat, reference.data.x_test), reference.data, "test_"),
              "deploy": deployed}
    return CompressionResult(model=plain, record=record, history=history, files=files,
                             resolved=unset_values(settings, cfg.to_dict()))


def train(qat, data, cfg, preserve):
    """Fine-tune ``qat`` with the shared loop; the cluster-preserving schemes without XLA. On LeNet-300-100
    (71 steps an epoch) an epoch took 19-21 s compiled and 2.5-2.7 s plain (tfmot's centroid gather, as in
    its clustering); plain QAT and sparsity-preserving QAT take 0.3 s compiled, 0.45-0.6 s plain."""
    slow = preserve in ("clusters", "both")
    history = fit(qat, data, cfg, jit_compile=False if slow else None)
    if slow:
        history.execution["reason"] = "no XLA: tfmot's cluster-preserving quantizer trains ~8x slower compiled"
    return history


# ---------------------------------------------------------------- which layers, which scheme
def chosen_names(model, layers):
    """The layers ``--layers`` names (checked), else every layer but the inputs."""
    if layers:
        return {l.name for l in target_layers(model, layers)}
    return {l.name for l in model.layers if not isinstance(l, keras.layers.InputLayer)}


def split_separable(model, chosen):
    """``(model, chosen)`` with each chosen SeparableConv2D split into ``NAME_depthwise`` and ``NAME_pointwise``,
    which compute the same: tfmot splits it too, but under names nothing maps back."""
    separable = [n for n in chosen if isinstance(model.get_layer(n), keras.layers.SeparableConv2D)]
    if not separable:
        return model, chosen
    split = rebuild(model, {name: _split for name in separable})
    return split, (chosen - set(separable)) | {n + s for n in separable for s in SPLIT}


def _split(layer, x):
    c = layer.get_config()
    depthwise = keras.layers.DepthwiseConv2D(
        use_bias=False, name=layer.name + SPLIT[0],
        **{k: c[k] for k in ("kernel_size", "strides", "padding", "depth_multiplier", "data_format", "dilation_rate",
                             "depthwise_regularizer", "depthwise_constraint")})
    pointwise = keras.layers.Conv2D(
        c["filters"], 1, kernel_regularizer=c["pointwise_regularizer"], kernel_constraint=c["pointwise_constraint"],
        name=layer.name + SPLIT[1], **{k: c[k] for k in ("data_format", "activation", "use_bias", "bias_regularizer",
                                                           "bias_constraint", "activity_regularizer")})
    y = pointwise(depthwise(x))
    depthwise.set_weights([layer.depthwise_kernel.numpy()])
    pointwise.set_weights([layer.pointwise_kernel.numpy()] + ([layer.bias.numpy()] if layer.use_bias else []))
    return y


def quantizable(model, chosen):
    """``(quantized, left in float)``: names of the chosen layers, in the model's order."""
    registry = Default8BitQuantizeRegistry()
    names = {l.name for l in model.layers if l.name in chosen and registry.supports(l)}
    names |= {l.name for l in model.layers if l.name in chosen and folds(l, names)}
    ordered = [l.name for l in model.layers if l.name in chosen]
    require(names, f"--layers: tfmot quantizes none of {', '.join(ordered)}")
    return [n for n in ordered if n in names], [n for n in ordered if n not in names]


def folds(layer, quantized):
    """Whether ``layer`` is a BatchNormalization that tfmot's layout transform folds into the quantized
    linear layer before it (the only way tfmot quantizes a batch norm)."""
    if not isinstance(layer, keras.layers.BatchNormalization) or len(layer.inbound_nodes) != 1:
        return False
    before = layer.inbound_nodes[0].inbound_layers
    return (isinstance(before, FOLDED_INTO) and before.name in quantized and len(before.outbound_nodes) == 1
            and before.get_config()["activation"] == "linear")


def resolve_preserve(preserve, kernels):
    """``--preserve`` for the quantized ``kernels`` (arrays): ``auto`` keeps the zeros when a kernel is pruned (at
    least ``SPARSE_SHARE`` of it zero, as ``cluster`` decides) and the shared values when one is clustered
    (:data:`MAX_SHARED`, :data:`MIN_SHARERS`)."""
    if preserve != "auto":
        return preserve
    sparse = any(np.mean(k == 0) >= SPARSE_SHARE for k in kernels)
    clustered = any(0 < len(np.unique(k[k != 0])) <= min(MAX_SHARED, np.count_nonzero(k) / MIN_SHARERS)
                    for k in kernels)
    return {(False, False): "none", (True, False): "sparsity", (False, True): "clusters", (True, True): "both"}[
        sparse, clustered]


# ---------------------------------------------------------------- the QAT model and back
def quantize(model, names, scheme):
    """The QAT model of ``model`` with the layers ``names`` quantized under ``scheme``; the model's own layer
    classes are in scope, as tfmot's clone of the graph needs for a custom layer."""
    annotated = keras.models.clone_model(
        model, clone_function=lambda l: QAT.quantize_annotate_layer(l) if l.name in names else l)
    with QAT.quantize_scope({type(l).__name__: type(l) for l in model.layers}):
        return QAT.quantize_apply(annotated, scheme)


def fake_quantized(qat):
    """``{variable ref: values}`` of every quantized weight as the QAT model computes with it at inference."""
    return {weight.ref(): quantizer(weight, training=False, weights=params).numpy()
            for layer in qat.layers if isinstance(layer, QAT.QuantizeWrapper)
            for weight, quantizer, params in layer._weight_vars}


def dequantized(original, qat):
    """``original`` (changed in place) holding the weights of ``qat``, each quantized one fake-quantized."""
    held = held_weights(qat)
    for layer in original.layers:
        if layer.name in held:
            layer.set_weights([held[layer.name][short_name(w)] for w in layer.weights])
        elif layer.weights:  # a SeparableConv2D split by split_separable
            depthwise, pointwise = (held[layer.name + s] for s in SPLIT)
            layer.set_weights([depthwise["depthwise_kernel"], pointwise["kernel"]]
                              + ([pointwise["bias"]] if layer.use_bias else []))
    return original


def held_weights(qat):
    """``{layer name: {weight name: values}}`` of the QAT model's layers, under the names of the layers they
    stand for, each quantized weight fake-quantized. A wrapper holds its layer's variables beside its own
    (``quant_NAME/...``: ranges, step, centroids); its layer no longer lists the kernels tfmot quantizes."""
    fq, held = fake_quantized(qat), {}
    for layer in qat.layers:
        inner = layer.layer if isinstance(layer, QAT.QuantizeWrapper) else layer
        weights = [w for w in layer.weights if inner is layer or not w.name.startswith(f"{layer.name}/")]
        held[inner.name] = {short_name(w): fq.get(w.ref(), w.numpy()) for w in weights}
    return held


def short_name(weight):
    """``kernel`` of ``dense_1/kernel:0``."""
    return weight.name.split("/")[-1].split(":")[0]


# ---------------------------------------------------------------- files and their check
def deploy(qat, plain, data):
    """``({file name: bytes}, {variant: check row})``: the int8 TFLite file and tf2onnx's QDQ file of the QAT
    model, each run on the whole test split against ``plain``. The ONNX file is an extra: where tf2onnx
    cannot convert the model, its row holds the reason and a one-line notice says so."""
    y_plain = predict(plain, data.x_test)
    picked = np.random.default_rng(0).choice(len(data.x_train), min(REPRESENTATIVE, len(data.x_train)), replace=False)
    int8 = to_tflite(qat, "int8", representative=data.x_train[picked])
    files, rows = {INT8_FILE: int8}, {"tflite_int8": check_file(INT8_FILE, int8, TFLiteRunner(int8), data, y_plain)}
    try:
        onnx = to_onnx(qat)
    except Exception as e:  # noqa: BLE001 - tf2onnx's refusals share no type; the int8 file is the product
        rows["onnx_qdq"] = {"error": f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}"}
        print(f"[qat] no ONNX file: {rows['onnx_qdq']['error']}")
        return files, rows
    files[ONNX_FILE] = onnx
    rows["onnx_qdq"] = check_file(ONNX_FILE, onnx, OnnxRunner(onnx), data, y_plain)
    return files, rows

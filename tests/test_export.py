"""The deployment check: exported files run in LiteRT/onnxruntime and agree with Keras."""
import json

import pytest

from kcompress import api
from kcompress.errors import CheckFailed


@pytest.fixture(scope="module")
def export_report(reference_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exp") / "ref"
    return out, api.export(reference_dir, out, formats="tflite,onnx", tflite_modes="float32,dynamic,float16,int8")


def test_every_file_is_written_and_checked_on_the_full_test_set(export_report, reference):
    out, report = export_report
    assert report["n_test"] == 10000 and report["passed"]
    assert {r["variant"] for r in report["files"]} == {"tflite-float32", "tflite-dynamic", "tflite-float16", "tflite-int8", "onnx"}
    for r in report["files"]:
        assert (out / r["file"]).stat().st_size == r["bytes"] and 0 < r["gzip_bytes"] < r["bytes"]
        assert r["latency_ms"] > 0 and r["batch_latency_ms"] > 0
    assert json.loads((out / "report.json").read_text())["files"] == report["files"]
    assert (out / "report.md").read_text().count("| model") == 5


def test_float_exports_match_keras_and_int8_agrees(export_report, reference):
    _, report = export_report
    rows = {r["variant"]: r for r in report["files"]}
    keras_error = reference.run.metric("test_error")
    for v in ("tflite-float32", "onnx"):
        assert rows[v]["max_abs_diff"] <= 1e-4 and rows[v]["agreement"] == 1.0
        assert rows[v]["value"] == pytest.approx(keras_error, abs=0.011)
    assert rows["tflite-int8"]["agreement"] >= 0.99
    assert rows["tflite-int8"]["bytes"] < rows["tflite-float32"]["bytes"] / 3


def test_a_disagreeing_float_export_fails_after_writing_its_report(reference_dir, tmp_path):
    with pytest.raises(CheckFailed, match="differ from Keras"):
        api.export(reference_dir, tmp_path / "strict", formats="onnx", tolerance=1e-12)
    assert json.loads((tmp_path / "strict" / "report.json").read_text())["passed"] is False


def test_the_reference_tflite_size_is_reused_only_for_the_weights_it_was_measured_on(reference, monkeypatch):
    """train records the TFLite size with a digest of the weights; a file whose weights were
    replaced afterwards (as the LC side-by-side script does) is converted again."""
    from dataclasses import replace

    from kcompress.deploy import convert

    calls = []
    real = convert.tflite_size
    monkeypatch.setattr(convert, "tflite_size", lambda m: calls.append(1) or real(m))
    recorded = reference.run.tflite
    fresh = replace(reference, _tflite_size=None)
    assert fresh.tflite_size() == {k: recorded[k] for k in ("tflite_bytes", "tflite_gzip_bytes")} and not calls
    changed = replace(reference, model=_scaled_copy(reference.model), _tflite_size=None)
    sizes = changed.tflite_size()
    assert calls == [1] and sizes["tflite_bytes"] == recorded["tflite_bytes"]
    assert sizes["tflite_gzip_bytes"] != recorded["tflite_gzip_bytes"]


def test_a_tflite_size_is_converted_once_per_architecture_and_weights(reference, monkeypatch, tmp_path):
    """The float32 TFLite size is kept in the measurement cache: the same model again reads it
    back, other weights or another architecture convert, an empty cache setting keeps nothing."""
    from kcompress.deploy import convert

    monkeypatch.setenv("KCOMPRESS_MEASUREMENT_CACHE", str(tmp_path / "cache"))
    calls = []
    real = convert.to_tflite
    monkeypatch.setattr(convert, "to_tflite", lambda m, mode: calls.append(m) or real(m, mode))
    first = convert.tflite_size(reference.model)
    assert convert.tflite_size(reference.model) == first and len(calls) == 1
    assert first["tflite_bytes"] == len(real(reference.model, "float32"))
    scaled = _scaled_copy(reference.model)
    assert convert.tflite_size(scaled)["weights_sha1"] != first["weights_sha1"] and len(calls) == 2
    from kcompress.backend import keras

    other = keras.Sequential([keras.Input(reference.model.inputs[0].shape[1:]), keras.layers.Flatten(),
                              keras.layers.Dense(3)])
    convert.tflite_size(other)
    assert len(calls) == 3 and len(list((tmp_path / "cache").iterdir())) == 3
    monkeypatch.setenv("KCOMPRESS_MEASUREMENT_CACHE", "")
    assert convert.tflite_size(reference.model) == first and len(calls) == 4


def _scaled_copy(model):
    from kcompress.pipeline import clone

    copy = clone(model)
    copy.set_weights([w * 0.5 for w in model.get_weights()])
    return copy

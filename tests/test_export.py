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
    keras_error = reference.run["metrics"]["test_error"]
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

    from kcompress.export import convert

    calls = []
    real = convert.tflite_size
    monkeypatch.setattr(convert, "tflite_size", lambda m: calls.append(1) or real(m))
    recorded = reference.run["tflite"]
    fresh = replace(reference, _tflite_size=None)
    assert fresh.tflite_size() == {k: recorded[k] for k in ("tflite_bytes", "tflite_gzip_bytes")} and not calls
    changed = replace(reference, model=_scaled_copy(reference.model), _tflite_size=None)
    sizes = changed.tflite_size()
    assert calls == [1] and sizes["tflite_bytes"] == recorded["tflite_bytes"]
    assert sizes["tflite_gzip_bytes"] != recorded["tflite_gzip_bytes"]


def _scaled_copy(model):
    from kcompress.pipeline import clone

    copy = clone(model)
    copy.set_weights([w * 0.5 for w in model.get_weights()])
    return copy

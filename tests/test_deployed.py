"""The files a user ships: every deployable variant measured, TFLite's sparse encoding run in LiteRT,
the report's file columns, and the auto search's ``deployed-size`` objective counting the file it exports."""
import json

import pytest

from kcompress import api
from kcompress.deploy.sizes import VARIANTS, smallest


@pytest.fixture(scope="module")
def pruned_dir(reference_dir, tmp_path_factory):
    """The reference pruned to 90 % (one epoch of fine-tuning)."""
    out = tmp_path_factory.mktemp("deployed") / "p90"
    api.compress(reference_dir, "prune", out, sparsity=0.9, epochs=1)
    return out


def test_the_sparse_encoding_shrinks_a_pruned_file_and_runs_in_litert(pruned_dir, tmp_path):
    report = api.export(pruned_dir, tmp_path / "e", formats="tflite",
                        tflite_modes="float32,float32-sparse,int8,int8-sparse")
    rows = {r["variant"]: r for r in report["files"]}
    assert report["passed"] and rows["tflite-float32-sparse"]["strict"]
    assert rows["tflite-float32-sparse"]["max_abs_diff"] <= 1e-4 and rows["tflite-float32-sparse"]["agreement"] == 1.0
    # 10 % of the kernels kept: the sparse encoding stores them with their indices, not the zeros
    assert rows["tflite-float32-sparse"]["bytes"] < rows["tflite-float32"]["bytes"] / 3
    assert rows["tflite-int8-sparse"]["bytes"] < rows["tflite-int8"]["bytes"] / 2
    # XNNPACK refuses sparse int8 kernels: LiteRT's builtin kernels run the file, and it still agrees
    assert rows["tflite-int8-sparse"]["runtime"] == "builtin" and rows["tflite-float32"]["runtime"] == "xnnpack"
    assert rows["tflite-int8-sparse"]["agreement"] >= 0.98
    assert "runtime" in (tmp_path / "e" / "report.md").read_text()


def test_the_report_gives_each_model_s_smallest_file_beside_its_bits(reference_dir, pruned_dir, tmp_path):
    rows = {r["model"]: r for r in api.report([reference_dir, pruned_dir], tmp_path / "r")}
    ref, pruned = rows[str(reference_dir)], rows[str(pruned_dir)]
    for r in (ref, pruned):
        assert set(r["files"]) == set(VARIANTS)
        assert (r["deployed_gzip_file"], r["deployed_gzip_bytes"]) == smallest(r["files"], "gzip_bytes")
        assert r["deployed_gzip_bytes"] <= min(r["tflite_gzip_bytes"], r["int8_gzip_bytes"])
        assert r["deployed_bytes"] == min(f["bytes"] for f in r["files"].values())
    assert pruned["deployed_gzip_bytes"] < ref["deployed_gzip_bytes"] / 2
    assert pruned["deployed_file"].endswith("-sparse")  # raw bytes: the sparse encoding wins on a pruned model
    md = (tmp_path / "r" / "report.md").read_text()
    assert "smallest_gzip_bytes" in md and "int8_gzip_bytes" in md
    assert list((tmp_path / "r").glob("error_vs_file-*.png"))
    bare = api.report([pruned_dir], tmp_path / "bare", files=False)
    assert "deployed_gzip_bytes" not in bare[0] and "smallest_gzip_bytes" not in (tmp_path / "bare" / "report.md").read_text()


def test_auto_deployed_size_is_the_file_it_exports_against_the_reference_s_float32_file(reference_dir, tmp_path):
    out = tmp_path / "auto"
    summary = api.compress(reference_dir, "auto", out, objective="deployed-size", methods="prune", search="grid",
                           space=("prune.sparsity=0.9", "prune.epochs=1"), max_error_increase=5.0)
    chosen = summary["chosen"]
    assert chosen and chosen["file"] in VARIANTS
    exported = {r["variant"]: r for r in json.loads((out / "exported" / "report.json").read_text())["files"]}
    assert chosen["objective"] == exported[chosen["file"]]["gzip_bytes"]  # the same file, converted the same way
    reference_float32 = json.loads((reference_dir / "run.json").read_text())["tflite"]
    assert summary["reference"]["objective"] == reference_float32["tflite_gzip_bytes"]
    assert chosen["ratio"] == pytest.approx(summary["reference"]["objective"] / chosen["objective"])
    assert f"shipped as its {chosen['file']} file" in (out / "summary.md").read_text()

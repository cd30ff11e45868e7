"""The run record (``core/record.py``): a real ``run.json`` read and written back unchanged, keys from other
versions kept, a file that is not a record refused with one line, a chain's parent and root kept, and the
values unset settings took recorded beside their None."""
import json

import pytest

from kcompress import api
from kcompress.core.modeldir import RUN_FILE
from kcompress.core.record import RunRecord
from kcompress.errors import UsageError


@pytest.fixture(scope="module")
def chain(reference_dir, tmp_path_factory):
    """The reference pruned (optimizer and rate unset: the reference's), then the pruned model clustered
    (rate unset: tfmot's recipe); both written in-process."""
    root = tmp_path_factory.mktemp("chain")
    api.compress(reference_dir, "prune", root / "p", sparsity=0.5, epochs=1, batch_size=500)
    api.compress(root / "p", "cluster", root / "pc", clusters=8, epochs=1, batch_size=500)
    return root / "p", root / "pc"


def test_a_real_record_survives_a_read_and_a_write_unchanged(reference_dir, chain, tmp_path):
    for folder in (reference_dir, *chain):
        record = RunRecord.read(folder)
        assert record.to_dict() == json.loads((folder / RUN_FILE).read_text()) and not record.extra
        record.write(tmp_path)
        assert (tmp_path / RUN_FILE).read_text() == (folder / RUN_FILE).read_text()


def test_keys_this_version_does_not_know_are_kept(reference_dir, tmp_path):
    written = {**json.loads((reference_dir / RUN_FILE).read_text()), "future": {"a": [1, 2]}, "note": None}
    (tmp_path / RUN_FILE).write_text(json.dumps(written))
    record = RunRecord.read(tmp_path)
    assert record.extra == {"future": {"a": [1, 2]}, "note": None}
    record.write(tmp_path)
    assert json.loads((tmp_path / RUN_FILE).read_text()) == written


def test_an_old_trained_record_without_data_spec_finds_its_data_in_its_settings(tmp_path):
    (tmp_path / RUN_FILE).write_text(json.dumps({"kind": "train", "seed": 3, "settings": {"data": "mnist-sample"},
                                                 "metrics": {"test_error": 2.0}}))
    record = RunRecord.read(tmp_path)
    assert record.data_source == {"data": "mnist-sample", "val_split": 0.0, "seed": 3}
    assert record.method_name == "reference" and record.metric("test_error") == 2.0
    assert record.total_compression == {"bits_ratio": 1.0, "root_bits_ratio": 1.0}


@pytest.mark.parametrize("content, message", [
    (None, f"--from {{}}: no {RUN_FILE}"),
    ("{not json", f"--from {{}}: {RUN_FILE} is not valid JSON"),
    ('"text"', "holds a JSON str, not a kcompress run record"),
    ('{"metrics": {}}', "has no settings (not written by kcompress)"),
])
def test_a_missing_or_corrupt_run_json_is_a_usage_error(tmp_path, content, message):
    if content is not None:
        (tmp_path / RUN_FILE).write_text(content)
    with pytest.raises(UsageError) as e:
        RunRecord.read(tmp_path)
    assert message.format(tmp_path) in str(e.value)
    with pytest.raises(UsageError, match=f"^report: {tmp_path}: "):
        RunRecord.read(tmp_path, where=f"report: {tmp_path}")


def test_a_chain_keeps_its_parent_and_its_root(reference_dir, chain):
    pruned, clustered = (RunRecord.read(f) for f in chain)
    assert clustered.kind == "compress" and clustered.method_name == "cluster"
    assert clustered.parent == str(chain[0]) and pruned.parent == str(reference_dir)
    root = {"path": str(reference_dir), "bits": pruned.total_compression["reference_bits"]}
    assert clustered.root == pruned.root == root
    assert clustered.reference_metrics == pruned.metrics and clustered.data_source == pruned.data_source
    total = clustered.total_compression
    assert total["root_bits_ratio"] == pytest.approx(clustered.root_bits / total["bits"])
    assert total["root_bits_ratio"] > total["bits_ratio"] > 1


def test_unset_settings_are_recorded_with_the_values_they_took(reference_dir, chain):
    reference = RunRecord.read(reference_dir)
    assert reference.settings["hidden"] is None and reference.resolved == {"hidden": [300, 100]}
    pruned, clustered = (RunRecord.read(f) for f in chain)
    assert pruned.settings["lr"] is None and pruned.resolved["lr"] == reference.settings["lr"]
    assert {k: pruned.resolved[k] for k in ("optimizer", "momentum")} == {
        k: reference.settings[k] for k in ("optimizer", "momentum")}
    assert pruned.resolved["end_step"] > 0 and "batch_size" not in pruned.resolved  # given: not resolved
    assert clustered.settings["lr"] is None and clustered.resolved["lr"] == 1e-4  # tfmot's recipe, not the reference's

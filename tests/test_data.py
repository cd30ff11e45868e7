"""Datasets: bundled MNIST, learned-index keys (generated and from files; unsorted or repeated keys), npz
validation rule by rule, each refusal one line naming the file and the array."""
import os

import numpy as np
import pytest

from kcompress.cli.main import main
from kcompress.core.data import load_dataset
from kcompress.core.keys import generate_keys, key_bits, read_keys_file
from kcompress.errors import UsageError


def test_bundled_mnist_sample_is_real_mnist_shapes():
    ds = load_dataset("mnist-sample")
    assert ds.x_train.shape == (5000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.task == "classification" and ds.num_classes == 10
    assert np.bincount(ds.y_train).tolist() == [500] * 10


def test_val_split_is_seeded_and_disjoint():
    a, b = load_dataset("mnist-sample", 0.1, seed=3), load_dataset("mnist-sample", 0.1, seed=3)
    assert len(a.x_val) == 500 and len(a.x_train) == 4500
    np.testing.assert_array_equal(a.y_val, b.y_val)
    flat = lambda x: {r.tobytes() for r in x.reshape(len(x), -1)}  # noqa: E731
    assert not flat(a.x_val) & flat(a.x_train)


@pytest.mark.parametrize("dist", ["uniform", "normal", "lognormal"])
def test_keys_are_sorted_distinct_and_features_are_their_bits(dist):
    ds = load_dataset(f"keys:{dist}:2000")
    assert ds.task == "regression" and ds.x_train.shape == (2000, 64) and ds.y_scale == 1999
    keys = generate_keys(dist, 2000)
    assert np.all(np.diff(keys.astype(np.float64)) > 0) or np.all(keys[1:] > keys[:-1])
    bits = ds.x_train.astype(np.uint8)
    decoded = np.packbits(bits, axis=1).view(">u8").ravel()
    np.testing.assert_array_equal(decoded, keys)
    np.testing.assert_allclose(ds.y_train.ravel() * ds.y_scale, np.arange(2000), atol=1e-3)


def test_key_files_text_npy_and_sosd_give_the_same_keys(tmp_path):
    keys = generate_keys("lognormal", 500, seed=1)
    (tmp_path / "k.txt").write_text("\n".join(str(int(k)) for k in keys[::-1]))
    np.save(tmp_path / "k.npy", keys)
    with open(tmp_path / "k_uint64", "wb") as f:
        f.write(np.array([len(keys)], "<u8").tobytes() + keys.astype("<u8").tobytes())
    for name in ("k.txt", "k.npy", "k_uint64"):
        np.testing.assert_array_equal(read_keys_file(str(tmp_path / name)), keys)
    np.testing.assert_array_equal(load_dataset(f"keys-file:{tmp_path / 'k_uint64'}").x_test, key_bits(keys))


def test_sosd_file_with_wrong_count_is_refused(tmp_path):
    p = tmp_path / "bad_uint64"
    p.write_bytes(np.array([10, 1, 2], "<u8").tobytes())
    with pytest.raises(UsageError, match="SOSD header says 10 keys"):
        read_keys_file(str(p))


NAN, INF = float("nan"), float("inf")

def _npz(tmp_path, **arrays):
    p = tmp_path / "d.npz"
    np.savez(p, **arrays)
    return str(p)


@pytest.mark.parametrize(
    "arrays, message",
    [
        (dict(x_train=np.zeros((4, 3)), y_train=np.zeros(4, int)), "lacks array"),
        (dict(x_train=np.zeros((4, 3)), y_train=np.zeros(3, int), x_test=np.zeros((2, 3)), y_test=np.zeros(2, int)), "has 4 rows but y_train has 3"),
        (dict(x_train=np.zeros((4, 3)), y_train=np.array([0, 1, 1, 0]), x_test=np.zeros((2, 3)), y_test=np.array([0, 5])), "out of range"),
        (dict(x_train=np.zeros((4, 3)), y_train=np.array([0, -1, 1, 0]), x_test=np.zeros((2, 3)), y_test=np.array([0, 1])), "out of range"),
    ],
)
def test_bad_npz_is_a_usage_error(tmp_path, arrays, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_npz_regression_and_unknown_specs(tmp_path):
    ds = load_dataset(_npz(tmp_path, x_train=np.ones((4, 3)), y_train=np.ones(4) * 0.5, x_test=np.ones((2, 3)), y_test=np.ones(2)))
    assert ds.task == "regression" and ds.input_shape == (3,)
    for spec, msg in [("cifar", "unknown --data"), ("keys:zipf:10", "unknown distribution"), ("keys:uniform:x", "N must be"),
                      (str(tmp_path / "none.npz"), "file not found")]:
        with pytest.raises(UsageError, match=msg):
            load_dataset(spec)
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(UsageError, match="not an npz file"):
        load_dataset(str(tmp_path / "junk.npz"))


def _split(x, y):
    """The npz layout of features ``x`` and labels ``y`` (3/4 train, 1/4 test)."""
    cut = len(x) * 3 // 4
    return dict(x_train=x[:cut], y_train=y[:cut], x_test=x[cut:], y_test=y[cut:])


@pytest.mark.parametrize("arrays, message", [
    (_split(np.zeros(8), np.arange(8) % 2), "features need one row per sample"),
    (_split(np.full((8, 2), 1e300), np.arange(8) % 2), "not finite in float32"),
    (_split(np.zeros((8, 2), np.complex64), np.arange(8) % 2), "complex numbers"),
    (_split(np.zeros((12, 2)), np.array([0, 1, 2, 999] * 3)), "not the classes 0…K−1"),
])
def test_data_the_model_would_misread_is_refused(tmp_path, arrays, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(_npz(tmp_path, **arrays))


def test_unused_arrays_are_ignored_with_a_notice(tmp_path, capsys):
    arrays = {**_split(np.zeros((8, 3)), np.arange(8) % 2), "x_val_extra": np.zeros(20)}
    assert load_dataset(_npz(tmp_path, **arrays)).input_shape == (3,)
    assert "ignoring array(s) x_val_extra" in capsys.readouterr().err


def test_files_that_are_not_what_they_claim(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("x,y\n1,2\n")
    with pytest.raises(UsageError, match="not an npz file"):
        load_dataset(str(text))
    keys = tmp_path / "keys.txt"
    keys.write_text("1\n2\n" + str(2**64 + 5) + "\n")
    with pytest.raises(UsageError, match="line 3: key 18446744073709551621 is outside"):
        read_keys_file(str(keys))
    grid = tmp_path / "keys.npy"
    np.save(grid, np.arange(6, dtype=np.uint64).reshape(2, 3))
    with pytest.raises(UsageError, match="1-D array, got shape"):
        read_keys_file(str(grid))


def _complete_npz(tmp_path, **arrays):
    base = dict(x_train=np.random.default_rng(0).random((6, 3)), y_train=np.array([0, 1, 0, 1, 0, 1]),
                x_test=np.ones((2, 3)), y_test=np.array([0, 1]))
    p = tmp_path / "d.npz"
    np.savez(p, **{**base, **arrays})
    return str(p)


@pytest.mark.parametrize("arrays, message", [
    (dict(x_train=np.full((6, 3), NAN)), r"x_train holds 18 value\(s\) of 18 that are not finite"),
    (dict(x_test=np.array([[1.0, NAN, 1.0], [1.0, 1.0, 1.0]])), r"x_test holds 1 value\(s\) of 6 that are not finite"),
    (dict(x_train=np.array([[INF, 0, 0]] + [[0, 0, 0]] * 5)), r"x_train holds 1 value\(s\) of 18 that are not finite"),
    (dict(x_val=np.full((2, 3), NAN), y_val=np.array([0, 1])), r"x_val holds 6 value\(s\) of 6 that are not finite"),
    (dict(y_train=np.array([0.5, NAN, 1, 2, 3, 4]), y_test=np.array([0.5, 1.5])), r"y_train holds 1 value\(s\) of 6 that are not finite"),
    (dict(y_train=np.zeros(6, int), y_test=np.zeros(2, int)), "only class 0: a classifier needs at least 2"),
    (dict(y_train=np.array([0.5, 1.5, 0.5, 1.5, 0.5, 1.5])), "y_test holds integer class labels .* y_train holds float"),
    (dict(y_test=np.array([0.0, 1.0])), "y_test holds float targets .* y_train holds integer"),
    (dict(y_train=np.array(list("abcabc"))), "y_train has non-numeric dtype"),
])
def test_each_validation_rule_refuses_bad_npz_data(tmp_path, arrays, message):
    with pytest.raises(UsageError, match=message):
        load_dataset(_complete_npz(tmp_path, **arrays))


def test_bad_data_exits_2_naming_the_file_and_array(tmp_path, capsys):
    path = _complete_npz(tmp_path, x_train=np.full((6, 3), NAN))
    assert main(["train", "--data", path, "--out", str(tmp_path / "m"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and path in err and "x_train holds 18 value(s) of 18 that are not finite" in err
    assert not (tmp_path / "m").exists() and os.listdir(tmp_path) == ["d.npz"]


def test_unsorted_or_repeated_keys_are_fixed_with_one_notice_or_refused(tmp_path, capsys):
    keys = generate_keys("uniform", 50, seed=2)
    path = tmp_path / "k.txt"
    path.write_text("\n".join(str(int(k)) for k in [*keys[::-1], keys[0], keys[1]]))  # 49 descents, 2 repeats
    np.testing.assert_array_equal(read_keys_file(str(path)), keys)
    load_dataset(f"keys-file:{path}")
    err = capsys.readouterr().err
    assert err.count("notice") == 1 and "49 key(s) out of order and 2 repeated" in err and "to 50 keys" in err
    with pytest.raises(UsageError, match="49 key.* out of order and 2 repeated.*--strict-keys"):
        load_dataset(f"keys-file:{path}", strict_keys=True)
    assert main(["train", "--model", "index64", "--data", f"keys-file:{path}", "--strict-keys",
                 "--out", str(tmp_path / "m")]) == 2
    (tmp_path / "ok.txt").write_text("\n".join(str(int(k)) for k in keys))
    load_dataset(f"keys-file:{tmp_path / 'ok.txt'}", strict_keys=True)
    assert "notice" not in capsys.readouterr().err

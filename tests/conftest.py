"""Shared fixtures: a small trained reference model, built once per test session."""
import os
import shutil
import tempfile
from dataclasses import replace

import numpy as np
import pytest

import kcompress  # noqa: F401  (sets TF_USE_LEGACY_KERAS before anything imports TensorFlow)
from kcompress.core.data import load_dataset


CACHES = ("KCOMPRESS_XLA_CACHE", "KCOMPRESS_MEASUREMENT_CACHE")


def pytest_configure(config):
    """The suite's caches (XLA steps, see kcompress.backend; measurements, kcompress.core.cache)
    live in folders of their own, shared by the suite's processes and removed at the end: tests
    neither read nor grow the user's caches."""
    config.cache_folders = []
    for name in CACHES:
        if name not in os.environ:
            os.environ[name] = tempfile.mkdtemp(prefix=f"{name.lower()}-")
            config.cache_folders.append(os.environ[name])


def pytest_unconfigure(config):
    for folder in getattr(config, "cache_folders", ()):
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def reference_dir(tmp_path_factory):
    """A LeNet-300-100 model directory trained 2 epochs on the bundled MNIST sample."""
    from kcompress import api

    out = tmp_path_factory.mktemp("ref") / "lenet300"
    api.train(out, model="lenet300", data="mnist-sample", epochs=2, seed=0, verbose=0)
    return out


@pytest.fixture(scope="session")
def reference(reference_dir):
    """The :class:`~kcompress.methods.base.Reference` of ``reference_dir``."""
    from kcompress.pipeline import load_reference

    return load_reference(reference_dir)


@pytest.fixture(scope="module")
def small(reference):
    """The session reference on 1000 training samples and 500 test samples (fast fine-tuning)."""
    d = reference.data
    data = replace(d, x_train=d.x_train[:1000], y_train=d.y_train[:1000], x_val=d.x_val[:200],
                   y_val=d.y_val[:200], x_test=d.x_test[:500], y_test=d.y_test[:500])
    return replace(reference, data=data)


@pytest.fixture(scope="session")
def mnist():
    """1500 training and 500 test images of the bundled MNIST sample, all ten classes, flattened (the Keras pieces' tests)."""
    ds, rng = load_dataset("mnist-sample"), np.random.default_rng(0)
    tr, te = rng.permutation(len(ds.x_train))[:1500], rng.permutation(len(ds.x_test))[:500]
    flat = lambda x: x.reshape(len(x), -1)  # noqa: E731
    return flat(ds.x_train[tr]), ds.y_train[tr], flat(ds.x_test[te]), ds.y_test[te]


@pytest.fixture(scope="session")
def small_mnist():
    """A slice of the bundled MNIST sample (800 training images with a validation split, 500 test)."""
    ds = load_dataset("mnist-sample", 0.1)
    return replace(ds, x_train=ds.x_train[:800], y_train=ds.y_train[:800], x_test=ds.x_test[:500], y_test=ds.y_test[:500])


@pytest.fixture
def rng():
    return np.random.default_rng(0)

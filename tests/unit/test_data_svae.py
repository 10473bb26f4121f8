"""The S-VAE datasets from their authors' files (static MNIST's .amat text; OMNIGLOT, Caltech-101
and Frey Faces as MATLAB .mat), on small files in the real formats, through the real loaders:
splits, orientation, binarisation, folder names, downloads and clear errors. The other datasets:
tests/unit/test_data.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from tests import formats
from training.config import Config, DataConfig
from training.data import OMNIGLOT_EVAL_BINARIZE_SEED, load_data, read_images
from training.datasets import (
    DATASETS,
    FREY_SPLIT,
    OMNIGLOT_N_VAL,
    DatasetError,
    read_amat,
)
from training.sources import CATALOGUE

# ---- S-VAE datasets: the authors' files (.amat text, MATLAB .mat), written by tests/formats ----

# The authors' own reading of each file (docs/specs/hyperspherical.md#5-data;
# product-space utils/load_data.py):
AUTHORS = {
    "omniglot": lambda m: m["testdata"].T.reshape((-1, 28, 28), order="F"),
    "caltech101": lambda m: 1.0 - m["test_data"].reshape((-1, 28, 28), order="F"),
    "frey_faces": lambda m: m["ff"].T.reshape((-1, 1, 28, 20))[:, 0] / 255.0,
}


FREY_FACE = (255 * formats.ramp(28, 20)).astype(np.uint8)  # 0..254, increasing row by row


@pytest.fixture
def svae_root(isolated_cache) -> Path:
    """A data root holding small static MNIST, OMNIGLOT, Caltech-101 and full-size Frey Faces files,
    each with an upright pattern ('F' or a grey ramp) as the first image of every split."""
    rng = np.random.default_rng(0)
    root = isolated_cache / "svae-data"
    f = formats.letter_f()
    with_f = lambda n: np.concatenate([f[None], formats.random_binary(rng, n - 1)])  # noqa: E731
    formats.write_static_mnist(root / "static_mnist", with_f(40), with_f(15), with_f(12))
    grey = lambda n: np.concatenate([formats.ramp(28, 28)[None], formats.random_grey(rng, n - 1)])  # noqa: E731
    # Real split rule: more training images than the 1,345 held out (1,400 x 784 is small).
    formats.write_omniglot(root / "omniglot" / "chardata.mat", grey(OMNIGLOT_N_VAL + 55), grey(30))
    formats.write_caltech(
        root / "caltech101" / "caltech101_silhouettes_28_split1.mat",
        with_f(35),
        with_f(20),
        with_f(25),
    )
    faces = rng.integers(0, 256, (sum(FREY_SPLIT), 28, 20))
    faces[0] = FREY_FACE
    formats.write_frey(root / "frey_faces" / "frey_rawface.mat", faces)
    return root


def cfg_for(dataset: str, root: Path, **kw) -> DataConfig:
    return DataConfig(dataset=dataset, root=str(root), **kw)


def contains(images: torch.Tensor, image: np.ndarray) -> bool:
    """Whether one of images [N, 1, H, W] equals image [H, W] (float32 comparison)."""
    target = torch.as_tensor(image, dtype=torch.float32)
    return bool((images[:, 0] == target).flatten(1).all(1).any())


def test_static_mnist_keeps_the_files_split_and_binary_images(svae_root):
    train, val, test = read_images("static_mnist", str(svae_root))
    assert (train.shape, val.shape, test.shape) == (
        (40, 1, 28, 28),
        (15, 1, 28, 28),
        (12, 1, 28, 28),
    )
    assert train.dtype == torch.bool
    data = load_data(cfg_for("static_mnist", svae_root, binarize=True))
    # Validation is the valid file, in order, unchanged; already binary: never resampled.
    assert torch.equal(data.val, val.float()) and torch.equal(data.test, test.float())
    assert torch.equal(data.train, train.float()) and not data.binarize
    idx = torch.arange(40)
    assert torch.equal(data.train_batch(idx), data.train_batch(idx))
    assert torch.equal(data.train[0, 0], torch.as_tensor(formats.letter_f(), dtype=torch.float32))
    assert data.x_shape == (1, 28, 28)


def test_amat_with_trailing_spaces_and_crlf_reads_the_same(isolated_cache):
    rng = np.random.default_rng(1)
    images = formats.random_binary(rng, 5)
    a = formats.write_amat(isolated_cache / "a.amat", images)
    b = formats.write_amat(isolated_cache / "b.amat", images, trailing_space=True)
    c = isolated_cache / "c.amat"
    c.write_bytes(a.read_bytes().replace(b"\n", b"\r\n"))
    for path in (a, b, c):
        assert np.array_equal(read_amat(path), images.reshape(5, -1))


def test_omniglot_split_orientation_and_authors_binarisation(svae_root):
    train, test = read_images("omniglot", str(svae_root))
    assert train.shape == (OMNIGLOT_N_VAL + 55, 1, 28, 28) and train.dtype == torch.float32
    grey = load_data(cfg_for("omniglot", svae_root, center=False))
    assert (grey.train.shape[0], grey.val.shape[0], grey.test.shape[0]) == (55, OMNIGLOT_N_VAL, 30)
    assert 0.0 <= grey.train.min() and grey.train.max() <= 1.0
    assert len(grey.train.unique()) > 2  # grey levels, not binary
    # Upright: the test set is not shuffled, its first image is the ramp; the whole split is what
    # the authors' reshape(order='F') gives; the ramp went into train or validation.
    assert contains(grey.test[:1], formats.ramp(28, 28))
    mat = scipy.io.loadmat(svae_root / "omniglot" / "chardata.mat")
    assert np.allclose(grey.test[:, 0].numpy(), AUTHORS["omniglot"](mat))
    assert contains(torch.cat([grey.train, grey.val]), formats.ramp(28, 28))

    cfg = cfg_for("omniglot", svae_root, binarize=True)
    data, again = load_data(cfg), load_data(cfg)
    assert data.binarize and torch.equal(data.val, again.val) and torch.equal(data.test, again.test)
    assert set(data.val.unique().tolist()) == {0.0, 1.0} == set(data.test.unique().tolist())
    # The authors' one-off binarisation: np.random.seed(777), validation, then test.
    np.random.seed(OMNIGLOT_EVAL_BINARIZE_SEED)
    np.random.binomial(1, grey.val.numpy())
    assert np.array_equal(data.test.numpy(), np.random.binomial(1, grey.test.numpy()))
    # The test images do not depend on the shuffle; the validation images do.
    other = load_data(cfg_for("omniglot", svae_root, binarize=True, split_seed=1))
    assert torch.equal(other.test, data.test) and not torch.equal(other.val, data.val)
    first, second = data.train_batch(torch.arange(55)), data.train_batch(torch.arange(55))
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)


def test_omniglot_split_rule_scales_and_refuses_too_few_images(isolated_cache, monkeypatch):
    rng = np.random.default_rng(2)
    path = formats.write_omniglot(
        isolated_cache / "o" / "omniglot" / "chardata.mat",
        formats.random_grey(rng, 30),
        formats.random_grey(rng, 8),
    )
    with pytest.raises(DatasetError, match=rf"{path}.*30 training images.*{OMNIGLOT_N_VAL}"):
        read_images("omniglot", str(isolated_cache / "o"))
    monkeypatch.setattr("training.datasets.OMNIGLOT_N_VAL", 10)
    data = load_data(cfg_for("omniglot", isolated_cache / "o", binarize=True))
    assert (data.train.shape[0], data.val.shape[0], data.test.shape[0]) == (20, 10, 8)


def test_caltech_is_one_minus_data_upright_given_split_and_unchanged(svae_root):
    data = load_data(cfg_for("caltech101", svae_root, binarize=True))
    assert (data.train.shape[0], data.val.shape[0], data.test.shape[0]) == (35, 20, 25)
    assert not data.binarize and set(data.train.unique().tolist()) == {0.0, 1.0}
    f = formats.letter_f()
    for split in (data.train, data.val, data.test):  # the given split, in the file's order
        assert torch.equal(split[0, 0], torch.as_tensor(f, dtype=torch.float32))
    mat = scipy.io.loadmat(svae_root / "caltech101" / "caltech101_silhouettes_28_split1.mat")
    assert np.array_equal(data.test[:, 0].numpy(), AUTHORS["caltech101"](mat))
    assert torch.equal(load_data(cfg_for("caltech101", svae_root, binarize=True)).val, data.val)


def test_frey_faces_seeded_1565_200_200_continuous_28x20(svae_root):
    (everything,) = read_images("frey_faces", str(svae_root))
    assert everything.shape == (1965, 1, 28, 20) and everything.dtype == torch.uint8
    cfg = cfg_for("frey_faces", svae_root, center=False)
    data = load_data(cfg)
    sizes = tuple(s.shape[0] for s in (data.train, data.val, data.test))
    assert sizes == FREY_SPLIT == (1565, 200, 200) and data.x_shape == (1, 28, 20)
    assert not data.binarize and 0.0 <= data.train.min() and data.train.max() <= 1.0
    assert len(data.val.unique()) > 2  # continuous
    # Disjoint and complete; upright; the same images the authors' reshape gives.
    mat = scipy.io.loadmat(svae_root / "frey_faces" / "frey_rawface.mat")
    authors = torch.as_tensor(AUTHORS["frey_faces"](mat), dtype=torch.float32)
    ours = torch.cat([data.train, data.val, data.test])[:, 0]
    key = lambda x: sorted(map(tuple, x.flatten(1).tolist()))  # noqa: E731
    assert key(ours) == key(authors)
    assert contains(torch.cat([data.train, data.val, data.test]), FREY_FACE / 255.0)
    # Seeded: same split again, another split for another seed.
    assert torch.equal(load_data(cfg).test, data.test)
    other = load_data(cfg_for("frey_faces", svae_root, center=False, split_seed=1))
    assert not torch.equal(other.test, data.test)
    centred = load_data(cfg_for("frey_faces", svae_root))
    assert centred.train.mean(0).abs().max() < 1e-5


def test_a_model_builds_and_runs_on_frey_faces_shape(svae_root):
    import models

    data = load_data(cfg_for("frey_faces", svae_root))
    model = models.build("vae", {"latent_dim": 4, "hidden_dim": 16}, data.x_shape)
    terms = model(data.train_batch(torch.arange(8)))
    assert terms.log_px_z.shape == (8,) and torch.isfinite(terms.log_px_z).all()


@pytest.mark.parametrize(
    ("dataset", "folder"),
    [
        ("static_mnist", "MNIST_static"),
        ("omniglot", "OMNIGLOT"),
        ("caltech101", "Caltech101Silhouettes"),
        ("frey_faces", "Freyfaces"),
    ],
)
def test_authors_folder_names_are_found_under_data_root_env(
    svae_root, isolated_cache, monkeypatch, dataset, folder
):
    other = isolated_cache / "authors-layout"
    other.mkdir()
    (svae_root / DATASETS[dataset].folder).rename(other / folder)  # data/<authors' folder>/
    monkeypatch.setenv("VAE_DATA_ROOT", str(other))
    assert read_images(dataset)[0].shape[0] > 0


@pytest.mark.parametrize("dataset", ["static_mnist", "omniglot", "caltech101", "frey_faces"])
def test_missing_authors_files_say_where_looked_where_to_put_and_url(isolated_cache, dataset):
    spec = DATASETS[dataset]
    root = isolated_cache / "empty"
    with pytest.raises(DatasetError) as e:
        read_images(dataset, str(root))
    msg = str(e.value)
    assert "not found: looked for" in msg and str(root) in msg and spec.files[0] in msg
    assert all(url in msg for url in spec.urls) and f"into {root / spec.folder}/" in msg
    assert "data/download=true" in msg


def _corrupt_cases(root: Path):
    """(dataset, file to break, how, expected message)."""
    static = root / "static_mnist"
    omni = root / "omniglot" / "chardata.mat"
    caltech = root / "caltech101" / "caltech101_silhouettes_28_split1.mat"
    frey = root / "frey_faces" / "frey_rawface.mat"
    rng = np.random.default_rng(3)

    def truncate_amat():
        p = static / "binarized_mnist_valid.amat"
        p.write_bytes(p.read_bytes()[:-300])

    def bad_value():
        p = static / "binarized_mnist_test.amat"
        lines = p.read_text().splitlines()
        lines[2] = "2" + lines[2][1:]
        p.write_text("\n".join(lines) + "\n")

    return [
        (
            "static_mnist",
            static / "binarized_mnist_valid.amat",
            truncate_amat,
            r"line 15 has \d+ values, expected 784 \(truncated",
        ),
        (
            "static_mnist",
            static / "binarized_mnist_test.amat",
            bad_value,
            r"line 3 has the value '2'",
        ),
        (
            "omniglot",
            omni,
            lambda: omni.write_bytes(omni.read_bytes()[:2000]),
            r"unreadable as a MATLAB \.mat file",
        ),
        (
            "omniglot",
            omni,
            lambda: scipy.io.savemat(omni, {"images": np.zeros((784, 2))}),
            r"no variable \['data', 'testdata'\] \(it holds \['images'\]\)",
        ),
        (
            "omniglot",
            omni,
            lambda: formats.write_omniglot(
                omni, 2 * formats.random_grey(rng, 1400), formats.random_grey(rng, 3)
            ),
            r"'data' has values in \[0\.0, 2\.0\], outside \[0, 1\]",
        ),
        (
            "omniglot",
            omni,
            lambda: scipy.io.savemat(
                omni, {"data": np.zeros((28, 2000)), "testdata": np.zeros((784, 2))}
            ),
            r"'data' is float64 \(28, 2000\), expected 784 x N",
        ),
        (
            "caltech101",
            caltech,
            lambda: formats.write_caltech(
                caltech, rng.uniform(size=(5, 28, 28)), np.zeros((2, 28, 28)), np.zeros((2, 28, 28))
            ),
            r"'train_data' is not binary",
        ),
        (
            "frey_faces",
            frey,
            lambda: formats.write_frey(frey, np.zeros((100, 28, 20))),
            r"'ff' holds 100 images, expected 1965",
        ),
        (
            "frey_faces",
            frey,
            lambda: scipy.io.savemat(frey, {"ff": np.zeros((784, 1965))}),
            r"'ff' is float64 \(784, 1965\), expected 560 x N",
        ),
    ]


@pytest.mark.parametrize("case", range(9))
def test_corrupt_authors_files_name_the_file_and_the_problem(svae_root, case):
    dataset, path, damage, expected = _corrupt_cases(svae_root)[case]
    damage()
    with pytest.raises(DatasetError, match=expected) as e:
        read_images(dataset, str(svae_root))
    msg = str(e.value)
    assert str(path) in msg and "download it again from http" in msg


def test_download_fetches_missing_files_into_the_root(svae_root, isolated_cache, monkeypatch):
    """data/download=true through training.fetch, on a file:// URL (no network needed): Frey Faces
    has no published checksum, so its published size and its reader verify it."""
    (src,) = CATALOGUE["frey_faces"]
    source = (svae_root / "frey_faces" / "frey_rawface.mat").resolve()
    assert source.stat().st_size == src.size  # scipy writes the 1,965 faces in the published size
    monkeypatch.setitem(CATALOGUE, "frey_faces", (replace(src, urls=(source.as_uri(),)),))
    root = isolated_cache / "fresh"
    with pytest.raises(DatasetError, match="not found"):
        read_images("frey_faces", str(root))
    (faces,) = read_images("frey_faces", str(root), download=True)
    assert faces.shape == (1965, 1, 28, 20)
    assert (root / "frey_faces" / "frey_rawface.mat").read_bytes() == source.read_bytes()
    assert list((root / "frey_faces").iterdir()) == [root / "frey_faces" / "frey_rawface.mat"]


def test_failed_download_is_a_clear_error(isolated_cache, monkeypatch):
    (src,) = CATALOGUE["omniglot"]
    gone = (isolated_cache / "nowhere" / "chardata.mat").as_uri()
    monkeypatch.setitem(CATALOGUE, "omniglot", (replace(src, urls=(gone,)),))
    root = isolated_cache / "r"
    with pytest.raises(DatasetError, match=rf"could not download {gone}: No such file"):
        read_images("omniglot", str(root), download=True)
    assert not root.exists()  # no partial file, nor the folders made for it


def test_bernoulli_config_on_the_binary_datasets(svae_root):
    for dataset in ("static_mnist", "caltech101", "omniglot"):
        cfg = Config.from_dict(
            {
                "family": "vae",
                "model/likelihood": "bernoulli",
                "data/dataset": dataset,
                "data/binarize": True,
                "data/root": str(svae_root),
            }
        )
        data = load_data(cfg.data)
        assert set(data.test.unique().tolist()) == {0.0, 1.0}

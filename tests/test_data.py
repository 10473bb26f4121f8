"""Dataset loading through the real loaders (torchvision's IDX parser, the S-VAE authors' .amat and
.mat files, Stanford's SVHN .mat files, the CIFAR-10 pickles), on small files in the real on-disk
formats; the SPVAE preprocessing (greyscale, min-max, discrete/perturbed pixels, training rows);
the VLAE authors' optional logit transform with uniform dequantisation."""

from __future__ import annotations

import math
import pickle
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from tests import formats
from tests.conftest import make_mnist_like
from training.config import Config, ConfigError, DataConfig
from training.data import (
    DATASETS,
    FREY_SPLIT,
    OMNIGLOT_EVAL_BINARIZE_SEED,
    OMNIGLOT_N_VAL,
    SVHN_N_VAL,
    DatasetError,
    load_data,
    read_amat,
    read_images,
)
from training.images import (
    SPVAE_SUBSET_ROWS,
    greyscale,
    logit_dequantise,
    minmax,
    perturb,
    split_generators,
    train_rows,
)


@pytest.mark.parametrize("layout", ["torchvision", "debian"])
def test_both_on_disk_layouts_load(isolated_cache, layout):
    root = make_mnist_like(isolated_cache / layout, layout, n_train=50, n_test=20)
    train, test = read_images("fashion_mnist", str(root))
    assert train.shape == (50, 1, 28, 28) and test.shape == (20, 1, 28, 28)
    assert train.dtype == torch.uint8 and train.max() > 100


def test_debian_layout_is_found_under_a_system_root(isolated_cache, monkeypatch):
    system = isolated_cache / "usr-share-datasets"
    make_mnist_like(system / "fashion-mnist", "debian", n_train=30, n_test=10)
    monkeypatch.setattr("training.data.SYSTEM_ROOTS", (system,))
    train, _ = read_images("fashion_mnist")
    assert train.shape[0] == 30


def test_split_is_seeded_disjoint_and_sized(tiny_data_root):
    cfg = DataConfig(dataset="fashion_mnist", root=str(tiny_data_root), val_fraction=0.2)
    a, b = load_data(cfg), load_data(cfg)
    assert a.train.shape[0] == 240 and a.val.shape[0] == 60 and a.test.shape[0] == 100
    assert torch.equal(a.val, b.val)
    other = load_data(
        DataConfig(
            dataset="fashion_mnist", root=str(tiny_data_root), val_fraction=0.2, split_seed=1
        )
    )
    assert not torch.equal(a.val, other.val)
    # Centred continuous data: the training split has zero mean per pixel.
    assert a.train.mean(0).abs().max() < 1e-5 and a.pixel_mean is not None


def test_binarisation_is_dynamic_for_training_and_fixed_for_evaluation(tiny_data_root):
    cfg = DataConfig(dataset="mnist", root=str(tiny_data_root), binarize=True)
    data = load_data(cfg)
    assert set(data.val.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(data.test, load_data(cfg).test)  # same images every evaluation
    idx = torch.arange(64)
    first, second = data.train_batch(idx), data.train_batch(idx)
    assert set(first.unique().tolist()) <= {0.0, 1.0} and not torch.equal(first, second)
    # Bernoulli(intensity): the binary pixels average to the grey levels.
    many = torch.stack([data.train_batch(idx) for _ in range(200)]).mean(0)
    assert (many - data.train[idx]).abs().mean() < 0.02


def test_missing_dataset_says_where_it_looked_and_how_to_install(isolated_cache):
    with pytest.raises(DatasetError, match=r"not found: looked for .*empty.*apt-get install"):
        read_images("fashion_mnist", str(isolated_cache / "empty"))


def test_corrupt_dataset_is_a_clear_error(isolated_cache):
    root = make_mnist_like(isolated_cache / "bad", "torchvision", n_train=20, n_test=10)
    path = root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(DatasetError, match="unreadable.*delete the files and reinstall"):
        read_images("fashion_mnist", str(root))


def test_corrupt_gzip_is_a_clear_error(isolated_cache):
    root = make_mnist_like(isolated_cache / "badgz", "debian", n_train=20, n_test=10)
    (root / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DatasetError, match="corrupt"):
        read_images("fashion_mnist", str(root))


# ---- S-VAE datasets: the authors' files (.amat text, MATLAB .mat), written by tests/formats ----

# The authors' own reading of each file (reference section 5; product-space utils/load_data.py):
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
    monkeypatch.setattr("training.data.OMNIGLOT_N_VAL", 10)
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
    """The real download path (urllib, atomic rename) on file:// URLs; no network needed."""
    spec = DATASETS["frey_faces"]
    source = (svae_root / "frey_faces" / "frey_rawface.mat").resolve()
    monkeypatch.setitem(DATASETS, "frey_faces", replace(spec, urls=(source.as_uri(),)))
    root = isolated_cache / "fresh"
    with pytest.raises(DatasetError, match="not found"):
        read_images("frey_faces", str(root))
    (faces,) = read_images("frey_faces", str(root), download=True)
    assert faces.shape == (1965, 1, 28, 20)
    assert (root / "frey_faces" / "frey_rawface.mat").read_bytes() == source.read_bytes()
    assert list((root / "frey_faces").iterdir()) == [root / "frey_faces" / "frey_rawface.mat"]


def test_failed_download_is_a_clear_error(isolated_cache, monkeypatch):
    spec = DATASETS["omniglot"]
    gone = (isolated_cache / "nowhere" / "chardata.mat").as_uri()
    monkeypatch.setitem(DATASETS, "omniglot", replace(spec, urls=(gone,)))
    root = isolated_cache / "r"
    with pytest.raises(DatasetError, match=rf"could not download {gone}.*put it at {root}"):
        read_images("omniglot", str(root), download=True)
    assert not any((root / "omniglot").iterdir())  # no partial file left behind


def test_real_download_urls_are_kept():
    assert DATASETS["omniglot"].urls == (
        "https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",
    )
    assert DATASETS["static_mnist"].urls[1] == (
        "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
        "binarized_mnist_valid.amat"
    )
    assert DATASETS["caltech101"].files == ("caltech101_silhouettes_28_split1.mat",)
    assert DATASETS["frey_faces"].urls == ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",)
    assert DATASETS["svhn"].urls == tuple(
        f"http://ufldl.stanford.edu/housenumbers/{s}_32x32.mat" for s in ("train", "extra", "test")
    )
    assert DATASETS["cifar10"].urls == ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
    assert DATASETS["cifar10"].files == (
        *(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
    )


def test_svae_no_rescale_255_thresholds_every_split_at_zero(tiny_data_root):
    cfg = DataConfig(
        dataset="mnist", root=str(tiny_data_root), binarize=True, svae_no_rescale_255=True
    )
    data = load_data(cfg)
    train_u8, test_u8 = read_images("mnist", str(tiny_data_root))
    assert torch.equal(data.test, (test_u8 > 0).float()) and not data.binarize
    idx = torch.arange(32)
    assert torch.equal(data.train_batch(idx), data.train_batch(idx))
    assert set(data.val.unique().tolist()) == {0.0, 1.0}
    for bad in ({"binarize": False}, {"dataset": "omniglot"}):
        with pytest.raises(ConfigError, match="svae_no_rescale_255.*binarize=true"):
            DataConfig(**{"dataset": "mnist", "binarize": True, "svae_no_rescale_255": True, **bad})


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


# ---- SPVAE datasets: SVHN (Stanford's .mat files), CIFAR-10 (python pickles), preprocessing ----


@pytest.fixture
def spvae(isolated_cache) -> SimpleNamespace:
    """A data root with tiny SVHN files (train 12, extra 9, test 7) and CIFAR-10 batches (5 x 6,
    test 8) of random RGB images, and those upright [N, 32, 32, 3] source images."""
    rng = np.random.default_rng(4)
    root = isolated_cache / "spvae-data"
    svhn = tuple(formats.random_rgb(rng, n) for n in (12, 9, 7))  # train, extra, test
    formats.write_svhn_files(root / "svhn", *svhn)
    cifar = [formats.random_rgb(rng, 6) for _ in range(5)], formats.random_rgb(rng, 8)
    formats.write_cifar(root / "cifar-10-batches-py", *cifar)
    return SimpleNamespace(root=root, svhn=svhn, cifar=cifar)


def chw(rgb: np.ndarray) -> torch.Tensor:
    """Upright [N, H, W, 3] -> [N, 3, H, W] uint8, the layout read_images returns."""
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(0, 3, 1, 2)))


def pil_luma(rgb: np.ndarray) -> torch.Tensor:
    """PIL's Image.convert("L") of each upright [H, W, 3] image -> uint8 [N, 1, H, W]."""
    grey = [np.asarray(Image.fromarray(im, "RGB").convert("L")) for im in rgb]
    return torch.from_numpy(np.stack(grey))[:, None]


def per_image(x: torch.Tensor, op: str) -> torch.Tensor:
    return getattr(x.flatten(1), op)(1)


def splits(data) -> tuple[torch.Tensor, ...]:
    return data.train, data.val, data.test


def test_svhn_reads_upright_rgb_and_keeps_the_files_split(spvae):
    train, val, test = read_images("svhn", str(spvae.root))
    assert train.dtype == torch.uint8 and train.shape == (12, 3, 32, 32)
    # Fewer than SVHN_N_VAL images in extra: all of them are the validation split.
    for ours, source in zip((train, val, test), spvae.svhn, strict=True):
        assert torch.equal(ours, chw(source))  # orientation and channel order
    x = scipy.io.loadmat(spvae.root / "svhn" / "test_32x32.mat")["X"]
    n, c, i, j = 5, 2, 3, 30
    assert test[n, c, i, j] == x[i, j, c, n]  # X[:, :, c, n] is image n's channel c, rows first
    data = load_data(cfg_for("svhn", spvae.root, center=False))
    assert torch.equal(data.train, chw(spvae.svhn[0]).float() / 255)  # the file's order
    assert torch.equal(data.val, chw(spvae.svhn[1]).float() / 255)
    assert data.x_shape == (3, 32, 32)


def test_svhn_validation_is_the_first_images_of_extra(spvae, monkeypatch):
    assert SVHN_N_VAL == 26032
    monkeypatch.setattr("training.data.SVHN_N_VAL", 4)
    train, val, test = read_images("svhn", str(spvae.root))
    assert torch.equal(val, chw(spvae.svhn[1][:4])) and val.is_contiguous()
    assert (train.shape[0], test.shape[0]) == (12, 7)


def test_cifar_reads_upright_rgb_and_splits_by_val_fraction(spvae):
    train, test = read_images("cifar10", str(spvae.root))
    assert torch.equal(train, chw(np.concatenate(spvae.cifar[0])))  # batches 1..5 in order
    assert torch.equal(test, chw(spvae.cifar[1])) and test.dtype == torch.uint8
    cfg = cfg_for("cifar10", spvae.root, val_fraction=0.2, center=False)
    data = load_data(cfg)
    assert tuple(s.shape[0] for s in (data.train, data.val, data.test)) == (24, 6, 8)
    key = lambda x: sorted(map(tuple, x.flatten(1).tolist()))  # noqa: E731
    assert key(torch.cat([data.train, data.val])) == key(train.float() / 255)  # disjoint, complete
    assert torch.equal(load_data(cfg).val, data.val)
    assert not torch.equal(load_data(replace(cfg, split_seed=1)).val, data.val)


@pytest.mark.parametrize(
    ("dataset", "folder"),
    [("svhn", "SVHN"), ("cifar10", "cifar10/cifar-10-batches-py")],
)
def test_other_folder_names_of_svhn_and_cifar_are_found(spvae, monkeypatch, dataset, folder):
    other = spvae.root.parent / "other-layout"
    (other / folder).parent.mkdir(parents=True)
    (spvae.root / DATASETS[dataset].folder).rename(other / folder)
    monkeypatch.setenv("VAE_DATA_ROOT", str(other))
    assert read_images(dataset)[0].shape[1:] == (3, 32, 32)


def test_missing_svhn_or_cifar_say_where_looked_and_how_to_get_them(isolated_cache):
    root = isolated_cache / "empty"
    with pytest.raises(DatasetError) as e:
        read_images("svhn", str(root))
    msg = str(e.value)
    assert "looked for train_32x32.mat, extra_32x32.mat, test_32x32.mat in svhn/ (or SVHN/)" in msg
    assert all(url in msg for url in DATASETS["svhn"].urls) and f"into {root / 'svhn'}/" in msg
    with pytest.raises(DatasetError) as e:
        read_images("cifar10", str(root))
    msg = str(e.value)
    assert "data_batch_1" in msg and str(root) in msg and "data/download=true" in msg
    assert f"Download {DATASETS['cifar10'].urls[0]} and extract it into {root}/" in msg


def test_svhn_download_fetches_the_three_files(spvae, isolated_cache, monkeypatch):
    spec = DATASETS["svhn"]
    urls = tuple((spvae.root / "svhn" / f).resolve().as_uri() for f in spec.files)
    monkeypatch.setitem(DATASETS, "svhn", replace(spec, urls=urls))
    root = isolated_cache / "fresh"
    _, val, _ = read_images("svhn", str(root), download=True)
    assert torch.equal(val, chw(spvae.svhn[1]))
    assert sorted(p.name for p in (root / "svhn").iterdir()) == sorted(spec.files)


def test_cifar_download_extracts_the_archive_into_the_root(spvae, isolated_cache, monkeypatch):
    archive = isolated_cache / "archives" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    formats.tar_folder(archive, spvae.root / "cifar-10-batches-py")
    spec = DATASETS["cifar10"]
    monkeypatch.setitem(DATASETS, "cifar10", replace(spec, urls=(archive.as_uri(),)))
    root = isolated_cache / "fresh"
    train, test = read_images("cifar10", str(root), download=True)
    assert torch.equal(test, chw(spvae.cifar[1])) and train.shape[0] == 30
    folder = root / "cifar-10-batches-py"  # torchvision's layout, the meta file kept
    assert {p.name for p in folder.iterdir()} == {*spec.files, "batches.meta"}
    assert {p.name for p in root.iterdir()} == {archive.name, folder.name}  # no temp dir left


@pytest.mark.parametrize(
    ("folder", "member", "expected"),
    [
        ("cifar-10-batches-py", "../escaped.txt", r"not a safe, readable \.tar\.gz"),
        ("svhn", "readme.html", r"does not hold cifar-10-batches-py/\['data_batch_1'"),
    ],
)
def test_cifar_archive_unsafe_or_incomplete_is_refused(
    spvae, isolated_cache, monkeypatch, folder, member, expected
):
    archive = isolated_cache / "archives" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    formats.tar_folder(archive, spvae.root / folder, {member: b"x"})
    spec = DATASETS["cifar10"]
    monkeypatch.setitem(DATASETS, "cifar10", replace(spec, urls=(archive.as_uri(),)))
    root = isolated_cache / "fresh"
    with pytest.raises(DatasetError, match=rf"(?s){archive.name}.*{expected}.*download it again"):
        read_images("cifar10", str(root), download=True)
    assert not (isolated_cache / "escaped.txt").exists()
    assert [p.name for p in root.iterdir()] == [archive.name]  # nothing extracted, no temp dir


class _RunsCode:
    def __reduce__(self):
        return (print, ("a pickle that runs code",))


def _spvae_corrupt_cases(root: Path):
    """(dataset, file to break, how, expected message)."""
    svhn, cifar = root / "svhn", root / "cifar-10-batches-py"
    rng = np.random.default_rng(5)

    def save(path, obj):
        return lambda: path.write_bytes(pickle.dumps(obj, protocol=2))

    return [
        (
            "svhn",
            svhn / "train_32x32.mat",
            lambda: (svhn / "train_32x32.mat").write_bytes(b"MATLAB 5.0 MAT-file, truncated"),
            r"unreadable as a MATLAB \.mat file",
        ),
        (
            "svhn",
            svhn / "extra_32x32.mat",
            lambda: scipy.io.savemat(svhn / "extra_32x32.mat", {"X": np.zeros((32, 32, 3, 9))}),
            r"'X' is float64 \(32, 32, 3, 9\), expected uint8 \(32, 32, 3, N\)",
        ),
        (
            "svhn",
            svhn / "test_32x32.mat",
            lambda: scipy.io.savemat(
                svhn / "test_32x32.mat", {"X": np.zeros((32, 32, 7), np.uint8)}
            ),
            r"'X' is uint8 \(32, 32, 7\)",
        ),
        (
            "svhn",
            svhn / "test_32x32.mat",
            lambda: scipy.io.savemat(svhn / "test_32x32.mat", {"images": np.zeros((2, 2))}),
            r"no variable \['X'\]",
        ),
        (
            "cifar10",
            cifar / "data_batch_3",
            lambda: (cifar / "data_batch_3").write_bytes(b"\x80\x02}q\x00(X"),
            r"unreadable as a CIFAR-10 python pickle",
        ),
        (
            "cifar10",
            cifar / "data_batch_2",
            save(cifar / "data_batch_2", {"data": rng.integers(0, 255, (6, 1024), np.uint8)}),
            r"'data' is uint8 \(6, 1024\), expected uint8 \(N, 3072\)",
        ),
        (
            "cifar10",
            cifar / "test_batch",
            save(cifar / "test_batch", [1, 2]),
            r"expected a dict with a 'data' entry, found list",
        ),
        (
            "cifar10",
            cifar / "data_batch_5",
            save(cifar / "data_batch_5", {"data": _RunsCode()}),
            r"refers to _*builtins?_*\.print, not only numpy arrays",  # __builtin__ in protocol 2
        ),
    ]


@pytest.mark.parametrize("case", range(8))
def test_corrupt_svhn_or_cifar_files_name_the_file_and_the_fix(spvae, capsys, case):
    dataset, path, damage, expected = _spvae_corrupt_cases(spvae.root)[case]
    damage()
    with pytest.raises(DatasetError, match=expected) as e:
        read_images(dataset, str(spvae.root))
    msg = str(e.value)
    fix = {
        "svhn": f"delete it and download it again from http://ufldl.stanford.edu/housenumbers/"
        f"{path.name}",
        "cifar10": f"delete {path.parent}/ and extract it again from "
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    }[dataset]
    assert str(path) in msg and fix in msg
    assert "runs code" not in capsys.readouterr().out  # the refused pickle ran nothing


def test_greyscale_is_pil_convert_l_bit_for_bit(spvae):
    rng = np.random.default_rng(6)
    rgb = formats.random_rgb(rng, 7, 9, 11)
    rgb[0], rgb[1] = 0, 255  # the extremes
    rgb[2, ..., 0], rgb[2, ..., 1:] = 255, 0  # pure red
    assert torch.equal(greyscale(chw(rgb), chunk=3), pil_luma(rgb))  # over chunk boundaries
    one = chw(rgb)[:, :1]
    assert greyscale(one) is one  # one channel: a no-op
    data = load_data(cfg_for("svhn", spvae.root, greyscale=True, center=False))
    assert data.x_shape == (1, 32, 32)
    assert torch.equal(data.test, pil_luma(spvae.svhn[2]).float() / 255)


def test_greyscale_is_a_no_op_on_one_channel_data(tiny_data_root):
    plain = load_data(DataConfig(dataset="mnist", root=str(tiny_data_root), center=False))
    grey = load_data(
        DataConfig(dataset="mnist", root=str(tiny_data_root), center=False, greyscale=True)
    )
    assert torch.equal(plain.train, grey.train) and grey.x_shape == (1, 28, 28)


def test_minmax_scales_each_image_to_0_1_and_a_constant_image_to_zeros(spvae):
    x = torch.stack([torch.full((1, 4, 4), 0.3), torch.linspace(0.2, 0.6, 16).view(1, 4, 4)])
    out = minmax(x)
    assert torch.equal(out[0], torch.zeros(1, 4, 4))  # constant: zeros, not NaN
    assert torch.allclose(out[1], (x[1] - 0.2) / 0.4) and (out[1].min(), out[1].max()) == (0, 1)
    data = load_data(cfg_for("cifar10", spvae.root, minmax=True, center=False, greyscale=True))
    for split in splits(data):
        assert (per_image(split, "amin") == 0).all() and (per_image(split, "amax") == 1).all()
    raw = load_data(cfg_for("cifar10", spvae.root, center=False, greyscale=True))
    assert torch.allclose(data.test, minmax(raw.test)) and not torch.equal(data.test, raw.test)


def on_grid(x: torch.Tensor) -> bool:
    return bool(((x * 255 - torch.round(x * 255)).abs() < 1e-4).all())


def test_discrete_pixels_lie_on_the_1_255_grid_unless_the_svhn_quirk(spvae):
    base = cfg_for("svhn", spvae.root, greyscale=True, minmax=True, center=False)
    scaled = load_data(base)
    assert not on_grid(scaled.test)  # min-max scaling leaves the grid...
    data = load_data(replace(base, pixels="discrete"))
    for split in splits(data):
        assert on_grid(split) and split.min() == 0 and split.max() == 1  # ...rounding returns
    assert (data.test - scaled.test).abs().max() <= 0.5 / 255 + 1e-6
    quirk = load_data(replace(base, pixels="discrete", spvae_svhn_skip_discretise=True))
    assert torch.equal(quirk.test, scaled.test)  # the authors' SVHN script: no rounding


def test_perturbed_pixels_are_fixed_per_split_seed_in_0_1_and_min_maxed(spvae):
    base = cfg_for("cifar10", spvae.root, greyscale=True, minmax=True, center=False)
    scaled = load_data(base)
    cfg = replace(base, pixels="perturbed")
    data = load_data(cfg)
    for split in splits(data):
        assert (per_image(split, "amin") == 0).all() and (per_image(split, "amax") == 1).all()
    noise = (data.test - scaled.test).abs().mean()
    assert 0.3 / 255 < noise < 2 / 255  # E|N(0, 1/255^2)| = 0.8 / 255
    again = load_data(cfg)  # drawn once per split from the seed: the same images every run
    assert all(map(torch.equal, splits(again), splits(data)))
    other = load_data(replace(cfg, split_seed=1))
    assert not torch.equal(other.test, data.test)
    # Each split's noise depends on the seed only, not on the other splits' sizes.
    assert torch.equal(load_data(replace(cfg, val_fraction=0.5)).test, data.test)


def test_perturb_reflects_at_0_and_1_then_min_maxes():
    x = torch.cat([torch.zeros(1, 1, 4, 8), torch.ones(1, 1, 4, 8)], dim=2)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(3)) / 255
    y = x + noise
    reflected = torch.where(x == 0, noise.abs(), 1 - noise.abs())  # -y below 0, 2 - y above 1
    assert not torch.equal(reflected, y.clamp(0, 1))  # reflection is not clipping
    expected = (reflected - reflected.min()) / (reflected.max() - reflected.min())
    assert torch.allclose(perturb(x, torch.Generator().manual_seed(3)), expected, atol=1e-6)


def test_train_fraction_keeps_the_first_rows_after_the_preprocessing(spvae):
    cfg = cfg_for("cifar10", spvae.root, pixels="perturbed", center=False, val_fraction=0.2)
    full = load_data(cfg)
    part = load_data(replace(cfg, train_fraction=0.25))
    assert torch.equal(part.train, full.train[:6])  # round(0.25 * 24); the same noise
    assert torch.equal(part.val, full.val) and torch.equal(part.test, full.test)
    assert load_data(replace(cfg, train_fraction=0.001)).train.shape[0] == 1  # at least one


def test_spvae_train_subset_keeps_the_first_17384_rows(spvae, monkeypatch):
    assert SPVAE_SUBSET_ROWS == 16384 + 1000 == 17384
    rows = torch.arange(20000.0).view(-1, 1, 1, 1)
    subset = train_rows(DataConfig(spvae_train_subset=True), rows)
    assert torch.equal(subset, rows[:17384])
    assert train_rows(DataConfig(), rows) is rows  # off by default
    half = DataConfig(spvae_train_subset=True, train_fraction=0.5)
    assert train_rows(half, rows).shape[0] == 10000  # train_fraction first, then the cap
    cfg = cfg_for("cifar10", spvae.root, center=False, spvae_train_subset=True)
    full = load_data(replace(cfg, spvae_train_subset=False))
    monkeypatch.setattr("training.images.SPVAE_SUBSET_ROWS", 5)
    data = load_data(cfg)
    assert torch.equal(data.train, full.train[:5]) and torch.equal(data.val, full.val)


def test_an_spvae_cell_config_loads_svhn_for_the_binomial_likelihood(spvae):
    cfg = Config.from_dict(
        {
            "family": "spvae",
            "model/likelihood": "binomial",
            "model/cell_size": 8,
            "data/dataset": "svhn",
            "data/root": str(spvae.root),
            "data/greyscale": True,
            "data/minmax": True,
            "data/pixels": "discrete",
            "data/center": False,
        }
    )
    data = load_data(cfg.data)
    assert data.x_shape == (1, 32, 32) and on_grid(data.train) and data.pixel_mean is None


# ---- data/logit: the VLAE authors' "Gaussian + logit" pixels (reference vlae.md section 7) ----


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_logit_dequantise_is_the_authors_formula_on_a_few_pixels():
    x = torch.tensor([0.0, 128 / 255, 1.0, 37 / 255])
    u = torch.tensor([0.25, 0.5, 0.75, 0.0])
    lam = 0.05
    # x' = (255 x + u) / 256 -> x'' = lam + (1 - 2 lam) x' -> log(x'' / (1 - x'')), by hand:
    by_hand = [logit(0.05 + 0.9 * (255 * xi + ui) / 256) for xi, ui in zip(x, u, strict=True)]
    assert by_hand[0] == pytest.approx(logit(0.05 + 0.9 * 0.25 / 256))
    out = logit_dequantise(x, lam, noise=u)
    assert out.tolist() == pytest.approx(by_hand, abs=1e-5)
    assert out[1] == pytest.approx(logit(0.05 + 0.9 * 128.5 / 256), abs=1e-5)
    assert x.tolist() == pytest.approx([0.0, 128 / 255, 1.0, 37 / 255])  # input untouched
    # With a generator, u is its next U(0, 1) draw, one per pixel.
    drawn = torch.rand(4, generator=torch.Generator().manual_seed(5))
    seeded = logit_dequantise(x, lam, torch.Generator().manual_seed(5))
    assert torch.allclose(seeded, logit_dequantise(x, lam, noise=drawn))
    assert not torch.allclose(seeded, out)


@pytest.mark.parametrize("lam", [0.05, 1e-6])
def test_logit_dequantised_pixels_are_finite_and_within_logit_lam(lam):
    levels = torch.arange(256.0).div(255).repeat(40)  # every grey level, 40 noise draws each
    y = logit_dequantise(levels, lam, torch.Generator().manual_seed(0))
    bound = logit(1 - lam)  # = -logit(lam)
    assert torch.isfinite(y).all() and y.abs().max() <= bound + 1e-4
    # The extremes: black with u = 0 is logit(lam); white with u -> 1 tends to logit(1 - lam).
    ends = logit_dequantise(torch.tensor([0.0, 1.0]), lam, noise=torch.tensor([0.0, 1 - 2**-24]))
    assert ends[0] == pytest.approx(-bound, rel=1e-5) and ends[1] == pytest.approx(bound, rel=2e-3)
    # Dequantisation: each level's values stay inside its own 1/256-wide bin, ordered by level.
    per_level = y.view(40, 256)
    assert (per_level.amax(0)[:-1] <= per_level.amin(0)[1:]).all()


def logit_cfg(root, **kw) -> DataConfig:
    return DataConfig(dataset="fashion_mnist", root=str(root), logit=True, **kw)


def test_logit_training_batches_get_fresh_noise_evaluation_images_are_fixed(tiny_data_root):
    cfg = logit_cfg(tiny_data_root)
    data = load_data(cfg)
    idx = torch.arange(64)
    first, second = data.train_batch(idx), data.train_batch(idx)
    assert first.shape == (64, 1, 28, 28) and not torch.equal(first, second)  # fresh u per draw
    # Both are the images idx, dequantised: between the transforms with u = 0 and u -> 1.
    levels = data.train_levels[idx]
    lo, hi = (
        logit_dequantise(levels, cfg.logit_lambda, noise=torch.full_like(levels, u))
        - data.pixel_mean
        for u in (0.0, 1 - 2**-24)
    )
    for batch in (first, second):
        assert (batch >= lo - 1e-5).all() and (batch <= hi + 1e-5).all()
    again = load_data(cfg)  # evaluation noise drawn once from data/split_seed: same images
    assert all(map(torch.equal, splits(again), splits(data)))
    other = load_data(replace(cfg, split_seed=1))
    assert not torch.equal(other.test, data.test)  # the same test images, other noise:
    bin_width = 0.9 / 256 / (0.05 * 0.95)  # widest 1/256 bin in logit space: at logit(lam)
    uncentred = (s.test + s.pixel_mean for s in (other, data))
    assert torch.allclose(*uncentred, atol=bin_width + 1e-5)


def test_logit_splits_are_centred_by_the_transformed_training_mean(tiny_data_root):
    cfg = logit_cfg(tiny_data_root, center=False)  # data/center does not matter with data/logit
    data = load_data(cfg)
    assert all(map(torch.equal, splits(load_data(replace(cfg, center=True))), splits(data)))
    plain = load_data(DataConfig(dataset="fashion_mnist", root=str(tiny_data_root), center=False))
    assert torch.equal(data.train_levels, plain.train)  # the grey levels in [0, 1]
    assert data.logit_lambda == 0.05 and not data.binarize and data.x_shape == (1, 28, 28)
    g_train, g_val, g_test = split_generators(cfg.split_seed, 3)
    transformed = logit_dequantise(plain.train, 0.05, g_train)
    assert torch.allclose(data.pixel_mean, transformed.mean(0, keepdim=True), atol=1e-6)
    assert data.train.mean(0).abs().max() < 1e-5  # centred by its own (transformed) mean
    assert torch.allclose(data.train, transformed - data.pixel_mean, atol=1e-6)
    for ours, levels, g in ((data.val, plain.val, g_val), (data.test, plain.test, g_test)):
        assert torch.allclose(ours, logit_dequantise(levels, 0.05, g) - data.pixel_mean, atol=1e-6)
    # Not the mean of the grey levels: the logit mean is far from it on this dark data.
    assert (data.pixel_mean - plain.train.mean(0, keepdim=True)).abs().max() > 1
    # Fresh training batches are centred too (up to the noise), and within the transform's range.
    batch = data.train_batch(torch.arange(data.train.shape[0]))
    assert batch.mean(0).abs().max() < 0.05
    bound = 2 * logit(1 - 0.05)
    assert all(s.isfinite().all() and s.abs().max() <= bound for s in (*splits(data), batch))


def test_logit_lambda_is_the_configured_one(tiny_data_root):
    data = load_data(logit_cfg(tiny_data_root, logit_lambda=1e-6))
    assert data.logit_lambda == 1e-6
    raw = data.train + data.pixel_mean
    assert raw.min() == pytest.approx(logit(1e-6), rel=1e-3)  # black pixels reach logit(lam)
    assert raw.max() <= logit(1 - 1e-6) + 1e-4

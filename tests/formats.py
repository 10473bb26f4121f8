"""Writers of the S-VAE and SPVAE datasets' real on-disk formats, for tests (tiny files, real
layouts).

Each writer takes upright images (numpy [N, H, W], object = bright; RGB as [N, H, W, 3]) and
stores them the way the authors' files do, so that the loader in training.data has to undo the
layout:

    .amat (Larochelle)   text, one image per line, 784 space-separated 0/1, row-major
    chardata.mat         'data' 784 x N_train, 'testdata' 784 x N_test, float64 in [0, 1], each
                         column one image stored column-major (MATLAB's A(:))
    caltech101 .mat      'train_data' / 'val_data' / 'test_data' N x 784 float64, each row one image
                         stored column-major, 0 = object, 1 = background; *_labels N x 1
    frey_rawface.mat     'ff' 560 x N uint8, each column one 28 x 20 image stored row-major
    SVHN *_32x32.mat     'X' (32, 32, 3, N) uint8, X[:, :, c, n] = image n's channel c (rows
                         first); 'y' (N, 1) labels 1..10
    CIFAR-10 batches     pickled dict: 'data' uint8 [N, 3072] (each row the R, G, B planes, each
                         row-major), 'labels', 'batch_label', 'filenames'
    SHA256SUMS           a data mirror's list (training.fetch): "<sha256>  <dataset>/<file>"
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import scipy.io


def column_major(images: np.ndarray) -> np.ndarray:
    """[N, H, W] -> [N, H*W] with v[i + H j] = image[i, j] (MATLAB's A(:) per image)."""
    return images.transpose(0, 2, 1).reshape(images.shape[0], -1)


def write_amat(path: Path, images: np.ndarray, trailing_space: bool = False) -> Path:
    """A binarised-MNIST .amat file: one row-major image of 0/1 per line."""
    end = " \n" if trailing_space else "\n"
    lines = (" ".join(map(str, row)) + end for row in images.reshape(len(images), -1).astype(int))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(lines))
    return path


def write_static_mnist(folder: Path, train, valid, test, trailing_space=False) -> Path:
    for split, images in (("train", train), ("valid", valid), ("test", test)):
        write_amat(folder / f"binarized_mnist_{split}.amat", images, trailing_space)
    return folder


def write_omniglot(path: Path, train: np.ndarray, test: np.ndarray) -> Path:
    """Burda et al.'s chardata.mat (plus dummy label variables, as in the real file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(
        path,
        {
            "data": column_major(train.astype(np.float64)).T,
            "testdata": column_major(test.astype(np.float64)).T,
            "target": np.zeros((50, len(train))),
            "testtarget": np.zeros((50, len(test))),
        },
    )
    return path


def write_caltech(path: Path, train: np.ndarray, val: np.ndarray, test: np.ndarray) -> Path:
    """Marlin's caltech101_silhouettes_28_split1.mat from upright 0/1 images (1 = object)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mat = {}
    for key, images in (("train", train), ("val", val), ("test", test)):
        mat[f"{key}_data"] = 1.0 - column_major(images.astype(np.float64))
        mat[f"{key}_labels"] = np.ones((len(images), 1))
    mat["classnames"] = np.array(["a", "b"], dtype=object)
    scipy.io.savemat(path, mat)
    return path


def write_frey(path: Path, images: np.ndarray) -> Path:
    """Roweis's frey_rawface.mat: 'ff' 560 x N uint8, one row-major 28 x 20 image per column."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"ff": images.astype(np.uint8).reshape(len(images), -1).T})
    return path


def letter_f(h: int = 28, w: int = 28) -> np.ndarray:
    """An upright 'F' (0/1): no flip or transpose of it equals it, so it pins the orientation."""
    img = np.zeros((h, w), np.uint8)
    img[3:-3, 5:8] = 1  # stem, left
    img[3:6, 5:-5] = 1  # top bar, full width
    img[h // 2 : h // 2 + 3, 5 : w // 2 + 2] = 1  # middle bar, shorter
    return img


def ramp(h: int, w: int) -> np.ndarray:
    """Grey levels in [0, 1), each pixel distinct and increasing row by row."""
    return np.arange(h * w, dtype=np.float64).reshape(h, w) / (h * w)


def random_binary(rng: np.random.Generator, n: int, h: int = 28, w: int = 28) -> np.ndarray:
    return (rng.uniform(size=(n, h, w)) < 0.2).astype(np.uint8)


def random_grey(rng: np.random.Generator, n: int, h: int = 28, w: int = 28) -> np.ndarray:
    """Grey images in [0, 1] with exact 0s and 1s, as down-sampled characters have."""
    x = rng.uniform(-0.5, 1.5, size=(n, h, w))
    return np.clip(x, 0.0, 1.0)


def write_svhn(path: Path, images: np.ndarray) -> Path:
    """A Stanford SVHN file (train/test/extra_32x32.mat) from upright RGB uint8 [N, 32, 32, 3]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = (np.arange(len(images)) % 10 + 1).reshape(-1, 1).astype(np.uint8)  # '0' is label 10
    scipy.io.savemat(path, {"X": images.astype(np.uint8).transpose(1, 2, 3, 0), "y": labels})
    return path


def write_svhn_files(folder: Path, train, extra, test) -> Path:
    for split, images in (("train", train), ("extra", extra), ("test", test)):
        write_svhn(folder / f"{split}_32x32.mat", images)
    return folder


def write_cifar_batch(path: Path, images: np.ndarray) -> Path:
    """A CIFAR-10 python batch from upright RGB uint8 [N, 32, 32, 3]: protocol 2, and the array
    class referred to as numpy.core.multiarray, as in the real (Python 2 cPickle) files."""
    n = len(images)
    batch = {
        "batch_label": f"{path.name} of 6",
        "labels": [i % 10 for i in range(n)],
        "data": np.ascontiguousarray(images.astype(np.uint8).transpose(0, 3, 1, 2)).reshape(n, -1),
        "filenames": [f"image_{i}.png" for i in range(n)],
    }
    raw = pickle.dumps(batch, protocol=2)  # a GLOBAL opcode names the module as a text line
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n"))
    return path


def write_cifar(folder: Path, train: list[np.ndarray], test: np.ndarray) -> Path:
    """cifar-10-batches-py/: data_batch_1..5 (one array each) and test_batch."""
    for i, images in enumerate(train, start=1):
        write_cifar_batch(folder / f"data_batch_{i}", images)
    write_cifar_batch(folder / "test_batch", test)
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["airplane"]}, 2))
    return folder


def tar_folder(archive: Path, folder: Path, extra: dict[str, bytes] | None = None) -> Path:
    """A .tar.gz of folder (stored under its own name), plus members given as {name: bytes}."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def random_rgb(rng: np.random.Generator, n: int, h: int = 32, w: int = 32) -> np.ndarray:
    """Random uint8 RGB images [N, H, W, 3]: no flip, transpose or channel swap leaves one equal."""
    return rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def write_sha256sums(mirror: Path) -> Path:
    """A data mirror's SHA256SUMS, in sha256sum's format, of every <dataset>/<file> under it."""
    lines = [
        f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(mirror).as_posix()}\n"
        for f in sorted(mirror.glob("*/*"))
    ]
    (mirror / "SHA256SUMS").write_text("".join(lines))
    return mirror / "SHA256SUMS"

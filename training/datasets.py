"""The datasets' catalogue: what each dataset is, and how its files are read.

``DATASETS`` maps a dataset key to its spec: ``MnistLike`` (IDX files that torchvision reads) or
``AuthorsFiles`` (the files the papers' authors used, read by the reader named in the spec).
training.files finds and reads them, training.fetch downloads and verifies them (their URLs and
checksums: training.sources); training.data splits and preprocesses them.

Orientation: the ``.mat`` files of OMNIGLOT and Caltech-101 store each 28x28 image
column-major (MATLAB's ``A(:)``), so a stored vector v is read as image[i, j] = v[i + 28 j], the
``reshape(..., order='F')`` of the authors' loaders (Burda's IWAE, Tomczak's VampPrior,
sylvester-flows, the product-space S-VAE); Frey Faces and the ``.amat`` files are row-major
(image[i, j] = v[W i + j]), as the authors read them. SVHN's 'X' (32, 32, 3, N) holds image n's
channel c as X[:, :, c, n], rows first; CIFAR-10's rows are the R, G, B planes, each row-major.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

OMNIGLOT_N_VAL = 1345
"""OMNIGLOT validation images: the last ones of the shuffled training set (Burda et al.)."""
FREY_SPLIT = (1565, 200, 200)
"""Frey Faces train / validation / test sizes (the file holds exactly their sum, 1,965)."""
SVHN_N_VAL = 26032
"""SVHN validation images: the first ones of extra_32x32.mat
(docs/specs/spvae.md#3-data-and-preprocessing), as many as the test set."""


CIFAR_SIDE = 32


# The SVHN and CIFAR-10 decoders: numpy in, numpy out, ValueError on anything unexpected (the
# readers below turn it into a DatasetError naming the file and the fix).


def svhn_images(x: np.ndarray, limit: int | None = None) -> np.ndarray:
    """A Stanford SVHN 'X' variable (32, 32, 3, N) -> uint8 [min(N, limit), 3, 32, 32].

    Only the first ``limit`` images are copied (the validation split is the start of the 1.3 GB
    extra file), so the caller can drop the full array right away.
    """
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise ValueError(f"variable 'X' is {x.dtype} {x.shape}, expected uint8 (32, 32, 3, N)")
    return np.ascontiguousarray(x[..., :limit].transpose(3, 2, 0, 1))


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, text and numpy arrays; refuses every other global (code)."""

    allowed = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),  # the real files (numpy 1 era)
        ("numpy._core.multiarray", "_reconstruct"),  # numpy >= 2
        ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, not only numpy arrays")
        return super().find_class(module, name)


def cifar_batch(path: Path) -> np.ndarray:
    """A CIFAR-10 python batch file -> uint8 [N, 3, 32, 32] (planes R, G, B; rows first)."""
    try:
        batch = _ArraysOnly(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except Exception as e:  # pickle raises assorted errors on truncated or foreign files
        raise ValueError(
            f"unreadable as a CIFAR-10 python pickle ({type(e).__name__}: {e})"
        ) from None
    if not isinstance(batch, dict) or "data" not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"expected a dict with a 'data' entry, found {keys}")
    data = batch["data"]
    pixels = 3 * CIFAR_SIDE * CIFAR_SIDE
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape[1:] != (pixels,):
        found = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data)
        raise ValueError(f"'data' is {found}, expected uint8 (N, {pixels})")
    return np.ascontiguousarray(data).reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE)


class DatasetError(RuntimeError):
    """A dataset is missing or unreadable; the message says where we looked and how to fix it.

    ``problem`` is what is wrong without the fix (training.fetch words its own fix for a file it
    has just downloaded and not kept)."""

    def __init__(self, message: str, problem: str = ""):
        super().__init__(message)
        self.problem = problem or message


@dataclass(frozen=True)
class MnistLike:
    """An MNIST-format dataset (IDX files) that torchvision reads."""

    torchvision_name: str  # torchvision class and folder name: root/<name>/raw/*-ubyte
    debian_dir: str  # folder of the Debian package under /usr/share/datasets, holding *.gz
    install_hint: str

    files = (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    )
    binary = False  # grey levels 0..255


@dataclass(frozen=True)
class AuthorsFiles:
    """A dataset read from the files the papers' authors used (.amat text, MATLAB .mat)."""

    folder: str  # root/<folder>/<file>: the project's layout (the dataset key)
    authors_folder: str  # root/<authors_folder>/<file>: the authors' code's name, accepted too
    urls: tuple[str, ...]  # where each file comes from; the file name is the URL's last part
    read: Callable[[AuthorsFiles, tuple[Path, ...]], tuple[Tensor, ...]]
    """Reads the files into the splits as stored: (train, val, test), (train, test) or (all,)."""
    binary: bool = False  # already binary: never resampled
    archive_files: tuple[str, ...] = ()
    """When set, urls is one .tar.gz that unpacks to <folder>/ holding these files."""

    @property
    def files(self) -> tuple[str, ...]:
        return self.archive_files or tuple(u.rsplit("/", 1)[1] for u in self.urls)

    def url(self, path: Path) -> str:
        return self.urls[0] if self.archive_files else self.urls[self.files.index(path.name)]


def _refetch(spec: AuthorsFiles, path: Path) -> str:
    if spec.archive_files:
        return f"delete {path.parent}/ and extract it again from {spec.url(path)}"
    return f"delete it and download it again from {spec.url(path)}"


def _corrupt(spec: AuthorsFiles, path: Path, problem: str) -> DatasetError:
    return DatasetError(
        f"{path} is corrupt or not the expected file: {problem}; {_refetch(spec, path)}",
        problem=f"{path.name}: {problem}",
    )


# ---- Larochelle's binarised MNIST: text, one image per line, 784 space-separated 0/1 ----

AMAT_PIXELS = 28 * 28


def read_amat(path: Path) -> np.ndarray:
    """A binarised-MNIST .amat file as uint8 [N, 784] of 0/1, one row per line (row-major image).

    Vectorised over the bytes (the training file is ~80 MB of text); raises ValueError naming the
    line on anything but lines of 784 single-character 0/1 tokens.
    """
    text = path.read_bytes().replace(b"\r", b"").rstrip()
    if not text:
        raise ValueError("the file is empty")
    b = np.frombuffer(text, np.uint8)
    newlines = np.flatnonzero(b == 10)
    token = (b != 32) & (b != 10) & (b != 9)  # not whitespace

    def line_of(pos: int) -> int:  # 1-based line number of a byte position
        return int(np.searchsorted(newlines, pos)) + 1

    joined = np.flatnonzero(token[:-1] & token[1:])
    if joined.size:
        raise ValueError(f"line {line_of(joined[0])} has a multi-character value (expected 0/1)")
    starts = np.concatenate(([0], newlines + 1))
    counts = np.add.reduceat(token.view(np.uint8), starts, dtype=np.int32)
    bad = np.flatnonzero(counts != AMAT_PIXELS)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"line {i + 1} has {counts[i]} values, expected {AMAT_PIXELS} (truncated file?)"
        )
    values = b[token] - ord("0")  # uint8: characters below '0' wrap to large values
    wrong = np.flatnonzero(values > 1)
    if wrong.size:
        pos = int(np.flatnonzero(token)[wrong[0]])
        raise ValueError(f"line {line_of(pos)} has the value {chr(b[pos])!r} (expected 0 or 1)")
    return values.reshape(-1, AMAT_PIXELS)


def _read_static_mnist(spec: AuthorsFiles, paths: tuple[Path, ...]) -> tuple[Tensor, ...]:
    out = []
    for path in paths:  # train, valid, test
        try:
            flat = read_amat(path)
        except ValueError as e:
            raise _corrupt(spec, path, str(e)) from None
        out.append(torch.from_numpy(flat.astype(bool).reshape(-1, 1, 28, 28)))
    return tuple(out)


# ---- MATLAB .mat files (scipy.io.loadmat) ----


def _load_mat(spec: AuthorsFiles, path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    import scipy.io  # imported here: only these datasets need it

    try:
        mat = scipy.io.loadmat(str(path), variable_names=keys)
    except Exception as e:  # scipy raises assorted errors on truncated or foreign files
        problem = f"{path.name} is unreadable as a MATLAB .mat file ({type(e).__name__}: {e})"
        raise DatasetError(f"{path.parent}/{problem}; {_refetch(spec, path)}", problem) from None
    missing = [k for k in keys if k not in mat]
    if missing:
        found = sorted(name for name, *_ in scipy.io.whosmat(str(path)))
        raise _corrupt(spec, path, f"no variable {missing} (it holds {found})")
    return {k: mat[k] for k in keys}


def _matrix(spec, path, key, a: np.ndarray, rows: int = 0, cols: int = 0) -> np.ndarray:
    """Check a 2-D numeric variable's orientation/size (0 = any) and that it is finite."""
    if (
        a.ndim != 2
        or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool)
        or (rows and a.shape[0] != rows)
        or (cols and a.shape[1] != cols)
    ):
        want = f"{rows or 'N'} x {cols or 'N'}"
        raise _corrupt(spec, path, f"variable {key!r} is {a.dtype} {a.shape}, expected {want}")
    if a.size and not np.isfinite(a).all():
        raise _corrupt(spec, path, f"variable {key!r} has NaN or infinite values")
    return a


def _check_range(spec, path, key, a: np.ndarray, hi: float = 1.0, binary: bool = False) -> None:
    if a.size and (a.min() < 0 or a.max() > hi):
        raise _corrupt(
            spec,
            path,
            f"variable {key!r} has values in [{a.min()}, {a.max()}], outside [0, {hi:g}]",
        )
    if binary and not ((a == 0) | (a == 1)).all():
        raise _corrupt(spec, path, f"variable {key!r} is not binary (values other than 0 and 1)")


def column_major_images(flat: np.ndarray, h: int, w: int) -> np.ndarray:
    """[N, h*w] vectors stored column-major (MATLAB) -> [N, 1, h, w] images, i.e.
    image[i, j] = v[i + h j]: numpy's ``flat.reshape((-1, h, w), order='F')``."""
    return np.ascontiguousarray(flat.reshape(-1, w, h).transpose(0, 2, 1))[:, None]


def _read_omniglot(spec: AuthorsFiles, paths: tuple[Path, ...]) -> tuple[Tensor, ...]:
    (path,) = paths
    mat = _load_mat(spec, path, ("data", "testdata"))
    out = []
    for key in ("data", "testdata"):  # 784 x N, one column-major image per column
        a = _matrix(spec, path, key, mat[key], rows=AMAT_PIXELS).T.astype(np.float32)
        _check_range(spec, path, key, a)  # in float32, as the authors binarise it
        out.append(torch.from_numpy(column_major_images(a, 28, 28)))
    if out[0].shape[0] <= OMNIGLOT_N_VAL:
        raise _corrupt(
            spec,
            path,
            f"'data' holds {out[0].shape[0]} training images, not more than the "
            f"{OMNIGLOT_N_VAL} held out for validation",
        )
    return tuple(out)


def _read_caltech(spec: AuthorsFiles, paths: tuple[Path, ...]) -> tuple[Tensor, ...]:
    (path,) = paths
    keys = ("train_data", "val_data", "test_data")
    mat = _load_mat(spec, path, keys)
    out = []
    for key in keys:  # N x 784, one column-major image per row; 0 = object, 1 = background
        a = _matrix(spec, path, key, mat[key], cols=AMAT_PIXELS)
        _check_range(spec, path, key, a, binary=True)
        out.append(torch.from_numpy(column_major_images(a == 0, 28, 28)))  # 1 - data
    return tuple(out)


def _read_frey(spec: AuthorsFiles, paths: tuple[Path, ...]) -> tuple[Tensor, ...]:
    (path,) = paths
    a = _matrix(spec, path, "ff", _load_mat(spec, path, ("ff",))["ff"], rows=28 * 20)
    if a.dtype != np.uint8:  # the file holds uint8; accept an integral re-save of it
        _check_range(spec, path, "ff", a, hi=255)
        if not (a == np.round(a)).all():
            raise _corrupt(spec, path, "variable 'ff' has non-integer grey levels")
    if a.shape[1] != sum(FREY_SPLIT):
        raise _corrupt(
            spec, path, f"'ff' holds {a.shape[1]} images, expected {sum(FREY_SPLIT)} (Frey Faces)"
        )
    # 560 x N, one row-major 28 x 20 image per column: the authors' ff.T.reshape((-1, 1, 28, 20))
    return (torch.from_numpy(np.ascontiguousarray(a.T.astype(np.uint8)).reshape(-1, 1, 28, 20)),)


def _read_svhn(spec: AuthorsFiles, paths: tuple[Path, ...]) -> tuple[Tensor, ...]:
    """(train, val, test): the train file, the first SVHN_N_VAL images of extra, the test file."""
    out = []
    for path, limit in zip(paths, (None, SVHN_N_VAL, None), strict=True):  # train, extra, test
        x = _load_mat(spec, path, ("X",))["X"]  # the whole file: scipy cannot read a part
        try:
            out.append(torch.from_numpy(svhn_images(x, limit)))
        except ValueError as e:
            raise _corrupt(spec, path, str(e)) from None
        del x  # extra: ~1.6 GB decoded; only its start is kept
    return tuple(out)


def _read_cifar(spec: AuthorsFiles, paths: tuple[Path, ...]) -> tuple[Tensor, ...]:
    """(train, test): the five training batches concatenated in order, the test batch."""
    batches = []
    for path in paths:
        try:
            batches.append(cifar_batch(path))
        except ValueError as e:
            raise _corrupt(spec, path, str(e)) from None
    return torch.from_numpy(np.concatenate(batches[:-1])), torch.from_numpy(batches[-1])


DATASETS: dict[str, MnistLike | AuthorsFiles] = {
    "fashion_mnist": MnistLike(
        "FashionMNIST",
        "fashion-mnist",
        "apt-get install dataset-fashion-mnist (Debian/Ubuntu) or "
        "python -m training data --datasets fashion_mnist",
    ),
    "mnist": MnistLike("MNIST", "mnist", "python -m training data --datasets mnist"),
    "static_mnist": AuthorsFiles(
        "static_mnist",
        "MNIST_static",
        tuple(
            "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
            f"binarized_mnist_{split}.amat"
            for split in ("train", "valid", "test")
        ),
        _read_static_mnist,
        binary=True,
    ),
    "omniglot": AuthorsFiles(
        "omniglot",
        "OMNIGLOT",
        ("https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",),
        _read_omniglot,
    ),
    "caltech101": AuthorsFiles(
        "caltech101",
        "Caltech101Silhouettes",
        ("https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat",),
        _read_caltech,
        binary=True,
    ),
    "frey_faces": AuthorsFiles(
        "frey_faces",
        "Freyfaces",
        ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",),
        _read_frey,
    ),
    "svhn": AuthorsFiles(
        "svhn",
        "SVHN",
        tuple(
            f"http://ufldl.stanford.edu/housenumbers/{split}_32x32.mat"
            for split in ("train", "extra", "test")  # the order of the splits they give
        ),
        _read_svhn,
    ),
    "cifar10": AuthorsFiles(
        "cifar-10-batches-py",
        "cifar10/cifar-10-batches-py",
        ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
        _read_cifar,
        archive_files=(*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"),
    ),
}

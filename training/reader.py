"""A dataset's images read from its files: found by training.files, fetched first into the first
data root by training.fetch when ``download`` is set and they are under none (training.files'
docstring has the lookup order and the verified fetching), decoded by training.datasets."""

from __future__ import annotations

import functools
from pathlib import Path

from torch import Tensor

from training import fetch
from training.datasets import DATASETS, AuthorsFiles, DatasetError
from training.files import authors_folder, candidate_roots, locate, torchvision_root


def read_authors_files(dataset: str, spec: AuthorsFiles, roots: list[Path]):
    folder = authors_folder(spec, roots)
    if folder is None:
        root = roots[0] if roots else Path()
        how = (
            f"Download {spec.urls[0]} and extract it into {root}/ (it unpacks to {spec.folder}/)"
            if spec.archive_files
            else f"Download {' '.join(spec.urls)} into {root / spec.folder}/"
        )
        raise DatasetError(
            f"dataset {dataset!r} not found: looked for {', '.join(spec.files)} in "
            f"{spec.folder}/ (or {spec.authors_folder}/) under {[str(r) for r in roots]}. "
            f"Where there is network: python -m training data --datasets {dataset} (or set "
            f"data/download=true). Else: {how}, or point data/root (or $VAE_DATA_ROOT) at a "
            f"folder holding {spec.folder}/"
        )
    return spec.read(spec, tuple(folder / f for f in spec.files))


@functools.lru_cache(maxsize=4)
def read_images(dataset: str, root: str = "", download: bool = False) -> tuple[Tensor, ...]:
    """A dataset's images as its files split them, [N, C, H, W]; cached per process.

    (train, test) for the MNIST files, OMNIGLOT and CIFAR-10, (train, val, test) for static
    MNIST, Caltech-101 and SVHN, (all,) for Frey Faces. dtype says the scale: uint8 levels 0..255
    (MNIST, Frey Faces; RGB [N, 3, 32, 32] for SVHN and CIFAR-10), bool for binary images,
    float32 grey levels in [0, 1] (OMNIGLOT).
    """
    spec = DATASETS[dataset]
    roots = candidate_roots(root)
    if download and roots and locate(dataset, roots) is None:
        fetch.fetch(dataset, roots[0])  # from $VAE_DATA_MIRROR when it is set
    if isinstance(spec, AuthorsFiles):
        return read_authors_files(dataset, spec, roots)
    import torchvision  # imported here: it is slow to import and only needed once

    tv_root = torchvision_root(spec, roots)
    if tv_root is None:
        raise DatasetError(
            f"dataset {dataset!r} not found: looked for {spec.torchvision_name}/raw/*-ubyte and "
            f"{spec.debian_dir}/*.gz under {[str(r) for r in roots]}. Get it with: "
            f"{spec.install_hint} (or set data/download=true where there is network), or point "
            "data/root (or $VAE_DATA_ROOT) at a folder holding it"
        )
    cls = getattr(torchvision.datasets, spec.torchvision_name)
    try:
        splits = [cls(str(tv_root), train=t).data for t in (True, False)]
    except Exception as e:  # torchvision raises bare errors on truncated or foreign files
        raise DatasetError(
            f"dataset {dataset!r} under {tv_root} is unreadable ({type(e).__name__}: {e}); "
            f"delete the files and reinstall them ({spec.install_hint})"
        ) from None
    return tuple(s.unsqueeze(1).contiguous() for s in splits)

"""Where every dataset's files come from, and what was published about them (size, checksums).

``CATALOGUE`` maps each dataset of training.datasets.DATASETS to its published files, in the order
the dataset's reader takes them: each file's URLs (the first, then mirrors), its size in bytes where
one was published, and its checksums, each read from a public source named in ``provenance`` (none
is computed here). training.fetch downloads a file, checks it against all of these, then reads the
dataset with its own reader as a format check.

    dataset        files                             checksum (where it was published)
    fashion_mnist  4 IDX .gz                         md5 (torchvision), sha256 + size (TFDS)
    mnist          4 IDX .gz                         md5 (torchvision), size (TFDS)
    static_mnist   3 .amat                           sha256 + size (TFDS binarized_mnist)
    omniglot       chardata.mat                      git blob id (yburda/iwae's own repository)
    caltech101     caltech101_silhouettes_28_split1  md5 (DeepMind dm_nevis)
    frey_faces     frey_rawface.mat                  none published: size (pods, GPy) + format
    svhn           {train,extra,test}_32x32.mat      md5 (torchvision), sha256 + size (TFDS)
    cifar10        cifar-10-python.tar.gz            md5 (torchvision), sha256 (Keras), size

TFDS is tensorflow-datasets' ``tensorflow_datasets/url_checksums/<name>.txt`` (URL, size, sha256).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from training.datasets import DATASETS, DatasetError


@dataclass(frozen=True)
class Source:
    """One published file of a dataset: where it comes from and what it must be."""

    name: str  # the file's name, as stored in the data root and on a mirror
    urls: tuple[str, ...]  # the first is tried first; the others are mirrors of the same bytes
    size: int | None = None  # bytes, where published
    md5: str = ""
    sha256: str = ""
    git_sha1: str = ""  # git's blob id: sha1 of b"blob <size>\0" + the bytes
    provenance: str = ""  # where the size and checksums above were read

    @property
    def checksums(self) -> dict[str, str]:
        """The pinned checksums, by kind (sha256, md5, git-blob-sha1)."""
        kinds = (("sha256", self.sha256), ("md5", self.md5), ("git-blob-sha1", self.git_sha1))
        return {kind: value for kind, value in kinds if value}


TORCHVISION_MNIST = "torchvision datasets/mnist.py (resources)"
TFDS = "tensorflow-datasets url_checksums/{}.txt"


def _idx(base_urls: tuple[str, ...], pins, provenance: str) -> tuple[Source, ...]:
    """The four IDX files of an MNIST-format dataset: pins = (name, md5, size, sha256) each."""
    return tuple(
        Source(name, tuple(u + name for u in base_urls), size, md5, sha256, provenance=provenance)
        for name, md5, size, sha256 in pins
    )


LAROCHELLE = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
STANFORD = "http://ufldl.stanford.edu/housenumbers/"

# One file per line reads better than the formatter's layout of these tables.
# fmt: off
CATALOGUE: dict[str, tuple[Source, ...]] = {
    # torchvision's FashionMNIST.mirrors and md5s; TFDS lists the same URLs with size and sha256.
    "fashion_mnist": _idx(
        ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", 26421880,
             "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", 29515,
             "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", 4422102,
             "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", 5148,
             "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ),
        f"md5: {TORCHVISION_MNIST}; size, sha256: {TFDS.format('fashion_mnist')}",
    ),
    # torchvision's MNIST.mirrors and md5s. TFDS's sizes are of its copy of the same files
    # (storage.googleapis.com/cvdf-datasets/mnist/); its sha256s are not pinned here, since
    # nothing offline ties them to the bytes these URLs serve.
    "mnist": _idx(
        ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/"),
        (
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422, ""),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881, ""),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877, ""),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542, ""),
        ),
        f"md5: {TORCHVISION_MNIST}; size: {TFDS.format('mnist')}",
    ),
    # TFDS binarized_mnist.txt: these URLs, their sizes and sha256s.
    "static_mnist": tuple(
        Source(f"binarized_mnist_{split}.amat", (f"{LAROCHELLE}binarized_mnist_{split}.amat",),
               size, sha256=sha256, provenance=TFDS.format("binarized_mnist"))
        for split, size, sha256 in (
            ("train", 78400000, "ad693b29f94c14277b095f5238ddefbbdaaae0939789dd2f4f0205278cee3e4d"),
            ("valid", 15680000, "1de3d397c40fe8eeb33dafd4099a1f665ec01e96d9be234aaeeac8a34930e2e2"),
            ("test", 15680000, "e6687bfea3f820c174f33b7865140b2a2dd2930ef786f35d45795fc193b5ab2c"),
        )
    ),
    # The URL serves the blob of yburda/iwae's master, unchanged since commit 78a6075 (2016);
    # its git tree pins the blob id. No size is published (the blob id covers it).
    "omniglot": (
        Source(
            "chardata.mat",
            ("https://github.com/yburda/iwae/raw/master/datasets/OMNIGLOT/chardata.mat",),
            git_sha1="016a3536ffe5e1d38e42563a18d7a78bfaf643ec",
            provenance="git tree of github.com/yburda/iwae at 78a6075484bd (the authors' repo)",
        ),
    ),
    # dm_nevis's silhouettes_28_dataset pins this URL's md5 (download_util checks it as md5).
    "caltech101": (
        Source(
            "caltech101_silhouettes_28_split1.mat",
            ("https://people.cs.umass.edu/~marlin/data/caltech101_silhouettes_28_split1.mat",),
            md5="4483e9c14b188fd09937f9ea6f9ea777",
            provenance="google-deepmind/dm_nevis datasets_storage/handlers/silhouettes.py",
        ),
    ),
    # No checksum is published for Roweis's file; its size is (560 x 1965 uint8 + the MAT
    # header), so a download is checked by size and by reading it (format).
    "frey_faces": (
        Source(
            "frey_rawface.mat",
            ("https://cs.nyu.edu/~roweis/data/frey_rawface.mat",),
            size=1100584,
            provenance="size: 'brendan_faces' in sods/ods pods/data_resources.json and "
            "SheffieldML/GPy util/data_resources.json; checksum: none published",
        ),
    ),
    # torchvision svhn.py split_list md5s; TFDS svhn_cropped.txt: these URLs, sizes, sha256s.
    "svhn": tuple(
        Source(f"{split}_32x32.mat", (f"{STANFORD}{split}_32x32.mat",), size, md5, sha256,
               provenance=f"md5: torchvision datasets/svhn.py; size, sha256: "
               f"{TFDS.format('svhn_cropped')}")
        for split, md5, size, sha256 in (
            ("train", "e26dedcc434d2e4c54c9b2d4a06d8373", 182040794,
             "435e94d69a87fde4fd4d7f3dd208dfc32cb6ae8af2240d066de1df7508d083b8"),
            ("extra", "a93ce644f1a588dc4d68dda5feec44a7", 1329278602,
             "a133a4beb38a00fcdda90c9489e0c04f900b660ce8a316a5e854838379a71eb3"),
            ("test", "eb5a983be6a315427106f1b164d9cef3", 64275384,
             "cdce80dfb2a2c4c6160906d0bd7c68ec5a99d7ca4831afa54f09182025b6a75b"),
        )
    ),
    # One archive, unpacked into cifar-10-batches-py/ (kept next to it, so it can be re-checked).
    "cifar10": (
        Source(
            "cifar-10-python.tar.gz",
            ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            size=170498071,
            md5="c58f30108f718f92721af3b95e74349a",
            sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
            provenance="md5: torchvision datasets/cifar.py (tgz_md5); sha256: keras "
            "src/datasets/cifar10.py (file_hash); size: Nervana ngraph's CIFAR10 loader",
        ),
    ),
}
# fmt: on


def known(dataset: str) -> bool:
    """Whether ``dataset`` is one of ours (training.datasets.DATASETS)."""
    return dataset in DATASETS


def unknown(dataset: str) -> DatasetError:
    """The error for a dataset name that is not one of ours, naming the known ones."""
    return DatasetError(f"unknown dataset {dataset!r}; known: {', '.join(DATASETS)}")


def sources(dataset: str) -> tuple[Source, ...]:
    """The dataset's published files; a DatasetError for an unknown dataset or one without any."""
    if not known(dataset):
        raise unknown(dataset)
    if dataset not in CATALOGUE:
        raise DatasetError(
            f"dataset {dataset!r} has no download source (training.sources.CATALOGUE), so it "
            "cannot be fetched; put its files under a data root by hand"
        )
    return CATALOGUE[dataset]


def hosts(dataset: str) -> str:
    """The hosts the dataset's files come from, first URLs first (for --list)."""
    seen = dict.fromkeys(urlsplit(u).hostname for s in CATALOGUE[dataset] for u in s.urls)
    return ", ".join(h for h in seen if h)


def checksum_summary(dataset: str) -> str:
    """What a download of the dataset is checked against, e.g. "sha256+md5+size"."""
    kinds: dict[str, None] = {}
    for s in CATALOGUE[dataset]:
        kinds |= dict.fromkeys(s.checksums)
        if s.size is not None:
            kinds["size"] = None
    if not any(k != "size" for k in kinds):
        return "+".join([*kinds, "format"]) + " (no checksum published)"
    return "+".join(kinds)

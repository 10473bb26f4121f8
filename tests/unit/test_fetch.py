"""python -m training data and data/download=true: every dataset fetched through a real HTTP server
(a mirror serving small files in the real on-disk formats, with its SHA256SUMS), verified, laid out
where the loader reads it, and loaded by the real loader; the cheap check of what is present, a
Debian package's copy, and the catalogue's checksums and URLs. Each way a download can fail is one
error line naming the URL and the cause, and leaves no file behind: test_fetch_failures.py."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import shutil
import subprocess
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torchvision import datasets as tv

from tests import formats
from tests.conftest import make_mnist_like
from training import fetch, sources
from training.__main__ import main
from training.config import DataConfig
from training.data import load_data, read_images
from training.datasets import DATASETS, FREY_SPLIT, DatasetError
from training.download import digests
from training.sources import CATALOGUE


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the mirror folder, records each request, and cuts the files in ``server.cut`` short
    (the full Content-Length announced, then the connection closed)."""

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        cut = self.server.cut.get(self.path)
        if cut is None:
            return super().do_GET()
        data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[:cut])
        self.close_connection = True


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A real HTTP server on 127.0.0.1 (a free port) serving tmp_path/www; shut down afterwards."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    www = tmp_path / "www"
    www.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(www))
    )
    httpd.requests, httpd.cut = [], {}
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            www=www, url=f"http://127.0.0.1:{httpd.server_port}", requests=httpd.requests,
            cut=httpd.cut,
        )  # fmt: skip
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def mirror(server, isolated_cache, monkeypatch):
    """Every dataset's published files, small and in the real formats, on the server at
    <url>/mirror/<dataset>/<file>, with SHA256SUMS; a fresh data root to fetch into."""
    monkeypatch.setattr("training.datasets.OMNIGLOT_N_VAL", 10)  # 40 training images suffice
    rng = np.random.default_rng(0)
    m = server.www / "mirror"
    for dataset in ("fashion_mnist", "mnist"):
        make_mnist_like(m / dataset, "debian", n_train=30, n_test=10)
    binary = lambda n: formats.random_binary(rng, n)  # noqa: E731
    formats.write_static_mnist(m / "static_mnist", binary(20), binary(8), binary(6))
    grey = lambda n: formats.random_grey(rng, n)  # noqa: E731
    formats.write_omniglot(m / "omniglot" / "chardata.mat", grey(40), grey(12))
    caltech = m / "caltech101" / "caltech101_silhouettes_28_split1.mat"
    formats.write_caltech(caltech, binary(15), binary(7), binary(5))
    faces = rng.integers(0, 256, (sum(FREY_SPLIT), 28, 20))
    formats.write_frey(m / "frey_faces" / "frey_rawface.mat", faces)
    rgb = lambda n: formats.random_rgb(rng, n)  # noqa: E731
    formats.write_svhn_files(m / "svhn", rgb(12), rgb(9), rgb(7))
    batches = formats.write_cifar(server.www / "cifar-10-batches-py", [rgb(4)] * 5, rgb(6))
    (m / "cifar10").mkdir()
    formats.tar_folder(m / "cifar10" / "cifar-10-python.tar.gz", batches)
    formats.write_sha256sums(m)
    return SimpleNamespace(
        path=m, url=f"{server.url}/mirror", root=isolated_cache / "root", server=server
    )


def run(capsys, *argv) -> tuple[int, list[str], list[str]]:
    code = main(["data", *argv])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


SHAPES = {  # (split sizes of the files written above, image shape)
    "fashion_mnist": ((30, 10), (1, 28, 28)),
    "mnist": ((30, 10), (1, 28, 28)),
    "static_mnist": ((20, 8, 6), (1, 28, 28)),
    "omniglot": ((40, 12), (1, 28, 28)),
    "caltech101": ((15, 7, 5), (1, 28, 28)),
    "frey_faces": ((1965,), (1, 28, 20)),
    "svhn": ((12, 9, 7), (3, 32, 32)),
    "cifar10": ((20, 6), (3, 32, 32)),
}


def test_every_dataset_is_fetched_through_the_mirror_and_loads(mirror, capsys):
    code, out, err = run(capsys, "--all", "--root", str(mirror.root), "--mirror", mirror.url)
    assert (code, err) == (0, [])
    assert out[0] == f"data root: {mirror.root} (--root)"
    assert "its SHA256SUMS replace the pinned checksums" in out[1]
    downloaded = [line for line in out if ": downloaded " in line]
    assert len(downloaded) == sum(len(s) for s in CATALOGUE.values()) == 18
    assert all("verified by sha256+format" in line for line in downloaded)
    assert f"{mirror.url}/svhn/extra_32x32.mat" in "\n".join(out)
    for dataset, (sizes, shape) in SHAPES.items():
        images = read_images(dataset, str(mirror.root))
        assert tuple(len(x) for x in images) == sizes, dataset
        assert all(tuple(x.shape[1:]) == shape for x in images), dataset
        data = load_data(DataConfig(dataset=dataset, root=str(mirror.root)))
        assert tuple(data.train.shape[1:]) == shape and len(data.val) > 0, dataset
    # The layout the loader reads, the CIFAR-10 archive kept beside its files; nothing else.
    kept = files_under(mirror.root)
    assert {"fashion-mnist/train-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"} <= set(
        kept
    )
    assert {"cifar-10-python.tar.gz", "cifar-10-batches-py/test_batch"} <= set(kept)
    assert "frey_faces/frey_rawface.mat" in kept and "svhn/extra_32x32.mat" in kept
    assert not [f for f in kept if ".fetch-" in f or ".part" in f]


def test_a_second_fetch_says_present_and_downloads_nothing(mirror, capsys):
    args = ("--datasets", "frey_faces", "svhn", "cifar10", "--root", str(mirror.root))
    assert run(capsys, *args, "--mirror", mirror.url)[0] == 0
    mirror.server.requests.clear()
    code, out, _ = run(capsys, *args, "--mirror", mirror.url)
    assert code == 0
    assert [line.split(": ")[1].split()[0] for line in out[2:]] == ["present"] * 5
    assert mirror.server.requests == ["/mirror/SHA256SUMS"]  # checked against it, not fetched
    # Without the mirror the pinned checksums apply: our small files are not the published ones.
    code, _, err = run(capsys, "--datasets", "svhn", "--root", str(mirror.root))
    assert code == 2 and "train_32x32.mat is present but fails its check" in err[0]
    assert "delete it and fetch it again (python -m training data --datasets svhn --root" in err[0]


def test_the_mirror_variable_serves_data_download_in_a_trial(mirror, monkeypatch):
    monkeypatch.setenv(fetch.MIRROR_ENV, mirror.url)
    with pytest.raises(DatasetError, match="not found"):
        read_images("caltech101", str(mirror.root))
    train, val, test = read_images("caltech101", str(mirror.root), download=True)
    assert (len(train), len(val), len(test)) == (15, 7, 5)
    assert files_under(mirror.root) == [
        "caltech101/.caltech101.mirror.json",  # the sizes the mirror served (check_available)
        "caltech101/caltech101_silhouettes_28_split1.mat",
    ]
    fashion, _ = read_images("fashion_mnist", str(mirror.root), download=True)  # torchvision's
    assert fashion.shape == (30, 1, 28, 28)  # reader, on the flat .gz layout it unpacks


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_git_blob_ids_are_gits_own(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(range(256)) * 5)
    ours = digests(path, ["git-blob-sha1"])["git-blob-sha1"]
    assert ours == subprocess.run(["git", "hash-object", str(path)], capture_output=True,
                                  text=True, check=True).stdout.strip()  # fmt: skip


def test_list_shows_sources_sizes_checksums_and_what_is_present(mirror, capsys):
    code, out, _ = run(capsys, "--list", "--root", str(mirror.root))
    assert code == 0 and out[0] == f"data root: {mirror.root} (--root)"
    rows = {line.split()[0]: line for line in out[2:10]}
    assert set(rows) == set(DATASETS) and all(r.endswith("missing") for r in rows.values())
    assert "ufldl.stanford.edu" in rows["svhn"] and "1.58 GB" in rows["svhn"]
    assert "sha256+md5+size" in rows["cifar10"] and "git-blob-sha1" in rows["omniglot"]
    assert "size+format (no checksum published)" in rows["frey_faces"]
    assert any("keras" in line and line.strip().startswith("cifar10:") for line in out)
    run(capsys, "--datasets", "frey_faces", "--root", str(mirror.root), "--mirror", mirror.url)
    _, out, _ = run(capsys, "--list", "--datasets", "frey_faces", "--root", str(mirror.root))
    assert out[2].endswith("present")


def test_an_unknown_dataset_is_exit_2_before_anything_is_written(mirror, capsys):
    code, out, err = run(capsys, "--datasets", "frey_faces", "nope", "--root", str(mirror.root))
    assert (code, out) == (2, []) and len(err) == 1
    assert err[0] == f"error: unknown dataset 'nope'; known: {', '.join(DATASETS)}"
    assert not mirror.root.exists() and mirror.server.requests == []
    assert run(capsys, "--root", str(mirror.root))[0] == 2  # no dataset named: a usage error


def test_check_available_is_cheap_and_its_fixes_work(mirror, monkeypatch, tmp_path):
    root = str(mirror.root)
    with pytest.raises(DatasetError, match="not found") as e:
        fetch.check_available("frey_faces", root)
    assert f"python -m training data --datasets frey_faces --root {root}" in str(e.value)
    fetch.check_available("frey_faces", root, download=True)  # it has a source
    with monkeypatch.context() as m:
        m.delitem(CATALOGUE, "frey_faces")
        with pytest.raises(DatasetError, match="no download source"):
            fetch.check_available("frey_faces", root, download=True)
    with pytest.raises(DatasetError, match="unknown dataset 'nope'; known: fashion_mnist"):
        fetch.check_available("nope", root)
    locked = tmp_path / "locked"  # a root that cannot be written: no fetch-into-it advice
    locked.write_text("a file, not a folder")
    with pytest.raises(DatasetError, match="cannot be written here") as e:
        fetch.check_available("svhn", str(locked / "sub"))
    assert "--root DIR" in str(e.value) and f"--root {locked}" not in str(e.value)
    # Present with the published size: fine; a size that differs: named, without decoding.
    folder = mirror.root / "frey_faces"
    folder.mkdir(parents=True)
    shutil.copy(mirror.path / "frey_faces" / "frey_rawface.mat", folder)
    # scipy writes the 1,965 faces in exactly the 1,100,584 bytes pods and GPy publish
    assert (folder / "frey_rawface.mat").stat().st_size == sources.CATALOGUE["frey_faces"][0].size
    fetch.check_available("frey_faces", root)
    (folder / "frey_rawface.mat").write_bytes(b"short")
    with pytest.raises(DatasetError, match=r"frey_rawface.mat is 5 bytes, but .* published"):
        fetch.check_available("frey_faces", root)


def test_the_catalogue_covers_every_dataset_with_the_loaders_files_and_urls():
    assert set(CATALOGUE) == set(DATASETS)
    for dataset, spec in DATASETS.items():
        names = [s.name for s in CATALOGUE[dataset]]
        if hasattr(spec, "urls"):  # the authors' files: the same URLs the loader's errors name
            assert [s.urls[0] for s in CATALOGUE[dataset]] == list(spec.urls), dataset
            assert names == [u.rsplit("/", 1)[1] for u in spec.urls]
        else:
            assert names == [f"{f}.gz" for f in spec.files]
        assert all(s.checksums or s.size for s in CATALOGUE[dataset]), dataset


def test_the_pinned_md5s_and_urls_are_the_installed_torchvisions():
    for dataset, cls in (("mnist", tv.MNIST), ("fashion_mnist", tv.FashionMNIST)):
        srcs = CATALOGUE[dataset]
        assert [(s.name, s.md5) for s in srcs] == [tuple(r) for r in cls.resources]
        assert [s.urls for s in srcs] == [tuple(m + s.name for m in cls.mirrors) for s in srcs]
    svhn = {url: md5 for url, _, md5 in tv.SVHN.split_list.values()}
    assert {s.urls[0]: s.md5 for s in CATALOGUE["svhn"]} == svhn
    (cifar,) = CATALOGUE["cifar10"]
    assert (cifar.urls[0], cifar.name, cifar.md5) == (
        tv.CIFAR10.url,
        tv.CIFAR10.filename,
        tv.CIFAR10.tgz_md5,
    )


def test_a_downloaded_dataset_reads_the_same_as_the_mirrors_files(mirror, capsys):
    run(capsys, "--datasets", "svhn", "--root", str(mirror.root), "--mirror", mirror.url)
    for name in ("train_32x32.mat", "extra_32x32.mat", "test_32x32.mat"):
        ours = (mirror.root / "svhn" / name).read_bytes()
        assert ours == (mirror.path / "svhn" / name).read_bytes()
    train, _, _ = read_images("svhn", str(mirror.root))
    assert train.dtype == torch.uint8


def test_a_package_copy_that_is_not_the_published_file_is_noted_and_fetched_anew(
    mirror, monkeypatch, capsys
):
    """Debian's dataset-fashion-mnist recompresses the .gz files (no file name in the header: 24
    bytes shorter, other checksums): the loader reads that copy, but it is not verified; without
    --root the published files are fetched into the default root, which the loader reads first."""
    system = mirror.server.www / "usr-share-datasets"
    for f in (mirror.path / "fashion_mnist").iterdir():
        (system / "fashion-mnist").mkdir(parents=True, exist_ok=True)
        data = gzip.decompress(f.read_bytes())
        (system / "fashion-mnist" / f.name).write_bytes(gzip.compress(data, mtime=0))
    monkeypatch.setattr("training.files.SYSTEM_ROOTS", (system,))
    monkeypatch.setenv("VAE_DATA_ROOT", str(mirror.root))
    fetch.check_available("fashion_mnist")  # the package's copy: there, sizes not compared
    code, out, err = run(capsys, "--datasets", "fashion_mnist", "--mirror", mirror.url)
    assert (code, err) == (0, [])
    assert out[0].startswith(f"data root: {mirror.root} ($VAE_DATA_ROOT")
    assert "train-images-idx3-ubyte.gz is not the published file: its sha256 is" in out[2]
    assert out[2].endswith(f"fetching the published files into {mirror.root}")
    assert sum(": downloaded " in line for line in out) == 4
    # The same from a sweep's driver (sweeps.engine.cli): data/root unset, the mirror from the
    # variable.
    monkeypatch.setenv(fetch.MIRROR_ENV, mirror.url)
    done = fetch.fetch("fashion_mnist", "")
    assert [d.path.parent for d in done] == [mirror.root / "fashion-mnist"] * 4
    assert all(str(d).startswith("fashion_mnist: present ") for d in done)
    # A copy there that passes its checks is used where it is, nothing fetched.
    shutil.rmtree(mirror.root)
    shutil.copytree(mirror.path / "fashion_mnist", system / "fashion-mnist", dirs_exist_ok=True)
    assert {d.path.parent for d in fetch.fetch("fashion_mnist", "")} == {system / "fashion-mnist"}
    assert not mirror.root.exists()


def test_a_package_copy_is_verified_by_its_packages_md5sums(mirror, monkeypatch, capsys, tmp_path):
    """The recompressed copy a Debian package installed is verified by the md5sums dpkg keeps for
    it (and by reading it), and used where it is; a byte changed since is not."""
    system = mirror.server.www / "usr-share-datasets"
    (system / "fashion-mnist").mkdir(parents=True)
    lines = []
    for f in sorted((mirror.path / "fashion_mnist").iterdir()):
        copy = system / "fashion-mnist" / f.name
        copy.write_bytes(gzip.compress(gzip.decompress(f.read_bytes()), mtime=0))
        lines.append(f"{hashlib.md5(copy.read_bytes()).hexdigest()}  {str(copy)[1:]}\n")
    info = tmp_path / "dpkg-info"
    info.mkdir()
    (info / "dataset-fashion-mnist.md5sums").write_text("".join(lines))
    monkeypatch.setattr("training.files.SYSTEM_ROOTS", (system,))
    monkeypatch.setattr(fetch, "DPKG_INFO", info)
    monkeypatch.setenv("VAE_DATA_ROOT", str(mirror.root))
    code, out, err = run(capsys, "--datasets", "fashion_mnist", "--mirror", mirror.url)
    assert (code, err) == (0, [])
    done = [line for line in out if line.startswith("fashion_mnist: ")]
    assert len(done) == 4 and not mirror.root.exists()  # nothing fetched
    assert all("verified by md5 of the Debian package dataset-fashion-mnist" in d for d in done)
    damaged = system / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert fetch.package_copy("fashion_mnist", [damaged]) is None


def test_files_a_mirror_served_are_checked_against_the_mirrors_sizes(mirror, monkeypatch, capsys):
    """A mirror's files are not the published ones (their sizes differ): the sweep's cheap check
    on a node compares them with the sizes the mirror served, noted when they were fetched."""
    monkeypatch.setenv("VAE_DATA_ROOT", str(mirror.root))
    assert run(capsys, "--datasets", "mnist", "--mirror", mirror.url)[0] == 0
    fetch.check_available("mnist")  # smaller than the published files, as the mirror served them
    path = mirror.root / "mnist" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DatasetError, match="bytes, but .* the mirror served .truncated"):
        fetch.check_available("mnist")
    # Fetched again through the mirror, it is whole, and the check passes again.
    path.unlink()
    assert run(capsys, "--datasets", "mnist", "--mirror", mirror.url)[0] == 0
    fetch.check_available("mnist")

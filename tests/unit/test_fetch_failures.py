"""python -m training data: each way a download can fail (404, a refused connection, a truncated or
tampered file, a pinned checksum that differs) is one error line naming the URL and the cause, and
leaves no file behind; the next URL is tried when one fails. The mirror on a real HTTP server that
serves these downloads: test_fetch.py."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
from dataclasses import replace

import numpy as np
import pytest

from tests import formats
from tests.unit import test_fetch
from tests.unit.test_fetch import files_under, run
from training.download import digests
from training.sources import CATALOGUE

server = test_fetch.server  # the fixtures: a real HTTP server on 127.0.0.1, the mirror it serves
mirror = test_fetch.mirror


def closed_port_url() -> str:
    with socket.socket() as s:  # a port nothing listens on once this socket is closed
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def damage(mirror, kind: str) -> tuple[str, str]:
    """Break the mirror's frey_rawface.mat one way: (URL named by the error, expected cause)."""
    path = mirror.path / "frey_faces" / "frey_rawface.mat"
    url = f"{mirror.url}/frey_faces/frey_rawface.mat"
    data = path.read_bytes()
    if kind == "404":
        path.unlink()
        return url, "HTTP 404 File not found"
    if kind == "refused":
        return f"{closed_port_url()}/SHA256SUMS", "Connection refused"
    if kind == "tampered":  # one byte changed after SHA256SUMS was written
        path.write_bytes(data[:500] + bytes([data[500] ^ 1]) + data[501:])
        return url, "its sha256 is .* but .*/SHA256SUMS has .*damaged or tampered with"
    if kind == "short file":  # served whole, but shorter than the file SHA256SUMS lists
        path.write_bytes(data[:-100])
        return url, "its sha256 is .* not the published file"
    if kind == "unlisted":
        formats.write_sha256sums(mirror.path)
        sums = mirror.path / "SHA256SUMS"
        sums.write_text("".join(x for x in sums.read_text().splitlines(True) if "frey" not in x))
        return f"{mirror.url}/SHA256SUMS", "does not list frey_faces/frey_rawface.mat"
    if kind == "not the format":  # listed with its checksum, but not a Frey Faces file
        formats.write_frey(path, np.zeros((10, 28, 20)))
        formats.write_sha256sums(mirror.path)
        return url, "fails the format check .*holds 10 images, expected 1965"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind", ["404", "refused", "tampered", "short file", "unlisted", "not the format"]
)
def test_a_failed_download_is_one_line_naming_the_url_and_leaves_nothing(mirror, capsys, kind):
    url, cause = damage(mirror, kind)
    via = url.rsplit("/", 1)[0] if kind == "refused" else mirror.url
    args = ("--datasets", "frey_faces", "--root", str(mirror.root), "--mirror", via)
    code, out, err = run(capsys, *args)
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: ") and url in err[0]
    assert re.search(cause, err[0]), err[0]
    assert not mirror.root.exists() or files_under(mirror.root) == []


@pytest.mark.parametrize("cut", [0, 1, 128, -1])
def test_a_connection_that_ends_early_is_refused_at_any_byte(mirror, capsys, cut):
    """hypothesis is not installed: a few cut points, the first and last bytes included."""
    name = "/mirror/static_mnist/binarized_mnist_valid.amat"
    size = (mirror.server.www / name.lstrip("/")).stat().st_size
    mirror.server.cut[name] = cut % size
    args = ("--datasets", "static_mnist", "--root", str(mirror.root), "--mirror", mirror.url)
    code, _, err = run(capsys, *args)
    assert code == 2, err
    assert f"could not download {mirror.url}/static_mnist/binarized_mnist_valid.amat: " in err[0]
    assert f"truncated: received {cut % size:,} of the {size:,} bytes announced" in err[0]
    assert not mirror.root.exists() or files_under(mirror.root) == []


def pin(monkeypatch, dataset: str, **changes) -> None:
    """Point a catalogue entry (our data, not a component) somewhere else: e.g. the local server."""
    (src,) = CATALOGUE[dataset]
    monkeypatch.setitem(CATALOGUE, dataset, (replace(src, **changes),))


def test_a_pinned_checksum_that_differs_is_refused_without_a_mirror(mirror, monkeypatch, capsys):
    url = f"{mirror.url}/caltech101/caltech101_silhouettes_28_split1.mat"
    pin(monkeypatch, "caltech101", urls=(url,))  # our small file: not the md5 dm_nevis published
    code, _, err = run(capsys, "--datasets", "caltech101", "--root", str(mirror.root))
    assert code == 2 and f"could not download {url}: its md5 is " in err[0]
    assert "but the catalogue (training.sources) has 4483e9c14b188fd09937f9ea6f9ea777" in err[0]
    assert not mirror.root.exists() or files_under(mirror.root) == []
    # The same file with its own checksum pinned is downloaded and verified by it.
    ours = (mirror.path / "caltech101" / "caltech101_silhouettes_28_split1.mat").read_bytes()
    pin(monkeypatch, "caltech101", urls=(url,), md5=hashlib.md5(ours).hexdigest())
    code, out, _ = run(capsys, "--datasets", "caltech101", "--root", str(mirror.root))
    assert code == 0 and "verified by md5+format" in out[-1]


def test_the_next_url_is_tried_when_one_fails(mirror, monkeypatch, capsys):
    good = f"{mirror.url}/omniglot/chardata.mat"
    blob = digests(mirror.path / "omniglot" / "chardata.mat", ["git-blob-sha1"])["git-blob-sha1"]
    pin(monkeypatch, "omniglot", urls=(f"{mirror.url}/gone/chardata.mat", good), git_sha1=blob)
    code, out, _ = run(capsys, "--datasets", "omniglot", "--root", str(mirror.root))
    assert code == 0 and f"from {good}, verified by git-blob-sha1+format" in out[-1]
    pin(monkeypatch, "omniglot", urls=(f"{mirror.url}/gone/chardata.mat",))
    shutil.rmtree(mirror.root)
    code, _, err = run(capsys, "--datasets", "omniglot", "--root", str(mirror.root))
    assert code == 2 and "HTTP 404" in err[0] and "--mirror URL" in err[0]  # the other fix

"""A local S3 server for the tests: moto's, in this process (a thread), on 127.0.0.1 and a free
port, with one bucket ``sweeps``; stopped when the test ends.

    from tests import s3 as s3_server
    s3 = s3_server.s3  # the fixture; yields a pyarrow S3FileSystem on it
"""

from __future__ import annotations

import socket

import pyarrow.fs as pafs
import pytest


@pytest.fixture
def s3(monkeypatch):
    """A local S3 endpoint with one bucket; AWS_* variables point every client at it (pyarrow
    reads AWS_ENDPOINT_URL in s3:// URIs), including Ray's workers when Ray starts after this
    fixture. Yields a filesystem on it for the test's own checks."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for key, value in {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    local = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True
    )
    local.create_dir("sweeps")
    try:
        yield local
    finally:
        server.stop()

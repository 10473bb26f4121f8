"""Uploaded by the rehearsal's first `ray submit`: the cluster's nodes, and what a task on each
worker sees (the S3 endpoint of its shell init, the datasets its setup fetched).

Prints one line ``NODES {json}`` for rehearse.py to read."""

import json
import os
import pathlib

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init()
nodes = [n for n in ray.nodes() if n["Alive"]]


@ray.remote(num_gpus=1, num_cpus=1)
def probe(bucket: str):
    import pyarrow.fs as pafs

    default = pathlib.Path.home() / ".cache" / "vae-sweeps" / "data"
    root = pathlib.Path(os.environ.get("VAE_DATA_ROOT", default))
    problems = []
    if not sorted((root / "mnist").glob("*-ubyte.gz")):
        problems.append(f"no MNIST under {root}/mnist")
    try:
        fs, path = pafs.FileSystem.from_uri(f"s3://{bucket}/")
        fs.get_file_info(pafs.FileSelector(path))
    except Exception as e:  # noqa: BLE001 - reported
        problems.append(f"S3 at {os.environ.get('AWS_ENDPOINT_URL')}: {e}")
    return ray.util.get_node_ip_address(), problems


workers = [n for n in nodes if n["Resources"].get("GPU")]
refs = [
    probe.options(
        scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)
    ).remote(os.environ.get("REHEARSAL_BUCKET", "vae-rehearsal"))
    for n in workers
]
seen = dict(ray.get(refs, timeout=120))
problems = {ip: "; ".join(p) for ip, p in seen.items() if p}
heads = [n["NodeManagerAddress"] for n in nodes if not n["Resources"].get("CPU")]
if len(heads) != 1:
    problems["head"] = f"{len(heads)} nodes without CPUs: {heads}"
report = {"driver": ray.util.get_node_ip_address(), "workers": sorted(seen), "problems": problems}
print("NODES " + json.dumps(report), flush=True)

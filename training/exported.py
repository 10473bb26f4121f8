"""The commands on an exported model (training.export), dispatched by ``python -m training``:

    python -m training sample --checkpoint DIR [--n 64] [--out grid.png] [--seed 0]
        [--temperature 1.0]
    python -m training evaluate --checkpoint DIR [--k 1000] [--seed 0] [--device cpu]
    python -m training export --checkpoint CKPT --out DIR [--record JSON]

``sample`` draws n images from the prior (training.evaluate.sample_grids: the decoder's mean
image where the family has one) and writes them as one PNG grid. ``evaluate`` scores the model on
its config's test set (training.data.load_data; training.evaluate.estimate_log_likelihood with k
importance samples) and prints one JSON line. ``export`` writes an export folder from a training
checkpoint folder (a --run-dir, a Tune trial's checkpoint_NNNNNN/); ``python -m results export``
runs it for a cell's winner, with the record (validation, test numbers, provenance) it read from
the storage. Bad input is one ``error:`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

from training import progress
from training.data import DatasetError, load_data
from training.errors import ConfigError
from training.evaluate import estimate_log_likelihood, sample_grids
from training.export import ExportError, load_read, read, write
from training.trainer import resolve_device

COMMANDS = ("sample", "evaluate", "export")


class UsageError(ValueError):
    """Bad command-line flags."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


def parser(command: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"python -m training {command}", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, required=True,
                   help="an export folder (python -m results export)" if command != "export"
                   else "a training checkpoint folder (holding state.pt)")  # fmt: skip
    if command == "sample":
        p.add_argument("--n", type=int, default=64, help="how many images (default 64)")
        p.add_argument("--out", type=Path, default=Path("samples.png"), help="the PNG to write")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--temperature", type=float, default=1.0,
                       help="the prior's temperature, for families that take one")  # fmt: skip
    elif command == "evaluate":
        p.add_argument("--k", type=int, default=1000, help="importance samples per image")
        p.add_argument("--seed", type=int, default=0, help="the importance sampling's seed")
        p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
        p.add_argument("--data-root", default=None,
                       help="where the dataset is (default: the config's data/root, then the "
                       "usual lookup: $VAE_DATA_ROOT, ...)")  # fmt: skip
    else:
        p.add_argument("--out", type=Path, required=True, help="the export folder to create")
        p.add_argument("--record", type=Path, default=None,
                       help="a JSON file of what to record beside the weights (config, "
                       "validation, test, provenance)")  # fmt: skip
    return p


def pixels(cfg, x_shape) -> SimpleNamespace:
    """What training.evaluate.to_pixels needs to turn model-space images into grey levels: the
    training set's pixel mean and the logit transform's lam, when the config applies them (read
    from the dataset: the export does not hold the training images' mean)."""
    if cfg.data.logit or (not cfg.data.binarize and cfg.data.center):
        return load_data(cfg.data)
    return SimpleNamespace(x_shape=x_shape, pixel_mean=None, logit_lambda=None)


def sample(args) -> int:
    from torchvision.utils import save_image

    if args.n < 1:
        raise UsageError(f"--n must be >= 1, got {args.n}")
    if not math.isfinite(args.temperature) or args.temperature <= 0:
        raise UsageError(f"--temperature must be > 0, got {args.temperature}")
    exported = read(args.checkpoint)
    model, cfg = load_read(exported), exported.config
    data = pixels(cfg, exported.x_shape)
    try:
        grids = sample_grids(model, args.n, (args.temperature,), args.seed, data)
    except NotImplementedError as e:
        raise UsageError(f"family {cfg.family} cannot sample ({e})") from None
    (drawn,) = grids.values()  # one temperature: the family's own when it takes none
    images = torch.from_numpy(drawn).float() / 255
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_image(images, args.out, nrow=math.ceil(math.sqrt(args.n)), padding=2)
    print(f"wrote {args.out} ({args.n} samples of {cfg.family}, temperature "
          f"{float(next(iter(grids))[1:])})")  # fmt: skip
    return 0


def evaluate(args) -> int:
    if args.k < 1:
        raise UsageError(f"--k must be >= 1, got {args.k}")
    exported = read(args.checkpoint)
    cfg = exported.config
    data_cfg = cfg.data if args.data_root is None else _with_root(cfg.data, args.data_root)
    try:
        device = resolve_device(args.device)
    except RuntimeError as e:
        raise UsageError(str(e).replace("train/device", "--device")) from None
    model = load_read(exported, device)
    data = load_data(data_cfg, device)
    with progress.meter(f"test log-likelihood, k={args.k}") as shown:  # on stderr, with an ETA
        out = estimate_log_likelihood(model, data.test, args.k, seed=args.seed, progress=shown)
    stored = exported.record.get("test") or {}
    print(json.dumps({"status": "evaluated", "checkpoint": str(args.checkpoint), **out,
                      "seed": args.seed, "stored_test": stored,
                      "config": cfg.to_dict()}))  # fmt: skip
    return 0


def _with_root(data_cfg, root: str):
    import dataclasses

    return dataclasses.replace(data_cfg, root=root)


def export(args) -> int:
    record = {}
    if args.record is not None:
        try:
            record = json.loads(args.record.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"--record {args.record} is not a readable JSON file ({e})") from None
    path = write(args.out, args.checkpoint, record)
    print(f"wrote {path}")
    return 0


def main(argv: list[str]) -> int:
    """``argv``: the command (one of COMMANDS) and its flags."""
    command, rest = argv[0], argv[1:]
    try:
        args = parser(command).parse_args(rest)
        return {"sample": sample, "evaluate": evaluate, "export": export}[command](args)
    except (UsageError, ExportError, ConfigError, DatasetError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

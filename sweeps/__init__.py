"""What users run: one script per paper (vlae.py, spvae.py, spvae_lowdata.py, hyperspherical.py,
dct_vae.py, dvp_vae.py), their vocabulary (cells.py: Cell, Budget, Protocol) and
``python sweeps/replay.py``. The machinery that runs them is the package sweeps.engine.

Storages written before the machinery moved into sweeps/engine/ name its old modules in Tune's
pickles: each cell's ``tuner.pkl`` holds its searcher (``sweeps.tune_glue.PruneAwareOptunaSearch``)
in a ``sweeps.shared_slots.SharedSlots`` wrapper with a ``sweeps.slots.SlotsClient``, the
scheduler (``sweeps.tune_record.ASHA`` or ``FIFO``) and the
``sweeps.parquet_writer.ParquetWriter`` callback (``sweeps.tune_glue`` in storages older still);
its Cell is ``sweeps.cells.Cell``, which did not move. So that such a storage still resumes
(``--resume``) and is read, each old name in MOVED is an alias of the module that holds those
objects now: the same module object, imported only when something (an unpickling) imports the
old name. ``sweeps.trial`` is there for the trainable, should a pickle hold it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "sweeps.tune_glue": "sweeps.engine.tuner",  # imports the searcher, SharedSlots, ParquetWriter
    "sweeps.tune_record": "sweeps.engine.tune_record",
    "sweeps.shared_slots": "sweeps.engine.shared_slots",
    "sweeps.slots": "sweeps.engine.slots",
    "sweeps.parquet_writer": "sweeps.engine.parquet_writer",
    "sweeps.trial": "sweeps.engine.trial",
}
"""Old module -> the module that holds, under the same names, what a storage's pickles name."""


class _Moved(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports an old name of MOVED as its new module (last on sys.meta_path: a real file of
    that name would win)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED else None

    def create_module(self, spec):
        return importlib.import_module(MOVED[spec.name])

    def exec_module(self, module):
        pass  # the new module, already imported whole


if not any(isinstance(f, _Moved) for f in sys.meta_path):
    sys.meta_path.append(_Moved())

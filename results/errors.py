"""The error of a storage that cannot be used, where every module that reads one can import it
(results.store, which reads the files, and results.damage, which validates what they hold)."""


class StorageError(RuntimeError):
    """The storage location cannot be used; the message names it and what to do."""

"""Optional packages (dpdata, h5py, lmdb + msgpack): imported where an input needs them, and
when absent one MissingPackage that says what needs it and what to install. The CLI prints
it as one line (rc 2); any other ImportError is a defect and keeps its traceback."""
from __future__ import annotations

import importlib


class MissingPackage(ImportError):
    pass


def need(*modules: str, message: str):
    """The modules, imported; or MissingPackage(message), {name} in it the one missing."""
    try:
        found = [importlib.import_module(m) for m in modules]
    except ImportError as err:
        raise MissingPackage(message.format(name=err.name)) from None
    return found[0] if len(found) == 1 else found

"""A restricted unpickler for untrusted annotation files (HO3D's ``meta/*.pkl``).

``pickle.load`` runs whatever callable a file names (``os.system`` included). This
unpickler resolves only the few globals that numpy arrays and scalars need; lists,
dicts, tuples, strings, numbers and None are built by pickle opcodes without any
global lookup. Any other global raises ``UnsafePickleError`` naming the file, before
anything from the file is called.

HO3D's pickles were written by Python 2, so they are read with ``encoding="latin1"``
(the numpy-documented way to read Python 2 array pickles).
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list; the message names the file."""


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What Python 3 protocol-2 pickles call to rebuild ``bytes`` (``_codecs.encode``),
    restricted to the latin-1 codec."""
    if encoding.replace("-", "").replace("_", "").lower() not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with codec {encoding!r} is not allowed")
    return text.encode("latin1")


def _allowed() -> dict[tuple[str, str], object]:
    core = getattr(np, "_core", None) or np.core  # numpy 2.x / 1.x
    recon, scalar = core.multiarray._reconstruct, core.multiarray.scalar
    frombuffer = core.numeric._frombuffer
    allow: dict[tuple[str, str], object] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1.x and 2.x names
        allow[(mod, "_reconstruct")] = recon
        allow[(mod, "scalar")] = scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):  # protocol-5 array pickles
        allow[(mod, "_frombuffer")] = frombuffer
    allow[("_codecs", "encode")] = _latin1_encode
    allow[("numpy", "ndarray")] = np.ndarray
    allow[("numpy", "dtype")] = np.dtype
    return allow


_ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only numpy array/scalar helpers."""

    def __init__(self, file, source: str = "<bytes>", **kw):
        super().__init__(file, **kw)
        self.source = source

    def find_class(self, module: str, name: str):
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise UnsafePickleError(
                f"{self.source}: refusing to load global {module}.{name} "
                "(only numpy arrays/scalars, lists, dicts and None are allowed)")
        return obj

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.source}: persistent ids are not allowed")


def _check_types(obj, source: str, depth: int = 0) -> None:
    """Second line of defence: the loaded tree holds only the admitted types."""
    if depth > 50:
        raise UnsafePickleError(f"{source}: nesting too deep")
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes, np.generic)):
        return
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            for v in obj.ravel():
                _check_types(v, source, depth + 1)
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_types(v, source, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_types(k, source, depth + 1)
            _check_types(v, source, depth + 1)
        return
    raise UnsafePickleError(f"{source}: unexpected object of type {type(obj).__name__}")


def loads(data: bytes, source: str = "<bytes>"):
    """Unpickle ``data`` with the allow-list; ``source`` names it in errors."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(data), source=source, encoding="latin1").load()
    except UnsafePickleError:
        raise
    except Exception as e:  # truncated or corrupt files
        raise pickle.UnpicklingError(f"{source}: unreadable pickle ({type(e).__name__}: {e})") from e
    _check_types(obj, source)
    return obj


def load(path: str | os.PathLike):
    """Read one untrusted pickle file; errors name ``path``."""
    path = Path(path)
    return loads(path.read_bytes(), source=str(path))

"""Modules loaded only when first used.

faster-whisper imports PyAV as it is imported, for its ``decode_audio``.
bellad hands it samples and never calls that; it decodes files itself only
when asked to (``audio.source = "file"``, ``bellad transcribe``), and then
through PyAV only for formats other than 16-bit PCM WAV. In the
microphone daemon, PyAV's codec libraries would cost about 15 MB resident and
40 ms of start for nothing. :func:`defer` puts a stand-in for such a module
into ``sys.modules``: importing it is free, and the real module is loaded the
first time one of its attributes is read, by whoever reads it.

The standard library's ``importlib.util.LazyLoader`` does not do here: on
Python 3.11 the import statement itself reads the module's ``__spec__``, which
loads it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.Lock()


class _Deferred(types.ModuleType):
    """Stands in for a module until an attribute of it is read."""

    def __getattr__(self, attr: str) -> Any:  # only for what the stand-in lacks
        return getattr(self._load(), attr)

    def _load(self) -> types.ModuleType:
        real: types.ModuleType | None = self.__dict__.get("_real")
        if real is not None:
            return real
        with _lock:  # one thread imports; the others find it done
            real = self.__dict__.get("_real") or self._import()
            self.__dict__["_real"] = real
        return real

    def _import(self) -> types.ModuleType:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        try:
            return importlib.import_module(self.__name__)
        except BaseException:
            sys.modules.setdefault(self.__name__, self)  # a later use tries again
            raise


def defer(name: str) -> bool:
    """Let ``import name`` succeed without loading it; True if a stand-in was put in place."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return False
    sys.modules[name] = _Deferred(name)
    return True

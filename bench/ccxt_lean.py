"""Load ccxt with only the Binance client in memory: about 55 MiB less RSS per process.

No bot loads ccxt since #17 (its trading client is `tradefleet.adapters.binance_signed`); this lives
on for `bench.imports`, which prices ccxt's Binance client alone, and the benchmarks' ccxt peers.

Why it exists: `import ccxt.async_support` runs `ccxt/__init__.py` and `ccxt/async_support/__init__.py`,
which import every exchange ccxt supports (over a hundred, sync and async): ~75 MiB of code objects
in a process that talks to one exchange. A bot must fit in 100 MiB (see `bench/footprint.py`).

How: before anything imports ccxt, `install()` puts two package modules in `sys.modules` for `ccxt`
and `ccxt.async_support` that point at ccxt's real directories (so every submodule imports from the
real files, unmodified) but do not run the two `__init__` files. They are filled with what ccxt's own
modules import from the package root (errors, `Exchange`, `Precise`, the precision constants) and
with the async `binance` class. Any other name asked of them runs the real `__init__` into the same
module object on the spot, so `ccxt.kraken` or `ccxt.async_support.okx` still work, exactly as usual,
at the usual memory cost. Classes are the real ones (`isinstance`, `except ccxt.NetworkError` hold).

What it refuses to do: install itself after ccxt was imported the usual way (nothing to save, and two
module objects for one package would be worse), or touch ccxt's files. Only `tradefleet bot` calls it,
first thing; tests and the demo import ccxt as usual.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any


class _LeanPackage(types.ModuleType):
    """A ccxt package module whose `__init__` runs only when a name it lacks is asked for."""

    def __init__(self, name: str, spec: Any, init_file: Path) -> None:
        super().__init__(name)
        self.__spec__ = spec
        self.__path__ = [str(init_file.parent)]
        self.__file__ = str(init_file)
        self.__loader__ = getattr(spec, "loader", None)
        self.__package__ = name
        self._lean_init = init_file
        self._lean_state = "lean"  # -> "loading" -> "full"

    def __getattr__(self, attr: str) -> Any:
        # Only called for names not already in the module (ordinary lookup failed).
        if attr.startswith("__") or self._lean_state != "lean":
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")
        self._lean_state = "loading"
        code = compile(self._lean_init.read_bytes(), str(self._lean_init), "exec")
        exec(code, self.__dict__)  # the package's own __init__, into this module object
        self._lean_state = "full"
        try:
            return self.__dict__[attr]
        except KeyError:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}") from None


def install() -> bool:
    """Make later `import ccxt` / `import ccxt.async_support` lean. True if installed now."""
    if "ccxt" in sys.modules:
        return isinstance(sys.modules["ccxt"], _LeanPackage)
    spec = importlib.util.find_spec("ccxt")
    if spec is None or spec.origin is None or not spec.submodule_search_locations:
        return False
    root = Path(spec.origin)
    top = _LeanPackage("ccxt", spec, root)
    sys.modules["ccxt"] = top
    try:
        errors = importlib.import_module("ccxt.base.errors")
        for name in getattr(errors, "__all__", None) or dir(errors):
            if not name.startswith("_"):
                setattr(top, name, getattr(errors, name))
        vars(top)["errors"] = errors
        vars(top)["Exchange"] = importlib.import_module("ccxt.base.exchange").Exchange
        vars(top)["Precise"] = importlib.import_module("ccxt.base.precise").Precise
        precision = importlib.import_module("ccxt.base.decimal_to_precision")
        for name in dir(precision):
            if name.isupper() or name == "decimal_to_precision":
                setattr(top, name, getattr(precision, name))
        async_spec = importlib.util.find_spec("ccxt.async_support")
        assert async_spec is not None and async_spec.origin is not None
        lean_async = _LeanPackage("ccxt.async_support", async_spec, Path(async_spec.origin))
        sys.modules["ccxt.async_support"] = lean_async
        vars(top)["async_support"] = lean_async
        for name in dir(errors):
            if not name.startswith("_"):
                setattr(lean_async, name, getattr(errors, name))
        vars(lean_async)["Exchange"] = importlib.import_module("ccxt.async_support.base.exchange").Exchange
        # Bound last: importing the submodule sets the package attribute to the module first.
        vars(lean_async)["binance"] = importlib.import_module("ccxt.async_support.binance").binance
    except Exception:
        # A ccxt layout we do not know: fall back to the ordinary import, loudly correct.
        for name in [m for m in sys.modules if m == "ccxt" or m.startswith("ccxt.")]:
            del sys.modules[name]
        return False
    return True

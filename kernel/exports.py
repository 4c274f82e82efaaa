"""Names a package offers from its modules, loaded when first asked for (PEP 562).

A context package's ``__init__`` re-exports the names other packages use. Importing its
modules eagerly would load the whole package, Django models included, for any one of
them: a pure parser (reginfo, the PASSporT core) could no longer be imported on its own.
The package lists them in ``__all__`` and imports them under ``TYPE_CHECKING``, where
mypy and the layer check (portal/tests/test_layers.py) read them;
portal/tests/test_packages.py holds the three lists to one another."""

from collections.abc import Callable
from importlib import import_module


def lazy_exports(package: str, names: dict[str, list[str]]) -> Callable[[str], object]:
    """The module ``__getattr__`` of ``package``: ``names`` maps each of its modules
    (relative to the package) to the names taken from it on first use."""
    module_of = {name: module for module, exported in names.items() for name in exported}

    def __getattr__(name: str) -> object:
        try:
            module = module_of[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(import_module(f"{package}.{module}"), name)

    return __getattr__

"""Each context package's public names (docs/architecture.md): what ``__all__`` lists is
what it imports for mypy and the layer check, and what it loads at run time."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXPORTING = [
    "telephony.inventory",
    "telephony.identities",
    "telephony.registrations",
    "telephony.callauth",
]


def _type_checking_imports(package: str) -> dict[str, str]:
    """Name -> the module it is imported from under ``if TYPE_CHECKING:``."""
    tree = ast.parse((ROOT / package.replace(".", "/") / "__init__.py").read_text())
    found = {}
    for node in tree.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for statement in node.body:
                assert isinstance(statement, ast.ImportFrom)
                found.update({alias.name: statement.module or "" for alias in statement.names})
    return found


@pytest.mark.parametrize("name", EXPORTING)
def test_a_package_offers_each_name_it_lists_from_the_module_it_names(name):
    package = importlib.import_module(name)
    imported = _type_checking_imports(name)
    assert sorted(package.__all__) == sorted(imported)
    for exported, module in imported.items():
        assert getattr(package, exported) is getattr(importlib.import_module(module), exported)
    with pytest.raises(AttributeError):
        package.no_such_name  # noqa: B018


def test_the_parsers_import_without_django_and_without_the_rest_of_their_package():
    """The network's documents are parsed by modules that need no Django; importing the
    package names lazily keeps them so (an eager ``__init__`` would load the models)."""
    code = (
        "import sys\n"
        "from telephony.registrations import reginfo, sipmessage\n"
        "from telephony.callauth.stir import attestation, certificates, passport\n"
        "from telephony.inventory import numbers\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('telephony.'))))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == [
        "telephony.callauth",
        "telephony.callauth.stir",
        "telephony.callauth.stir.attestation",
        "telephony.callauth.stir.certificates",
        "telephony.callauth.stir.passport",
        "telephony.inventory",
        "telephony.inventory.numbers",
        "telephony.registrations",
        "telephony.registrations.reginfo",
        "telephony.registrations.sipmessage",
    ]

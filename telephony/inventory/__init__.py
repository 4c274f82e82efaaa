"""Inventory: the numbers and SIM lines the operator gives an enterprise.

Modules: ``services`` (number blocks, line pools, number allocation and quarantine),
``numbers`` (TN and IMSI parsing, Luhn digits). Other packages use the modules, and
these names, loaded on first use (kernel.exports says why).
"""

from typing import TYPE_CHECKING

from kernel.exports import lazy_exports

if TYPE_CHECKING:
    from telephony.inventory.numbers import parse_tn, with_luhn_digit

__all__ = ["parse_tn", "with_luhn_digit"]
__getattr__ = lazy_exports(__name__, {"numbers": ["parse_tn", "with_luhn_digit"]})

"""Kubernetes quantities parse exactly, in base units; anything else is refused, never guessed."""
from decimal import Decimal

import pytest

from chargeback.capacity.quantity import QuantityError, bytes_to_gib, parse_quantity


@pytest.mark.parametrize("text, expected", [
    ("96", "96"),
    ("500m", "0.5"),
    ("96000m", "96"),
    ("1Ti", "1099511627776"),
    ("1000Gi", "1073741824000"),
    ("131072Ki", "134217728"),
    ("64890464Ki", "66447835136"),
    ("1G", "1000000000"),
    ("1e3", "1000"),
    ("1E3", "1000"),
    ("12e-3", "0.012"),
    ("1.5Gi", "1610612736"),
    (".5k", "500"),
    ("2M", "2000000"),
    ("1E", "1000000000000000000"),   # exa, not an exponent without digits
    ("100n", "0.0000001"),
    ("3u", "0.000003"),
    ("0", "0"),
    ("+7", "7"),
    ("-1", "-1"),
])
def test_quantity_table(text, expected):
    assert parse_quantity(text) == Decimal(expected)


@pytest.mark.parametrize("text", ["", "lots", "1GB", "1gi", "Gi", "1.2.3", "1e", "e3", "1 Gi",
                                  "0x10", "1Kii", "--1", "1e9999", None, 1.5])
def test_what_is_not_a_quantity_is_refused_with_the_text_quoted(text):
    with pytest.raises(QuantityError, match="quantity"):
        parse_quantity(text)


def test_bytes_become_gib_exactly():
    assert bytes_to_gib(parse_quantity("1Ti")) == 1024
    assert bytes_to_gib(parse_quantity("131072Ki")) == Decimal("0.125")
    assert bytes_to_gib(parse_quantity("1G")) == Decimal("0.931322574615478515625")
    assert bytes_to_gib(Decimal(1)) * 2**30 == 1


@pytest.mark.parametrize("value", [["8"], {"n": 8}, ("1",), "9" * 90 + "Ki", "1" * 85 + "e5"])
def test_unhashable_or_inexact_values_are_quantity_errors_not_crashes(value):
    with pytest.raises(QuantityError):
        parse_quantity(value)


def test_gib_that_cannot_be_held_exactly_is_a_quantity_error():
    with pytest.raises(QuantityError, match="cannot be held exactly"):
        bytes_to_gib(Decimal("1" * 79 + "9"))

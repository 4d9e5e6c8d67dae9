"""The emulator's per-row rule for custom field values, case by case.

`custom_value_problem` dispatches on exact types for speed; these cases pin
what SendGrid-like typing it must keep while doing so.
"""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator.rules import EMAIL_RE, custom_value_problem

TYPES = {"e1_T": "Text", "w2_N": "Number", "d3_D": "Date"}


@pytest.mark.parametrize(
    "value",
    ["", None, "gold", 3, 2.5],
)
def test_text_fields_take_text_numbers_and_empties(value: Any) -> None:
    assert custom_value_problem({"e1_T": value}, TYPES) is None


@pytest.mark.parametrize("value", [12, 12.5, "12.5", "-3", "", None])
def test_number_fields_take_numbers_and_numeric_text(value: Any) -> None:
    assert custom_value_problem({"w2_N": value}, TYPES) is None


@pytest.mark.parametrize("value", ["2024-02-29", "2024-02-29T10:00:00Z", "2/29/2024", "", None])
def test_date_fields_take_date_text(value: Any) -> None:
    assert custom_value_problem({"d3_D": value}, TYPES) is None


@pytest.mark.parametrize(
    ("fid", "value", "kind"),
    [
        ("w2_N", "twelve", "Number"),
        ("w2_N", True, "Number"),
        ("w2_N", [1], "Number"),
        ("d3_D", 20240229, "Date"),
        ("d3_D", "29th of February", "Date"),
        ("d3_D", False, "Date"),
        ("e1_T", {"a": 1}, "Text"),
        ("e1_T", True, "Text"),
    ],
)
def test_values_that_do_not_fit_name_the_field_and_its_type(
    fid: str, value: Any, kind: str
) -> None:
    assert custom_value_problem({fid: value}, TYPES) == f"invalid value for {kind} field {fid}"


def test_the_first_bad_value_is_reported_after_good_ones() -> None:
    custom = {"e1_T": "ok", "w2_N": 4, "d3_D": "soon"}
    assert custom_value_problem(custom, TYPES) == "invalid value for Date field d3_D"


@pytest.mark.parametrize(
    ("email", "valid"),
    [
        ("a@b.co", True),
        ("first.last+tag@mail.example.com", True),
        ("o'brien@x-y.example.org", True),
        ("a@x--y.com", True),
        ("a@1.com", True),
        ("a..b@x.com", False),
        (".a@x.com", False),
        ("a.@x.com", False),
        ("a@-x.com", False),
        ("a@x-.com", False),
        ("a@x..com", False),
        ("a@x.c", False),
        ("a@x.c0m", False),
        ("a@x.com.", False),
        ("a b@x.com", False),
        ("a@@x.com", False),
        ("@x.com", False),
        ("a@x", False),
    ],
)
def test_email_rule(email: str, valid: bool) -> None:
    assert bool(EMAIL_RE.fullmatch(email)) is valid

"""connector.services on its own: the pieces the TUI calls too."""

from __future__ import annotations

import pytest

from connector.consent import consent_filter_refusal
from connector.services import ServiceError, field_type_for, merge_mapping
from store.records import FieldMapping

SAVED = FieldMapping(
    email="email",
    reserved={"first_name": "first", "city": "town"},
    custom={"tier": "loyalty"},
    consent_column="opt_in",
)


def test_merge_keeps_what_is_not_named() -> None:
    merged = merge_mapping(SAVED, {"last_name": "last", "city": "city"})
    assert merged.reserved == {"first_name": "first", "city": "city", "last_name": "last"}
    assert merged.custom == {"tier": "loyalty"} and merged.consent_column == "opt_in"


def test_unset_replace_and_the_consent_choice() -> None:
    assert "city" not in merge_mapping(SAVED, unset=["city"]).reserved
    assert merge_mapping(SAVED, unset=["consent"]).consent_column is None
    assert merge_mapping(SAVED, {"email": "mail"}, replace_all=True) == FieldMapping(email="mail")
    waived = merge_mapping(SAVED, no_consent_filter=True)
    assert waived.consent_column is None and waived.no_consent_filter
    again = merge_mapping(waived, consent_column="opt_in")
    assert again.consent_column == "opt_in" and not again.no_consent_filter
    with pytest.raises(ServiceError, match="email cannot be unset"):
        merge_mapping(SAVED, unset=["email"])
    with pytest.raises(ServiceError, match="not mapped"):
        merge_mapping(SAVED, unset=["postal_code"])


def test_a_suggestion_fills_only_what_is_unmapped() -> None:
    suggested = FieldMapping(
        email="e_mail",
        reserved={"first_name": "given", "country": "country"},
        custom={"tier": "tier_col", "score": "score"},
        consent_column="consent",
    )
    merged = merge_mapping(SAVED, suggested=suggested)
    assert merged.email == "email" and merged.reserved["first_name"] == "first"
    assert merged.reserved["country"] == "country"
    assert merged.custom == {"tier": "loyalty", "score": "score"}
    assert merged.consent_column == "opt_in"
    waived = merge_mapping(SAVED, no_consent_filter=True)
    assert merge_mapping(waived, suggested=suggested).consent_column is None  # a choice stays


def test_the_consent_rule() -> None:
    assert consent_filter_refusal(SAVED, "news") is None
    assert consent_filter_refusal(FieldMapping(email="e", no_consent_filter=True), "news") is None
    refusal = consent_filter_refusal(FieldMapping(email="e"), "news")
    assert refusal is not None
    assert "--consent-column COLUMN" in refusal and "--no-consent-filter" in refusal


@pytest.mark.parametrize(
    "duck,sendgrid",
    [("BIGINT", "Number"), ("DOUBLE", "Number"), ("DATE", "Date"), ("TIMESTAMP", "Date"),
     ("VARCHAR", "Text"), ("BOOLEAN", "Text")],
)  # fmt: skip
def test_field_types(duck: str, sendgrid: str) -> None:
    assert field_type_for(duck) == sendgrid

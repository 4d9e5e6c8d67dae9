"""Planning an export: exclusions, payloads, incremental/mirror against the ledger, resume."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from store.changeset import Changeset
from store.ledger import LEDGER_SCHEMA, read_info, write_ledger
from store.plan import (
    EXCLUSIONS,
    MappingError,
    Plan,
    PlanRequest,
    RejectedRow,
    plan_export,
    suggest_mapping,
    validate_mapping,
)
from store.records import FieldMapping
from store.workspace import PredicateError, Workspace, WorkspaceError

MAPPING = FieldMapping(
    email="email",
    reserved={"first_name": "first_name", "last_name": "last_name", "country": "country",
              "city": "city"},
    custom={"ltv": "lifetime_value", "signup": "signup_date", "tier": "tier"},
    consent_column="email_opt_in",
)  # fmt: skip
IDS = {"ltv": "e1_N"}  # "signup" and "tier" have no id yet: sent under their names

# Worked out by hand from fixtures/profiles.csv, one line per row (key -> category).
EXPECTED_CATEGORY = {
    "1": None, "30": "duplicate", "3": None, "4": "no_consent", "5": "no_consent",
    "6": "no_email", "7": "no_email", "8": "invalid_email", "9": "invalid_email",
    "10": "invalid_email", "11": "invalid_email", "12": "too_long", "13": None,
    "14": "invalid_email", "15": "no_consent", "16": "duplicate", "17": "no_consent",
    "18": "too_long", "19": None, "20": "no_consent", "21": "no_consent",
}  # fmt: skip
EXPECTED_COUNTS = {
    "selected": 21, "no_consent": 6, "no_email": 2, "invalid_email": 5, "too_long": 2,
    "duplicate": 2, "unchanged": 0, "skipped": 0, "to_send": 4, "to_remove": 0,
    "to_add": 4, "to_update": 0,
}  # fmt: skip
EXPECTED_CONTACTS = [
    {"email": "ana@example.com", "first_name": "Ana", "last_name": "Silva", "country": "PT",
     "city": "Lisboa", "custom_fields": {"e1_N": 120.5, "signup": "2024-01-10", "tier": "gold"}},
    {"email": "bob@example.com", "first_name": "Robert", "last_name": "Stone", "country": "US",
     "city": "Austin", "custom_fields": {"e1_N": 300, "signup": "2022-02-02", "tier": "gold"}},
    {"email": "kim@example.com", "first_name": "Кирилл", "last_name": "Ким", "country": "BG",
     "city": "София", "custom_fields": {"e1_N": 250, "signup": "2020-12-12", "tier": "gold"}},
    {"email": "mo@example.com", "first_name": "Mo"},
]  # fmt: skip


def _plan(ws: Workspace, segments: tuple[str, ...] = ("everyone",), **kw: object) -> Plan:
    return plan_export(
        ws, PlanRequest(segments=segments, mapping=MAPPING, custom_field_ids=IDS, **kw)
    )


def _by_email(contacts: list[dict]) -> list[dict]:
    """Contacts stream in the plan's order, which is not defined: compare sorted."""
    return sorted(contacts, key=lambda c: c["email"])


def _contacts(plan: Plan, rows_per_batch: int = 10_000) -> list[dict]:
    out = []
    for batch in plan.contacts(rows_per_batch=rows_per_batch):
        for email, h, contact in zip(*(batch.column(i).to_pylist() for i in range(3)), strict=True):
            parsed = orjson.loads(contact)
            assert parsed["email"] == email
            assert isinstance(h, int)
            out.append(parsed)
    return _by_email(out)


def _hashes(plan: Plan) -> dict[str, int]:
    return {
        e: h
        for b in plan.contacts()
        for e, h in zip(b.column("email").to_pylist(), b.column("hash").to_pylist(), strict=True)
    }


@pytest.fixture
def ws(make_workspace: Callable[..., Path]) -> Workspace:
    return Workspace.open(make_workspace("csv"))


def test_exact_exclusion_counts_for_every_source(
    make_workspace: Callable[..., Path], source_kind: str
) -> None:
    with _plan(Workspace.open(make_workspace(source_kind))) as plan:
        assert plan.counts == EXPECTED_COUNTS
        rejected = {r.key: r.category for r in plan.rejected()}
        assert rejected == {k: v for k, v in EXPECTED_CATEGORY.items() if v is not None}
        assert _contacts(plan) == EXPECTED_CONTACTS


def test_counts_partition_the_selection(ws: Workspace) -> None:
    with _plan(ws) as plan:
        c = plan.counts
        parts = c["to_send"] + c["unchanged"] + c["skipped"] + sum(c[e] for e in EXCLUSIONS)
        assert parts == c["selected"]


def test_union_of_segments_counts_each_row_once_and_dedupes_within_it(ws: Workspace) -> None:
    # us = 30,3,8,9,17,20,21; big_spenders = 1,3,8,13 -> 9 distinct rows
    with _plan(ws, ("us", "big_spenders")) as plan:
        assert plan.counts["selected"] == 9
        assert plan.counts["to_send"] == 3  # 1, 3, 13 (16, ana's duplicate, is not selected)
        assert plan.counts["duplicate"] == 1  # 30 loses to key 3
        assert plan.counts["invalid_email"] == 2
        assert plan.counts["no_consent"] == 3


def test_rejected_rows_explain_themselves(ws: Workspace) -> None:
    with _plan(ws) as plan:
        by_key = {r.key: r for r in plan.rejected()}
        assert by_key["30"] == RejectedRow(
            "30", " BOB@Example.com ", "duplicate", "same email as the row with key 3"
        )
        assert by_key["16"].detail == "same email as the row with key 1"
        assert by_key["12"].detail == "first_name has 51 characters (max 50)"
        assert by_key["18"].detail == "city has 63 characters (max 60)"
        assert by_key["4"].detail == "email_opt_in is not true"
        assert by_key["14"].email == "løvé@example.com"  # unicode local part: refused
        assert by_key["6"].email is None
        # every category sampled (up to 10 each), each in source order
        by_category = [r.key for c in EXCLUSIONS for r in plan.rejected() if r.category == c]
        assert [r.key for r in plan.sample_rejected] == by_category


def test_samples_and_batches(ws: Workspace) -> None:
    with _plan(ws) as plan:
        assert plan.sample_contacts == EXPECTED_CONTACTS  # the first by email
        batches = list(plan.contacts(rows_per_batch=3))
        assert all(b.num_rows <= 3 for b in batches)
        assert sum(b.num_rows for b in batches) == 4
        assert batches[0].schema.field("hash").type == pa.uint64()
        assert _contacts(plan, rows_per_batch=3) == EXPECTED_CONTACTS


@pytest.mark.slow
def test_hash_is_stable_and_follows_the_payload(ws: Workspace) -> None:
    with _plan(ws) as first, _plan(ws) as second:
        assert _hashes(first) == _hashes(second)
        ids = {"ltv": "e9_N"}
        with plan_export(ws, PlanRequest(("everyone",), MAPPING, custom_field_ids=ids)) as renamed:
            assert _hashes(renamed)["ana@example.com"] != _hashes(first)["ana@example.com"]


def test_no_consent_column_means_everyone_consented(ws: Workspace) -> None:
    mapping = FieldMapping(email="email")
    with plan_export(ws, PlanRequest(("everyone",), mapping)) as plan:
        assert plan.counts["no_consent"] == 0
        # without consent filtering, 21 (no email) and 20 (bad@@) surface under later checks
        assert plan.counts["no_email"] == 3
        assert plan.counts["invalid_email"] == 6
        # names are not mapped, so 12 and 18 are not too long for anything
        assert plan.counts["too_long"] == 0
        # ana x3 (1, 15, 16) and bob x2 (3, 30) collapse to one each
        assert plan.counts["duplicate"] == 3
        assert plan.counts["to_send"] == 21 - 3 - 6 - 3


def test_bad_segment_in_a_plan_names_the_segment(ws: Workspace) -> None:
    with pytest.raises(PredicateError, match=r"segment 'broken'.*no_such_column"):
        _plan(ws, ("everyone", "broken"))


# ------------------------------------------------------------------ mappings


def test_unknown_mapped_column_is_named(ws: Workspace) -> None:
    bad = FieldMapping(email="email", reserved={"first_name": "given"})
    with pytest.raises(MappingError, match="first_name: column 'given' is not in the profiles"):
        plan_export(ws, PlanRequest(("everyone",), bad))


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        (FieldMapping(email=""), "email: a profile column for the email address is required"),
        (FieldMapping(email="emial"), "email: column 'emial'"),
        (FieldMapping(email="email", reserved={"nickname": "first_name"}), "'nickname' is not"),
        (FieldMapping(email="email", custom={"1st": "tier"}), "custom field '1st'"),
        (FieldMapping(email="email", custom={"bad-name": "tier"}), "custom field 'bad-name'"),
        (FieldMapping(email="email", custom={"First_Name": "tier"}), "clashes with a reserved"),
        (FieldMapping(email="email", custom={"x": "nope"}), "custom field 'x': column 'nope'"),
        (FieldMapping(email="email", consent_column="optin"), "consent: column 'optin'"),
    ],
)
def test_validate_mapping_errors(mapping: FieldMapping, message: str) -> None:
    columns = ["customer_id", "email", "first_name", "tier"]
    with pytest.raises(MappingError, match=message):
        validate_mapping(mapping, columns)


def test_suggest_mapping_from_common_column_names() -> None:
    columns = ["ID", "E-Mail", "Given_Name", "Surname", "Zip", "Town", "State", "Phone",
               "Address", "Opt_In", "Tier", "Country"]  # fmt: skip
    mapping = suggest_mapping(columns, custom_field_names=["tier", "birthday"])
    assert mapping == FieldMapping(
        email="E-Mail",
        reserved={"first_name": "Given_Name", "last_name": "Surname",
                  "address_line_1": "Address", "city": "Town", "state_province_region": "State",
                  "country": "Country", "postal_code": "Zip", "phone_number": "Phone"},
        custom={"tier": "Tier"},
        consent_column="Opt_In",
    )  # fmt: skip
    validate_mapping(mapping, columns)


def test_suggest_mapping_without_an_email_column_asks_for_one() -> None:
    mapping = suggest_mapping(["name", "zipcode"])
    assert mapping.email == ""
    assert mapping.reserved == {"postal_code": "zipcode"}
    with pytest.raises(MappingError, match="email"):
        validate_mapping(mapping, ["name", "zipcode"])


# --------------------------------------------------- incremental, mirror, resume


def _ledger_with(path: Path, rows: dict[str, int]) -> None:
    """A ledger file naming exactly ``rows`` (email -> digest), as a test sets it up."""
    table = pa.table(
        {"email": list(rows), "hash": pa.array(list(rows.values()), pa.uint64())},
        schema=LEDGER_SCHEMA,
    )
    pq.write_table(table, path)


def _after_run(
    plan: Plan,
    ledger: Path,
    errored: set[str] | None = None,
    removed: set[str] | None = None,
) -> None:
    """Write ``ledger`` as the engine does after a run of ``plan`` in which
    SendGrid confirmed every contact but ``errored`` and removed ``removed``:
    the plan's changeset merged with the ledger it read."""
    frozen = ledger.parent / "changeset.parquet"
    plan.save_changeset(frozen)
    with Changeset(frozen) as changeset:
        table = changeset.merged_ledger(
            ledger, sent=None, errored=errored or set(), removed=removed or set()
        )
    frozen.unlink()
    write_ledger(ledger, table, previous=read_info(ledger), list_id="list", base_url="url")


def _read_ledger(path: Path) -> dict[str, int]:
    table = pq.read_table(path)
    assert table.schema == LEDGER_SCHEMA
    emails = table.column("email").to_pylist()
    assert len(emails) == len(set(emails))  # one row per email
    return dict(zip(emails, table.column("hash").to_pylist(), strict=True))


@pytest.mark.slow
def test_ledger_round_trip_then_incremental_sends_nothing(ws: Workspace, tmp_path: Path) -> None:
    ledger = tmp_path / "state" / "dest.parquet"
    with _plan(ws, ledger=ledger, incremental=True) as first:
        assert first.counts["to_send"] == 4  # no ledger yet
        hashes = _hashes(first)
        ledger.parent.mkdir()
        _after_run(first, ledger)
    assert _read_ledger(ledger) == hashes
    assert [p.name for p in ledger.parent.iterdir()] == ["dest.parquet"]  # no temp left
    with _plan(ws, ledger=ledger, incremental=True) as second:
        assert second.counts["unchanged"] == 4
        assert second.counts["to_send"] == 0
        assert list(second.contacts()) == []
    with _plan(ws, ledger=ledger) as full:  # not incremental: everything again
        assert full.counts["to_send"] == 4


@pytest.mark.slow
def test_incremental_resends_only_changed_contacts(ws: Workspace, tmp_path: Path) -> None:
    with _plan(ws) as plan:
        hashes = _hashes(plan)
    ledger = tmp_path / "ledger.parquet"
    _ledger_with(ledger, {**hashes, "ana@example.com": 12345})
    with _plan(ws, ledger=ledger, incremental=True) as plan:
        assert plan.counts["unchanged"] == 3
        assert [c["email"] for c in _contacts(plan)] == ["ana@example.com"]
        assert (plan.counts["to_update"], plan.counts["to_add"]) == (1, 0)  # ana is known
    _ledger_with(ledger, {"ana@example.com": 1})
    with _plan(ws, ledger=ledger) as plan:  # the other three are new to the list
        assert (plan.counts["to_update"], plan.counts["to_add"]) == (1, 3)


@pytest.mark.slow
def test_mirror_removes_ledger_emails_no_longer_selected(ws: Workspace, tmp_path: Path) -> None:
    with _plan(ws) as plan:
        hashes = _hashes(plan)
    ledger = tmp_path / "ledger.parquet"
    # carol is still a profile but withdrew consent; gone@ is no longer in the data.
    _ledger_with(ledger, {**hashes, "carol@example.com": 1, "gone@example.com": 2})
    with _plan(ws, ledger=ledger, mirror=True) as plan:
        assert plan.removals() == ["carol@example.com", "gone@example.com"]
        assert plan.counts["to_remove"] == 2
    with _plan(ws, ("us",), ledger=ledger, mirror=True, incremental=True) as plan:
        # only bob (key 3) passes in "us"; ana, kim and mo left the selection
        assert plan.counts["unchanged"] == 1
        assert plan.removals() == sorted(
            ["ana@example.com", "kim@example.com", "mo@example.com", "carol@example.com",
             "gone@example.com"]
        )  # fmt: skip
    with _plan(ws, ledger=ledger) as plan:
        assert plan.removals() == []
        assert plan.counts["to_remove"] == 0


def test_a_mirror_plan_reads_one_version_of_the_ledger(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A mirror plan reads the ledger twice: to plan, then to find who left. A
    # run that replaces the file in between must not change the second answer.
    with _plan(ws) as plan:
        hashes = _hashes(plan)
    ledger = tmp_path / "ledger.parquet"
    _ledger_with(ledger, {**hashes, "gone@example.com": 2})
    original_init = Plan.__init__

    def replaced_meanwhile(self: Plan, *args: object, **kwargs: object) -> None:
        _ledger_with(ledger, {**hashes, "other@example.com": 3})
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(Plan, "__init__", replaced_meanwhile)
    with _plan(ws, ledger=ledger, mirror=True, incremental=True) as plan:
        assert plan.removals() == ["gone@example.com"]


def test_the_ledger_after_a_run(ws: Workspace, tmp_path: Path) -> None:
    with _plan(ws) as plan:
        hashes = _hashes(plan)
    ledger = tmp_path / "ledger.parquet"
    old = {"ana@example.com": 111, "bob@example.com": hashes["bob@example.com"],
           "gone@example.com": 222, "zed@example.com": 333}  # fmt: skip
    _ledger_with(ledger, old)
    with _plan(ws, ledger=ledger, incremental=True, mirror=True) as plan:
        assert plan.counts["unchanged"] == 1
        assert plan.removals() == ["gone@example.com", "zed@example.com"]
        # kim failed at SendGrid; only gone@ was confirmed removed
        _after_run(plan, ledger, {"kim@example.com"}, {"gone@example.com"})
        assert _read_ledger(ledger) == {
            "ana@example.com": hashes["ana@example.com"],
            "bob@example.com": hashes["bob@example.com"],
            "mo@example.com": hashes["mo@example.com"],
            "zed@example.com": 333,
        }
        # an errored contact that was on the list keeps its old row (so it is retried)
        _ledger_with(ledger, old)
        _after_run(plan, ledger, {"ana@example.com"})
        assert _read_ledger(ledger)["ana@example.com"] == 111


def test_confirmed_emails_of_a_resumed_run_are_not_sent_again(
    ws: Workspace, tmp_path: Path
) -> None:
    confirmed = pa.array(["ana@example.com", " BOB@example.com"])  # as recorded, any case
    with _plan(ws, skip_emails=confirmed) as plan:
        assert plan.counts["skipped"] == 2
        assert plan.counts["to_send"] == 2
        assert sorted(c["email"] for c in _contacts(plan)) == ["kim@example.com", "mo@example.com"]
        ledger = tmp_path / "ledger.parquet"
        _after_run(plan, ledger)
        assert set(_read_ledger(ledger)) == {
            "ana@example.com", "bob@example.com", "kim@example.com", "mo@example.com"
        }  # fmt: skip


@pytest.mark.slow
def test_a_skipped_or_unchanged_winner_still_beats_its_duplicate(
    ws: Workspace, tmp_path: Path
) -> None:
    # bob (key 3) wins over his duplicate (key 30) however bob's own row ends:
    # sent, skipped as already confirmed, or unchanged since the last run.
    with _plan(ws, skip_emails=pa.array(["bob@example.com"])) as plan:
        assert plan.counts["duplicate"] == EXPECTED_COUNTS["duplicate"]
        assert "bob@example.com" not in {c["email"] for c in _contacts(plan)}
        ledger = tmp_path / "ledger.parquet"
        _after_run(plan, ledger)
    with _plan(ws, ledger=ledger, incremental=True) as plan:
        assert plan.counts["duplicate"] == EXPECTED_COUNTS["duplicate"]
        assert plan.counts["unchanged"] == EXPECTED_COUNTS["to_send"]
        assert plan.counts["to_send"] == 0


@pytest.mark.parametrize("mode", ["incremental", "mirror"])
def test_a_ledger_naming_someone_twice_counts_them_once(
    ws: Workspace, tmp_path: Path, mode: str
) -> None:
    # Older ledgers could repeat an address; the plan keeps one row per email,
    # so nobody is planned or removed twice and the counts still add up (a
    # mirror plan reads its own copy of the ledger, the others the file).
    with _plan(ws) as plan:
        hashes = {**_hashes(plan), "gone@example.com": 1}
    ledger = tmp_path / "ledger.parquet"
    emails = [*hashes, *hashes]
    pq.write_table(
        pa.table(
            {"email": emails, "hash": pa.array([hashes[e] for e in emails], pa.uint64())},
            schema=LEDGER_SCHEMA,
        ),
        ledger,
    )
    mirror = mode == "mirror"
    with _plan(ws, ledger=ledger, incremental=True, mirror=mirror) as plan:
        assert plan.counts["selected"] == EXPECTED_COUNTS["selected"]
        assert plan.counts["unchanged"] == EXPECTED_COUNTS["to_send"]
        assert plan.counts["to_send"] == 0
        assert plan.removals() == (["gone@example.com"] if mirror else [])
        assert plan.counts["to_remove"] == (1 if mirror else 0)


@pytest.mark.parametrize("mode", ["incremental", "mirror"])
def test_unreadable_ledger_is_a_clear_error(ws: Workspace, tmp_path: Path, mode: str) -> None:
    ledger = tmp_path / "ledger.parquet"
    ledger.write_bytes(b"not parquet")
    with pytest.raises(Exception, match=r"ledger\.parquet: cannot read the ledger"):
        _plan(ws, ledger=ledger, incremental=True, mirror=mode == "mirror")
    # A file whose rows fail only once they are read (a digest that is not a
    # number) names the ledger too, not the profiles or a segment.
    pq.write_table(pa.table({"email": ["ana@example.com"], "hash": ["not-a-number"]}), ledger)
    with pytest.raises(WorkspaceError, match=r"ledger\.parquet: cannot read the ledger"):
        _plan(ws, ledger=ledger, incremental=True, mirror=mode == "mirror")


def test_a_plan_sends_the_snapshot_it_counted_even_if_the_source_changes(
    ws: Workspace,
) -> None:
    # The payload is taken during planning: what the plan (and its preview) counted
    # is exactly what is sent, even if the file is rewritten mid-export.
    with _plan(ws) as plan:
        text = ws.source.read_text(encoding="utf-8")
        ws.source.write_text(text.replace("kim@example.com", "kimberly@example.com"))
        assert _contacts(plan) == EXPECTED_CONTACTS
        assert plan.counts["to_send"] == len(EXPECTED_CONTACTS)


@pytest.mark.slow
def test_contacts_stream_every_contact_once_over_many_row_groups(tmp_path: Path) -> None:
    # 300,000 rows in shuffled order: several row groups, read on every core.
    n = 300_000
    order = list(range(n))
    random.Random(3).shuffle(order)
    table = pa.table(
        {
            "id": pa.array(range(n)),
            "email": pa.array([f"u{i:07d}@example.com" for i in order]),
            "first": pa.array([f"F{i}" for i in order]),
        }
    )
    pq.write_table(table, tmp_path / "profiles.parquet", row_group_size=50_000)
    (tmp_path / "segments.toml").write_text(
        '[profiles]\npath = "profiles.parquet"\nkey = "id"\n\n[segments.all]\nwhere = "true"\n'
    )
    mapping = FieldMapping(email="email", reserved={"first_name": "first"})
    request = PlanRequest(segments=("all",), mapping=mapping)
    with plan_export(Workspace.open(tmp_path), request) as plan:
        emails = [e for b in plan.contacts(rows_per_batch=7_000) for e in b.column(0).to_pylist()]
        first = [e for b in plan.contacts(limit=5) for e in b.column(0).to_pylist()]
    assert len(emails) == n
    assert sorted(emails) == [f"u{i:07d}@example.com" for i in range(n)]
    assert len(first) == 5
    assert set(first) <= set(emails)


def test_a_profile_column_named_like_the_internal_row_number_is_just_a_column(
    tmp_path: Path,
) -> None:
    """Reproduction: a Parquet column `_segsync_row` became the plan's row number,
    and a duplicate email was sent twice in one request."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "ws"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "customer_id": [1, 2, 3],
                "email": ["a@example.com", "A@example.com ", "b@example.com"],
                "_segsync_row": [0, 0, 0],
                "_segsync_row_2": ["x", "y", "z"],
            }
        ),
        folder / "profiles.parquet",
    )
    (folder / "segments.toml").write_text(
        '[profiles]\npath = "profiles.parquet"\nkey = "customer_id"\n'
        '[segments.all]\nwhere = "_segsync_row = 0"\n'
    )
    ws = Workspace.open(folder)
    assert [c.name for c in ws.columns()][2:] == ["_segsync_row", "_segsync_row_2"]
    request = PlanRequest(segments=("all",), mapping=FieldMapping(email="email"))
    with plan_export(ws, request) as plan:
        emails = [e for b in plan.contacts() for e in b.column("email").to_pylist()]
        assert sorted(emails) == ["a@example.com", "b@example.com"]
        assert plan.counts["duplicate"] == 1
        assert [r.key for r in plan.rejected()] == ["2"]


@pytest.mark.parametrize("kind", ["csv", "parquet", "duckdb"])
def test_a_plan_only_reviewed_shows_what_a_plan_to_send_would_send(
    make_workspace: Callable[..., Path], kind: str
) -> None:
    # A preview keeps no payload values: its samples and first contacts are looked
    # up in the source, and must be the very contacts, in the very order, that a
    # plan kept for sending streams first.
    ws = Workspace.open(make_workspace(kind))
    with _plan(ws) as sending, _plan(ws, keep_payloads=False) as reviewed:
        assert reviewed.counts == sending.counts
        assert reviewed.sample_contacts == sending.sample_contacts == _by_email(EXPECTED_CONTACTS)

        def first(plan: Plan, n: int) -> list[dict]:
            return [row for b in plan.contacts(limit=n) for row in b.to_pylist()]

        assert first(reviewed, 3) == first(sending, 3)
        assert first(reviewed, 100) == first(sending, 100)

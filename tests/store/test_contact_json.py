"""The two ways a contact's JSON is built must give the same text."""

from __future__ import annotations

from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from store.plan import PlanRequest, plan_export
from store.records import FieldMapping
from store.sql_plan import contacts_sql
from store.workspace import Workspace

SEGMENTS = """
[profiles]
path = "profiles.parquet"

[segments.all]
where = "true"
"""


def test_dense_and_sparse_json_agree_and_sparse_omits_missing_fields(tmp_path: Path) -> None:
    rows = [
        {"email": f"p{i}@example.com", "first": f"Ä{i}\"x", "city": None if i % 3 else "Köln",
         "ltv": None if i % 4 == 0 else i * 1.5, "tier": "gold" if i % 2 else ""}
        for i in range(40)
    ]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "profiles.parquet")
    (tmp_path / "segments.toml").write_text(SEGMENTS)
    mapping = FieldMapping(
        email="email",
        reserved={"first_name": "first", "city": "city"},
        custom={"ltv": "ltv", "tier": "tier"},
    )
    request = PlanRequest(("all",), mapping, custom_field_ids={"ltv": "w1_N", "tier": "e2_T"})
    with plan_export(Workspace.open(tmp_path), request) as plan:
        spec = plan._spec
        dense, sparse = spec.contact_json(), spec._sparse_json()
        contacts = [
            orjson.loads(c) for b in plan.contacts() for c in b.column("contact").to_pylist()
        ]
        both = contacts_sql(spec).replace(
            f"{dense} AS contact", f"{dense} AS contact, {sparse} AS sparse"
        )
        pairs = plan._con.execute(f"SELECT contact, sparse FROM ({both})").fetchall()
        assert len(pairs) == len(rows)
        assert all(fast == slow for fast, slow in pairs)
    by_email = {c["email"]: c for c in contacts}
    for i, row in enumerate(rows):
        contact = by_email[f"p{i}@example.com"]
        assert contact["first_name"] == row["first"]
        assert ("city" in contact) == (row["city"] is not None)
        custom = contact.get("custom_fields", {})
        assert ("w1_N" in custom) == (row["ltv"] is not None)
        assert ("e2_T" in custom) == bool(row["tier"])
        if row["ltv"] is not None:
            assert custom["w1_N"] == row["ltv"]
    full = [c for c in contacts if "city" in c and len(c.get("custom_fields", {})) == 2]
    assert full, "some rows must take the dense path"

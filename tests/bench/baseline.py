"""The export a user would write with SendGrid's official Python library.

Run as its own process (`python -m tests.bench.baseline ...`) so the benchmark
measures it exactly like `segsync export`: wall, CPU and peak RSS of one
process. To be the *same work*, the SQL selects exactly the contacts segsync
sends (consent, valid email, reserved-field limits, first row per email) and
shapes the same fields; what stays in Python is what such a script does in
Python: a dict per row, the library's `json.dumps`, one blocking
`urllib` request per 30,000 contacts (halved after SendGrid answers 413: the
library does not split by size, and escaped JSON of 30,000 sample contacts is
about 8.6 MB, over the 6 MB limit), then polling every import job until
SendGrid says it finished (a 202 alone is not success).

`SendGridAPIClient(api_key, host=URL)` talks plain http to the emulator: the
library builds URLs from `host` as given and never insists on https.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import duckdb
from python_http_client.exceptions import PayloadTooLargeError
from sendgrid import SendGridAPIClient

from store.sql_plan import EMAIL_REGEX

BATCH = 30_000
RESERVED = {
    "first_name": ("first_name", 50),
    "last_name": ("last_name", 50),
    "city": ("city", 60),
    "state_province_region": ("state", 50),
    "country": ("country", 50),
    "postal_code": ("postal_code", None),
}


def selection_sql(profiles: str, where: str) -> str:
    """One row per contact to send, ordered by email, values trimmed ('' as NULL)."""
    text = {field: f"NULLIF(trim({col}), '')" for field, (col, _limit) in RESERVED.items()}
    too_long = " OR ".join(
        f"coalesce(length({text[field]}), 0) > {limit}"
        for field, (_col, limit) in RESERVED.items()
        if limit is not None
    )
    email = "NULLIF(lower(trim(email)), '')"
    return f"""
        SELECT email, {", ".join(f"{expr} AS {field}" for field, expr in text.items())},
               NULLIF(trim(loyalty_tier), '') AS loyalty_tier,
               CAST(lifetime_value AS DOUBLE) AS lifetime_value,
               strftime(signup_date, '%Y-%m-%d') AS signup_date
        FROM (
            SELECT *, {email} AS email,
                   row_number() OVER (PARTITION BY {email} ORDER BY customer_id) AS nth
            FROM read_parquet('{profiles}')
            WHERE ({where}) AND coalesce(email_opt_in, false)
              AND length({email}) <= 254 AND strpos({email}, '@') <= 65
              AND regexp_full_match({email}, '{EMAIL_REGEX.replace("'", "''")}')
              AND NOT ({too_long})
        )
        WHERE nth = 1
        ORDER BY email
    """


def field_ids(sg: SendGridAPIClient) -> dict[str, str]:
    response = sg.client.marketing.field_definitions.get()
    return {f["name"]: f["id"] for f in json.loads(response.body)["custom_fields"]}


def export(sg: SendGridAPIClient, con: duckdb.DuckDBPyConnection, sql: str, list_id: str) -> dict:
    ids = field_ids(sg)
    custom_names = ("loyalty_tier", "lifetime_value", "signup_date")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    reserved = [(i, n) for i, n in enumerate(names) if n not in custom_names]
    custom = [(i, ids[n]) for i, n in enumerate(names) if n in custom_names]
    job_ids: list[str] = []
    sent = too_large = 0
    size = BATCH
    while rows := cur.fetchmany(BATCH):
        contacts: list[dict[str, Any]] = []
        for row in rows:
            contact = {name: row[i] for i, name in reserved if row[i] is not None}
            fields = {fid: row[i] for i, fid in custom if row[i] is not None}
            if fields:
                contact["custom_fields"] = fields
            contacts.append(contact)
        start = 0
        while start < len(contacts):
            chunk = contacts[start : start + size]
            try:
                response = sg.client.marketing.contacts.put(
                    request_body={"list_ids": [list_id], "contacts": chunk}
                )
            except PayloadTooLargeError:
                # The library sends what it is given; a script learns the hard way
                # that 30,000 contacts can exceed 6 MB and halves its batches.
                too_large += 1
                size = max(1, size // 2)
                continue
            job_ids.append(json.loads(response.body)["job_id"])
            sent += len(chunk)
            start += len(chunk)
    statuses = confirm(sg, job_ids)
    return {"sent": sent, "requests_put": len(job_ids), "too_large": too_large, "jobs": statuses}


def confirm(sg: SendGridAPIClient, job_ids: list[str]) -> dict[str, int]:
    """Poll each import job until it is no longer pending; count the final statuses."""
    final: dict[str, str] = {}
    while len(final) < len(job_ids):
        for job_id in job_ids:
            if job_id in final:
                continue
            job = json.loads(sg.client.marketing.contacts.imports._(job_id).get().body)
            if job["status"] != "pending":
                final[job_id] = job["status"]
        if len(final) < len(job_ids):
            time.sleep(0.25)
    counts: dict[str, int] = {}
    for status in final.values():
        counts[status] = counts.get(status, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profiles", required=True, help="profiles.parquet of the workspace")
    parser.add_argument("--where", default="true", help="the segment predicate")
    parser.add_argument("--url", required=True)
    parser.add_argument("--list-id", required=True)
    parser.add_argument("--key-env", required=True, help="env variable holding the API key")
    args = parser.parse_args()
    sg = SendGridAPIClient(os.environ[args.key_env], host=args.url)
    started = time.perf_counter()
    with duckdb.connect() as con:
        result = export(sg, con, selection_sql(args.profiles, args.where), args.list_id)
    result["seconds"] = round(time.perf_counter() - started, 3)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

"""Generate a realistic, deliberately dirty sample workspace inside DuckDB.

Every value is a pure function of (row number, seed) through ``hash()``, so a seed
always gives the same rows regardless of thread count, and a million rows take
seconds because nothing loops in Python. The dirt is what real exports contain and
what the plan must catch: invalid and missing emails, duplicates differing only in
case or surrounding spaces, over-long names, non-Latin scripts, '' next to NULL.
Segment predicates use fixed dates (reference day 2026-01-01), so counts are stable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import duckdb

from store.postgres_source import INSTALL_HINT, PostgresSource, PostgresSourceError
from store.workspace import SEGMENTS_FILE, quote_literal, register_connection

# (country, weight, culture, [(state, city, postal_code), ...])
PLACES: list[tuple[str, int, str, list[tuple[str, str, str]]]] = [
    (
        "US",
        34,
        "en",
        [
            ("CA", "San Francisco", "94103"),
            ("NY", "New York", "10001"),
            ("TX", "Austin", "73301"),
            ("IL", "Chicago", "60601"),
            ("WA", "Seattle", "98101"),
            ("FL", "Miami", "33101"),
            ("MA", "Boston", "02108"),
        ],
    ),
    (
        "DE",
        16,
        "de",
        [
            ("BE", "Berlin", "10115"),
            ("BY", "München", "80331"),
            ("HH", "Hamburg", "20095"),
            ("NW", "Köln", "50667"),
        ],
    ),
    ("GB", 9, "en", [("England", "London", "SW1A 1AA"), ("Scotland", "Edinburgh", "EH1 1YZ")]),
    (
        "FR",
        8,
        "fr",
        [("Île-de-France", "Paris", "75001"), ("Auvergne-Rhône-Alpes", "Lyon", "69001")],
    ),
    ("ES", 5, "es", [("Madrid", "Madrid", "28001"), ("Cataluña", "Barcelona", "08001")]),
    ("CA", 5, "en", [("ON", "Toronto", "M5H 2N2"), ("QC", "Montréal", "H2Y 1C6")]),
    ("BR", 4, "es", [("SP", "São Paulo", "01000-000"), ("RJ", "Rio de Janeiro", "20000-000")]),
    ("JP", 5, "ja", [("東京都", "東京", "100-0001"), ("大阪府", "大阪", "530-0001")]),
    ("CN", 5, "zh", [("北京市", "北京", "100000"), ("上海市", "上海", "200000")]),
    (
        "GR",
        4,
        "el",
        [("Αττική", "Αθήνα", "105 57"), ("Κεντρική Μακεδονία", "Θεσσαλονίκη", "546 21")],
    ),
    ("BG", 5, "bg", [("София-град", "София", "1000"), ("Пловдив", "Пловдив", "4000")]),
]

# culture -> (first names, last names), each (display, ascii handle for the email)
NAMES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "en": (
        [
            ("James", "james"),
            ("Mary", "mary"),
            ("Olivia", "olivia"),
            ("Noah", "noah"),
            ("Emma", "emma"),
            ("Liam", "liam"),
            ("Zoë", "zoe"),
            ("Chloé", "chloe"),
            ("William", "william"),
            ("Ava", "ava"),
        ],
        [
            ("Smith", "smith"),
            ("Johnson", "johnson"),
            ("Brown", "brown"),
            ("Taylor", "taylor"),
            ("O'Neil", "oneil"),
            ("Garcia", "garcia"),
            ("Miller", "miller"),
            ("Wilson", "wilson"),
        ],
    ),
    "de": (
        [
            ("Anna", "anna"),
            ("Jürgen", "juergen"),
            ("Lukas", "lukas"),
            ("Sophie", "sophie"),
            ("Björn", "bjoern"),
            ("Maximilian", "max"),
            ("Lena", "lena"),
        ],
        [
            ("Müller", "mueller"),
            ("Schmidt", "schmidt"),
            ("Schäfer", "schaefer"),
            ("Weiß", "weiss"),
            ("Fischer", "fischer"),
            ("Köhler", "koehler"),
        ],
    ),
    "fr": (
        [
            ("François", "francois"),
            ("Amélie", "amelie"),
            ("Hélène", "helene"),
            ("Louis", "louis"),
            ("Inès", "ines"),
        ],
        [("Dubois", "dubois"), ("Lefèvre", "lefevre"), ("Moreau", "moreau"), ("Girard", "girard")],
    ),
    "es": (
        [
            ("José", "jose"),
            ("María", "maria"),
            ("Sofía", "sofia"),
            ("João", "joao"),
            ("Lucía", "lucia"),
        ],
        [
            ("García", "garcia"),
            ("Martínez", "martinez"),
            ("Núñez", "nunez"),
            ("Gonçalves", "goncalves"),
        ],
    ),
    "ja": (
        [("陽翔", "haruto"), ("結衣", "yui"), ("蓮", "ren"), ("さくら", "sakura")],
        [("佐藤", "sato"), ("鈴木", "suzuki"), ("高橋", "takahashi"), ("田中", "tanaka")],
    ),
    "zh": (
        [("伟", "wei"), ("芳", "fang"), ("静", "jing"), ("磊", "lei")],
        [("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu")],
    ),
    "el": (
        [("Γιώργος", "giorgos"), ("Ελένη", "eleni"), ("Νίκος", "nikos"), ("Μαρία", "maria")],
        [("Παπαδόπουλος", "papadopoulos"), ("Οικονόμου", "oikonomou"), ("Γεωργίου", "georgiou")],
    ),
    "bg": (
        [("Иван", "ivan"), ("Мария", "mariya"), ("Димитър", "dimitar"), ("Елена", "elena")],
        [("Иванов", "ivanov"), ("Петрова", "petrova"), ("Георгиев", "georgiev")],
    ),
}

LONG_LAST_NAMES = [
    "Featherstonehaugh-Montmorency-Cholmondeley-Marjoribanks",
    "Wolfeschlegelsteinhausenbergerdorff-Vandersteen-Smith",
    "Papadimitriou-Konstantinopoulos-Hatzidakis-Alexandropoulou",
]
DOMAINS = ["example.com", "example.net", "example.org", "mail.example.com", "shop.example.org"]
CATEGORIES = ["books", "garden", "electronics", "toys", "fashion", "sports", "home", "beauty"]

SEGMENTS_TOML = """\
# segsync workspace: profiles and segment definitions.
# Predicates are DuckDB SQL over the profile columns. Dates are fixed
# (reference day 2026-01-01) so member counts do not drift over time.

[profiles]
path = "{path}"
key = "customer_id"

[segments.high_value]
description = "Customers who spent 500 or more"
where = "lifetime_value >= 500"

[segments.lapsed_365]
description = "No order in the 365 days before 2026-01-01"
where = "last_order_at < TIMESTAMP '2025-01-01 00:00:00'"

[segments.newsletter_de]
description = "Newsletter opt-ins in Germany"
where = "email_opt_in AND country = 'DE'"

[segments.newsletter_us]
description = "Newsletter opt-ins in the United States"
where = "email_opt_in AND country = 'US'"

[segments.new_signups]
description = "Signed up in the last quarter of 2025"
where = "signup_date >= DATE '2025-10-01'"

[segments.vip]
description = "VIP loyalty tier"
where = "loyalty_tier = 'vip'"

[segments.gardeners]
description = "Favourite category is garden"
where = "favourite_category = 'garden'"
"""


def _values(rows: Sequence[tuple[object, ...]]) -> str:
    """A VALUES list of literals (all data here is static, quoted defensively anyway)."""

    def lit(v: object) -> str:
        return str(v) if isinstance(v, int) else quote_literal(str(v))

    return ", ".join("(" + ", ".join(lit(v) for v in row) + ")" for row in rows)


def _lookup_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Small tables the generator joins against, indexed from 0 for ``hash % n`` picks."""
    # A country appears in as many slots as its weight, so a uniform pick is weighted.
    slots = [(country, culture) for country, weight, culture, _ in PLACES for _ in range(weight)]
    countries = [(i, country, culture) for i, (country, culture) in enumerate(slots)]
    places = [
        (country, i, *spot) for country, _, _, spots in PLACES for i, spot in enumerate(spots)
    ]
    names: list[tuple[object, ...]] = []
    for culture, (firsts, lasts) in NAMES.items():
        names.extend((culture, "first", i, d, a) for i, (d, a) in enumerate(firsts))
        names.extend((culture, "last", i, d, a) for i, (d, a) in enumerate(lasts))
    con.execute(
        f"CREATE TEMP TABLE countries(idx, country, culture) AS VALUES {_values(countries)}"
    )
    con.execute(
        f"CREATE TEMP TABLE places(country, idx, state, city, postal) AS VALUES {_values(places)}"
    )
    con.execute(
        f"CREATE TEMP TABLE names(culture, kind, idx, display, ascii) AS VALUES {_values(names)}"
    )
    con.execute(
        "CREATE TEMP TABLE name_counts AS "
        "SELECT culture, kind, count(*) AS n FROM names GROUP BY ALL"
    )
    con.execute(
        "CREATE TEMP TABLE place_counts AS SELECT country, count(*) AS n FROM places GROUP BY ALL"
    )


def _profiles_sql(rows: int, seed: int) -> str:
    """The generating query. ``u(x, salt)`` is a uniform [0, 1) draw keyed by seed."""
    u = "((hash({x}, {seed}, '{salt}') % 1000000)::DOUBLE / 1000000.0)"

    def r(x: str, salt: str) -> str:
        return u.format(x=x, seed=seed, salt=salt)

    def h(x: str, salt: str) -> str:
        return f"hash({x}, {seed}, '{salt}')"

    def pick(items: list[str], x: str, salt: str) -> str:
        lst = "[" + ", ".join(quote_literal(i) for i in items) + "]"
        return f"{lst}[1 + ({h(x, salt)} % {len(items)})::BIGINT]"

    n_countries = sum(w for _, w, _, _ in PLACES)
    return f"""
    WITH base AS (
        SELECT i AS n,
               -- ~2% of rows re-use an earlier person: duplicates with a new customer_id
               CASE WHEN i > 60 AND {r("i", "dup")} < 0.02
                    THEN i - 1 - ({h("i", "dupof")} % 50)::BIGINT ELSE i END AS p
        FROM range(1, {rows + 1}) t(i)
    ),
    person AS (
        SELECT b.n, b.p, c.country, c.culture,
               ({h("b.p", "place")} % pc.n)::BIGINT AS place_idx,
               ({h("b.p", "first")} % fc.n)::BIGINT AS first_idx,
               ({h("b.p", "last")} % lc.n)::BIGINT AS last_idx
        FROM base b
        JOIN countries c ON c.idx = ({h("b.p", "country")} % {n_countries})::BIGINT
        JOIN place_counts pc ON pc.country = c.country
        JOIN name_counts fc ON fc.culture = c.culture AND fc.kind = 'first'
        JOIN name_counts lc ON lc.culture = c.culture AND lc.kind = 'last'
    ),
    named AS (
        SELECT p.*, pl.state, pl.city, pl.postal,
               fnm.display AS fn, fnm.ascii AS fa, lnm.display AS ln, lnm.ascii AS la,
               fa || CASE WHEN {r("p.p", "sep")} < 0.5 THEN '.' ELSE '_' END || la
                   || p.p::VARCHAR || '@' || {pick(DOMAINS, "p.p", "domain")} AS clean_email
        FROM person p
        JOIN places pl ON pl.country = p.country AND pl.idx = p.place_idx
        JOIN names fnm ON fnm.culture = p.culture AND fnm.kind = 'first' AND fnm.idx = p.first_idx
        JOIN names lnm ON lnm.culture = p.culture AND lnm.kind = 'last' AND lnm.idx = p.last_idx
    ),
    dirty AS (
        SELECT *,
               CASE
                 WHEN {r("p", "email")} < 0.03 THEN
                   CASE ({h("p", "badkind")} % 4)::INTEGER
                     WHEN 0 THEN replace(clean_email, '@', '')
                     WHEN 1 THEN fa || ' ' || clean_email[length(fa) + 2:]
                     WHEN 2 THEN replace(clean_email, '@', '@@')
                     ELSE clean_email || '.'
                   END
                 WHEN {r("p", "email")} < 0.0375 THEN NULL
                 WHEN {r("p", "email")} < 0.045 THEN ''
                 WHEN {r("p", "case")} < 0.1 THEN upper(fa[1]) || clean_email[2:]
                 ELSE clean_email
               END AS person_email
        FROM named
    ),
    final AS (
        SELECT
            n AS customer_id,
            CASE WHEN n = p THEN person_email
                 WHEN ({h("n", "dupkind")} % 3)::INTEGER = 0 THEN upper(person_email)
                 WHEN ({h("n", "dupkind")} % 3)::INTEGER = 1 THEN '  ' || person_email || ' '
                 ELSE upper(person_email[1]) || person_email[2:] || ' '
            END AS email,
            CASE WHEN {r("n", "fnnull")} < 0.01 THEN NULL
                 WHEN {r("n", "fnnull")} < 0.015 THEN ''
                 ELSE fn END AS first_name,
            CASE WHEN {r("n", "lnlong")} < 0.005 THEN {pick(LONG_LAST_NAMES, "n", "longname")}
                 WHEN {r("n", "lnlong")} < 0.015 THEN NULL
                 ELSE ln END AS last_name,
            CASE WHEN {r("n", "ctry")} < 0.005 THEN '' ELSE country END AS country,
            CASE WHEN {r("n", "state")} < 0.03 THEN NULL
                 WHEN {r("n", "state")} < 0.05 THEN ''
                 ELSE state END AS state,
            CASE WHEN {r("n", "city")} < 0.02 THEN '' ELSE city END AS city,
            CASE WHEN {r("n", "postal")} < 0.02 THEN NULL ELSE postal END AS postal_code,
            CASE WHEN {r("n", "optin")} < 0.05 THEN NULL
                 ELSE {r("n", "optin")} < 0.70 END AS email_opt_in,
            round(-ln(1.0 - {r("n", "ltv")}) * 150, 2)::DECIMAL(12, 2) AS lifetime_value,
            DATE '2018-01-01' + ({h("n", "signup")} % 2922)::INTEGER AS signup_date
            , {r("n", "order")} AS order_draw
            , {r("n", "tier")} AS tier_draw
            , {r("n", "bday")} AS bday_draw
            , {r("n", "cat")} AS cat_draw
            , {pick(CATEGORIES, "n", "category")} AS category
        FROM dirty
    )
    SELECT customer_id, email, first_name, last_name, country, state, city, postal_code,
           email_opt_in, lifetime_value,
           CASE WHEN order_draw < 0.08 THEN NULL
                ELSE signup_date::TIMESTAMP + to_seconds(
                     floor((TIMESTAMP '2025-12-31 23:59:59' - signup_date::TIMESTAMP)
                           .epoch() * (order_draw - 0.08) / 0.92)::BIGINT)
           END AS last_order_at,
           signup_date,
           CASE WHEN tier_draw < 0.05 THEN NULL
                WHEN tier_draw < 0.08 THEN ''
                WHEN lifetime_value >= 800 THEN 'vip'
                WHEN lifetime_value >= 300 THEN 'gold'
                WHEN lifetime_value >= 100 THEN 'silver'
                ELSE 'bronze' END AS loyalty_tier,
           CASE WHEN bday_draw < 0.2 THEN NULL
                ELSE DATE '1950-01-01' + floor((bday_draw - 0.2) / 0.8 * 20454)::INTEGER
           END AS birthday,
           CASE WHEN cat_draw < 0.1 THEN NULL
                WHEN cat_draw < 0.15 THEN ''
                ELSE category END AS favourite_category
    FROM final
    ORDER BY customer_id
    """


def generate_workspace(out_dir: Path, rows: int, seed: int = 7, fmt: str = "parquet") -> Path:
    """Write ``profiles.<fmt>`` and ``segments.toml`` into ``out_dir``; return ``out_dir``.

    ``fmt`` is ``"parquet"`` or ``"csv"``. Existing files of those names are replaced.
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unsupported sample format {fmt!r} (use parquet or csv)")
    if rows < 0:
        raise ValueError("rows must be zero or more")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"profiles.{fmt}"
    options = "FORMAT parquet, COMPRESSION zstd" if fmt == "parquet" else "FORMAT csv, HEADER"
    # Registered so Ctrl+C stops a large COPY at once (see store.workspace.interrupt_all).
    with register_connection(duckdb.connect(":memory:")) as con:
        # One thread: the output order and the Parquet row-group layout (so the bytes)
        # must not depend on how many cores the machine has.
        con.execute("SET threads = 1")
        con.execute("SET enable_progress_bar = false")  # callers own the terminal
        _lookup_tables(con)
        con.execute(
            f"COPY ({_profiles_sql(rows, int(seed))}) TO {quote_literal(str(target))} ({options})"
        )
    (out_dir / SEGMENTS_FILE).write_text(SEGMENTS_TOML.format(path=target.name), encoding="utf-8")
    return out_dir


# The sample's columns in Postgres: NUMERIC(12, 2) as a CRM would declare money,
# so the workspace reads it back as DECIMAL(12, 2) like the Parquet file's.
_PG_COLUMNS = """
    customer_id bigint PRIMARY KEY, email text, first_name text, last_name text,
    country text, state text, city text, postal_code text, email_opt_in boolean,
    lifetime_value numeric(12, 2), last_order_at timestamp, signup_date date,
    loyalty_tier text, birthday date, favourite_category text
"""
_PG_TABLE = re.compile(r"^(?:([a-z_][a-z0-9_]*)\.)?([a-z_][a-z0-9_]*)$")

POSTGRES_SEGMENTS_HEADER = """\
[profiles]
postgres = "{url}"   # no password here: PGPASSWORD, ~/.pgpass, or password_env = "VAR"
table = "{table}"
key = "customer_id"
"""


def load_postgres(url: str, rows: int, seed: int = 7, table: str = "public.profiles") -> int:
    """Replace ``table`` in the database at ``url`` with the synthetic profiles
    (the same rows ``generate_workspace`` writes for this seed); returns the
    row count. For trying a Postgres workspace and for its tests."""
    match = _PG_TABLE.match(table)
    if match is None:
        raise ValueError(f"table {table!r}: use schema.name in lower case, e.g. public.profiles")
    schema, name = match.group(1) or "public", match.group(2)
    source = PostgresSource.from_config({"postgres": url, "table": table})
    try:
        import adbc_driver_postgresql.dbapi as pg_dbapi
    except ImportError:
        raise PostgresSourceError(f"a PostgreSQL source needs its driver: {INSTALL_HINT}") from None
    password = source.password()
    with register_connection(duckdb.connect(":memory:")) as con:
        con.execute("SET threads = 1")  # same rows in the same order on any machine
        con.execute("SET enable_progress_bar = false")
        _lookup_tables(con)
        reader = con.sql(_profiles_sql(rows, int(seed))).to_arrow_reader(100_000)
        try:
            with (
                pg_dbapi.connect(source.libpq_uri(password), autocommit=True) as pg,
                pg.cursor() as cur,
            ):
                cur.execute("BEGIN")
                cur.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
                cur.execute(f"DROP TABLE IF EXISTS {schema}.{name}")
                cur.execute(f"CREATE TABLE {schema}.{name} ({_PG_COLUMNS})")
                count = cur.adbc_ingest(name, reader, mode="append", db_schema_name=schema)
                cur.execute(f"ANALYZE {schema}.{name}")  # planner statistics, like a live one
                cur.execute("COMMIT")
        except Exception as err:
            if not type(err).__module__.startswith("adbc_driver"):
                raise
            reason = source.explain(err, password, connecting=True)
            raise PostgresSourceError(f"{source.label}: {reason}") from None
    return int(count)


def generate_postgres_workspace(
    out_dir: Path, rows: int, url: str, seed: int = 7, table: str = "public.profiles"
) -> Path:
    """Load the synthetic profiles into Postgres (``load_postgres``) and write a
    ``segments.toml`` in ``out_dir`` that reads them, with the sample segments."""
    load_postgres(url, rows, seed, table)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    segments = SEGMENTS_TOML.split("[segments.", 1)[1]
    header = POSTGRES_SEGMENTS_HEADER.format(url=url, table=table)
    (out_dir / SEGMENTS_FILE).write_text(header + "\n[segments." + segments, encoding="utf-8")
    return out_dir


def main(argv: list[str] | None = None) -> int:
    """``python -m store.sample --rows N --out DIR [--postgres URL]``: the sample
    workspace without the app's command line (for a Postgres one, the rows are
    loaded into ``--table`` of that database and DIR gets the segments.toml)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m store.sample")
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", metavar="URL", help="load into PostgreSQL (no password)")
    parser.add_argument("--table", default="public.profiles")
    args = parser.parse_args(argv)
    try:
        if args.postgres:
            generate_postgres_workspace(args.out, args.rows, args.postgres, args.seed, args.table)
        else:
            generate_workspace(args.out, args.rows, args.seed)
    except (ValueError, PostgresSourceError) as err:
        print(f"segsync sample: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.rows:,} profiles; workspace {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

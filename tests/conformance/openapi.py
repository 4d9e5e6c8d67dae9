"""Check HTTP exchanges against SendGrid's own OpenAPI documents.

The documents (twilio/sendgrid-oai, OpenAPI 3.1) live outside this repository,
in ../shared/sendgrid-openapi/ (or $SEGSYNC_OPENAPI_DIR) and are read at test
time, never copied, so a newer snapshot is checked without code changes.

`OpenApi.check_request` / `check_response` validate one exchange with
jsonschema (Draft 2020-12, the dialect of OpenAPI 3.1) and return the
problems that are not explained by a known difference between the documents
and SendGrid's real behaviour. Those differences are listed, with reasons, in
`ALLOWED_DEVIATIONS`: the emulator follows the real API (see
../shared/docs/sendgrid-api.md) and the allow-list says precisely where that
departs from the documents, so nothing else can slip through.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOC_FILES = (
    "tsg_scopes_v3.json",
    "tsg_mc_lists_v3.json",
    "tsg_mc_contacts_v3.json",
    "tsg_mc_custom_fields_v3.json",
)
_BASE_URI = "urn:sendgrid-oai:"


def openapi_dir() -> Path | None:
    """Where the documents are: $SEGSYNC_OPENAPI_DIR, else ../shared/sendgrid-openapi/."""
    env = os.environ.get("SEGSYNC_OPENAPI_DIR")
    candidates = [Path(env)] if env else []
    candidates.append(Path(__file__).resolve().parents[2].parent / "shared" / "sendgrid-openapi")
    for folder in candidates:
        if all((folder / name).is_file() for name in DOC_FILES):
            return folder
    return None


@dataclass(frozen=True)
class Deviation:
    """A place where SendGrid's real answers (and so the emulator's) differ from the documents."""

    method: str  # "*" for any
    template: str  # path template, "*" for any
    status: int | None  # response status; None for requests
    path: str  # regex on the instance path ("errors/0/field"); "" is the whole body
    keyword: str  # the JSON Schema keyword that fails ("type", ...)
    reason: str
    actual: type  # the only kind of value the deviation excuses (NoneType, list, ...)
    # When the real value is an array of what the document describes once:
    # (document, pointer) of the schema every element must still match.
    items: tuple[str, str] | None = None

    def covers(self, problem: Problem) -> bool:
        return (
            self.method in ("*", problem.method)
            and self.template in ("*", problem.template)
            and self.status == problem.status
            and self.keyword == problem.keyword
            and type(problem.instance) is self.actual
            and re.fullmatch(self.path, problem.path) is not None
        )


# Error bodies: real SendGrid sends `"field": null` when no field is at fault
# (sendgrid-api.md; the scopes document's own 401 example shows it), while the
# lists, contacts and custom-fields documents type `field` as a plain string.
_NULL_FIELD = "real error bodies carry field: null; these documents type it as string"
# Statuses SendGrid answers on every endpoint but not every document lists;
# their bodies are then checked against the generic error shape instead.
GENERIC_ERROR_STATUSES = {
    400: "some documents list no 400 for an operation that validates its input",
    401: "the lists and custom-fields documents list no 401; SendGrid answers one for a bad key",
    403: "the lists and custom-fields documents list no 403; SendGrid answers one for a scope",
    404: "a missing list/job/route is 404 on every endpoint",
    405: "the wrong method on a known path",
    413: "a PUT body over 6 MB; the documents list no status for it (unconfirmed)",
    429: "rate limiting applies to every endpoint; no document lists 429",
    500: "transient server errors can happen on any endpoint",
    503: "transient server errors can happen on any endpoint",
}
ALLOWED_DEVIATIONS: tuple[Deviation, ...] = (
    *(
        Deviation("*", "*", status, r"errors/\d+/field", "type", _NULL_FIELD, type(None))
        for status in (400, 404, 413)
    ),
    Deviation(
        "GET",
        "/v3/marketing/lists/{id}",
        404,
        "",
        "type",
        "the document shows a bare array of errors; SendGrid answers {errors: [...]}",
        dict,
    ),
    Deviation(
        "GET",
        "/v3/marketing/lists/{id}",
        200,
        "contact_sample",
        "type",
        "contact_sample is an array of up to 50 contacts (sendgrid-api.md); "
        "the document shows a single contact object",
        list,
        items=("tsg_mc_lists_v3.json", "/components/schemas/ContactDetails"),
    ),
)


@dataclass(frozen=True)
class Problem:
    """One way an exchange does not match the documents."""

    side: str  # "request" or "response"
    method: str
    template: str
    status: int | None
    path: str
    keyword: str
    message: str
    instance: Any = field(default=None, compare=False, repr=False)  # the failing value

    def __str__(self) -> str:
        where = f"{self.method} {self.template}"
        status = f" {self.status}" if self.status is not None else ""
        return f"{self.side} of {where}{status} at '{self.path}' ({self.keyword}): {self.message}"


class OpenApi:
    """The loaded documents and validators for their operations."""

    def __init__(self, docs: dict[str, dict[str, Any]]) -> None:
        self.docs = {name: _nullable_to_type(doc) for name, doc in docs.items()}
        registry: Registry = Registry()
        for name, doc in self.docs.items():
            registry = registry.with_resource(
                _BASE_URI + name, Resource.from_contents(doc, default_specification=DRAFT202012)
            )
        self._registry = registry
        self.operations: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
        for name, doc in self.docs.items():
            for template, item in doc["paths"].items():
                for method, operation in item.items():
                    if method in ("get", "put", "post", "patch", "delete"):
                        self.operations[(method.upper(), template)] = (name, operation)
        self._validators: dict[str, Draft202012Validator] = {}

    @classmethod
    def load(cls, folder: Path) -> OpenApi:
        return cls({name: orjson.loads((folder / name).read_bytes()) for name in DOC_FILES})

    # ------------------------------------------------------------ lookups
    def operation(self, method: str, template: str) -> tuple[str, dict[str, Any]]:
        try:
            return self.operations[(method, template)]
        except KeyError:
            raise KeyError(f"no operation {method} {template} in the documents") from None

    def _validator(self, doc: str, pointer: str) -> Draft202012Validator:
        uri = f"{_BASE_URI}{doc}#{pointer}"
        if uri not in self._validators:
            self._validators[uri] = Draft202012Validator(
                {"$ref": uri}, registry=self._registry, format_checker=FormatChecker()
            )
        return self._validators[uri]

    def _resolve(self, doc: str, node: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
        """Follow a `$ref` to a components entry; return the entry and its pointer."""
        pointer = None
        while "$ref" in node:
            pointer = node["$ref"].removeprefix("#")
            node = self.docs[doc]
            for part in pointer.strip("/").split("/"):
                node = node[_unescape(part)]
        return node, pointer

    # -------------------------------------------------------------- checks
    def check_request(
        self, method: str, template: str, query: dict[str, list[str]], body: Any
    ) -> list[Problem]:
        """Problems with a request's query parameters and JSON body."""
        doc, operation = self.operation(method, template)
        base = f"/paths/{_escape(template)}/{method.lower()}"
        problems: list[Problem] = []
        params = {}
        for n, raw in enumerate(operation.get("parameters", [])):
            param, pointer = self._resolve(doc, raw)
            if param.get("in") == "query":
                params[param["name"]] = (param, pointer or f"{base}/parameters/{n}")
        for name in query:
            if name not in params:
                problems.append(
                    Problem("request", method, template, None, name, "parameters", "undocumented")
                )
        for name, (param, pointer) in params.items():
            if name not in query:
                if param.get("required"):
                    problems.append(
                        Problem("request", method, template, None, name, "required", "missing")
                    )
                continue
            value = _coerce(query[name][-1], param.get("schema", {}))
            validator = self._validator(doc, f"{pointer}/schema")
            problems += _problems(validator, value, "request", method, template, None, name)
        content = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            if body is not None:
                problems.append(
                    Problem("request", method, template, None, "", "requestBody", "undocumented")
                )
        elif body is None:
            problems.append(Problem("request", method, template, None, "", "required", "no body"))
        else:
            validator = self._validator(doc, f"{base}/requestBody/content/application~1json/schema")
            problems += _problems(validator, body, "request", method, template, None)
        return [p for p in problems if not _allowed(p)]

    def check_response(self, method: str, template: str, status: int, body: Any) -> list[Problem]:
        """Problems with a response's JSON body for its status code."""
        doc, operation = self.operation(method, template)
        responses = operation.get("responses", {})
        pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{status}"
        if str(status) in responses:
            response, ref = self._resolve(doc, responses[str(status)])
            content = response.get("content", {}).get("application/json")
            if content is None or "schema" not in content:
                return []  # documented with no body shape: anything goes
            validator = self._validator(doc, f"{ref or pointer}/content/application~1json/schema")
        elif status in GENERIC_ERROR_STATUSES:
            validator = self._validator(
                "tsg_mc_contacts_v3.json", "/components/schemas/ErrorResponse"
            )
        else:
            return [
                Problem("response", method, template, status, "", "status", "undocumented status")
            ]
        kept: list[Problem] = []
        for problem in _problems(validator, body, "response", method, template, status):
            deviation = _deviation(problem)
            if deviation is None:
                kept.append(problem)
            elif deviation.items is not None:
                kept += self._check_items(problem, deviation.items, body)
        return kept

    def _check_items(self, problem: Problem, items: tuple[str, str], body: Any) -> list[Problem]:
        """An allowed array-for-object: every element must still match the object schema."""
        value = body
        for part in filter(None, problem.path.split("/")):
            value = value[int(part)] if isinstance(value, list) else value[part]
        if not isinstance(value, list):
            return [problem]
        validator = self._validator(*items)
        found: list[Problem] = []
        for n, item in enumerate(value):
            found += _problems(
                validator,
                item,
                "response",
                problem.method,
                problem.template,
                problem.status,
                f"{problem.path}/{n}",
            )
        return [p for p in found if _deviation(p) is None]


def assert_exchanges_conform(exchanges: Iterable[Any], api: OpenApi) -> int:
    """Fail with every problem found in recorded exchanges; return how many were checked.

    An exchange needs `method`, `endpoint` (path template), `query`,
    `request_json`, `status` and `response_json` (the emulator's `Exchange`).
    Dropped connections (status 0) have no response to check.
    """
    problems: list[Problem] = []
    count = 0
    for ex in exchanges:
        count += 1
        problems += api.check_request(ex.method, ex.endpoint, ex.query, ex.request_json)
        if ex.status:
            problems += api.check_response(ex.method, ex.endpoint, ex.status, ex.response_json)
    assert not problems, "exchanges differ from SendGrid's OpenAPI documents:\n" + "\n".join(
        map(str, problems)
    )
    return count


# -------------------------------------------------------------------- helpers
def _problems(
    validator: Draft202012Validator,
    instance: Any,
    side: str,
    method: str,
    template: str,
    status: int | None,
    prefix: str = "",
) -> list[Problem]:
    out = []
    for error in validator.iter_errors(instance):
        path = "/".join(str(p) for p in error.absolute_path)
        full = f"{prefix}/{path}".strip("/") if prefix else path
        out.append(
            Problem(
                side,
                method,
                template,
                status,
                full,
                str(error.validator),
                error.message,
                error.instance,
            )
        )
    return out


def _deviation(problem: Problem) -> Deviation | None:
    return next((d for d in ALLOWED_DEVIATIONS if d.covers(problem)), None)


def _allowed(problem: Problem) -> bool:
    return _deviation(problem) is not None


def _coerce(raw: str, schema: dict[str, Any]) -> Any:
    """Query values arrive as text; give them the type their schema declares."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(raw)
        if kind == "number":
            return float(raw) if "." in raw else int(raw)
    except ValueError:
        return raw
    if kind == "boolean" and raw in ("true", "false"):
        return raw == "true"
    return raw


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def _nullable_to_type(doc: dict[str, Any]) -> dict[str, Any]:
    """Read OpenAPI 3.0's `nullable: true` (still used in these 3.1 documents) as its
    3.1 equivalent, a `"null"` type, which is what the documents mean by it."""
    doc = copy.deepcopy(doc)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("nullable") is True and isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    return doc

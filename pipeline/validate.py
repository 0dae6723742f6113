"""Validation of every ingested batch with a Great Expectations 1.x suite.

GX hashes the dataframe it validates, so it cannot be handed undecodable text or dicts as they
are. Each batch is described by a frame of GX-friendly columns instead: the text with bad bytes
replaced, the type name of each field, an ``encoding`` verdict, metadata's string leaves and
depth. Each expectation carries the sentence that explains a failure to a person.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.settings import ValidationOptions
from pipeline.sources import Record

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

MAX_METADATA_DEPTH = 32
SUITE = "ragtune-documents"
DOCS_SITE = "ragtune"


@dataclass(frozen=True)
class Failure:
    """One failed expectation for one row."""

    expectation: str
    column: str
    message: str  # about this row
    summary: str  # the rule, the same for every row that fails it


@dataclass
class Verdict:
    """A batch split into the records that passed and those that failed, with why."""

    accepted: list[Record] = field(default_factory=list)
    rejected: list[tuple[Record, list[Failure]]] = field(default_factory=list)

    def reason_counts(self) -> Counter[str]:
        """How many rows failed each rule."""
        return Counter(f.summary for _, failures in self.rejected for f in failures)


@dataclass(frozen=True)
class _Rule:
    summary: str
    expectation: Any  # a gx.expectations.Expectation
    explain: Callable[[Any], str]  # row of the frame -> sentence


class Validator:
    """The document suite in an ephemeral GX context; validates batches and builds Data Docs."""

    def __init__(self, options: ValidationOptions, data_docs_dir: Path | None = None) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        # GX needs an absolute path; RAGTUNE_HOME is relative by default.
        self._data_docs_dir = data_docs_dir.resolve() if data_docs_dir is not None else None
        if self._data_docs_dir is not None:
            self._context.add_data_docs_site(
                site_name=DOCS_SITE,
                site_config={
                    "class_name": "SiteBuilder",
                    "store_backend": {
                        "class_name": "TupleFilesystemStoreBackend",
                        "base_directory": str(self._data_docs_dir),
                    },
                    "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                },
            )
        self._rules = _rules(options)
        self._suite = self._context.suites.add(gx.ExpectationSuite(name=SUITE))
        # GX returns results in its own order: match them to rules by expectation id.
        self._by_id = {str(self._suite.add_expectation(rule.expectation).id): rule for rule in self._rules}
        self._datasource = self._context.data_sources.add_pandas("ragtune")
        self._definitions: dict[str, Any] = {}
        self._validated_any = False

    def validate(self, records: list[Record], source: str) -> Verdict:
        """Run the suite on one batch of a source; every record ends up accepted or rejected."""
        frame = describe(records)
        result = self._definition(source).run(
            batch_parameters={"dataframe": frame},
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["_row"]},
        )
        self._validated_any = True
        failures: dict[int, list[Failure]] = {}
        for outcome in result.results:
            if outcome.success:
                continue
            rule = self._by_id[str(outcome.expectation_config.id)]
            column = rule.expectation.column
            kind = rule.expectation.expectation_type
            unexpected = outcome.result.get("unexpected_index_list")
            if unexpected is None:  # the expectation itself could not run: fail the batch loudly
                raise RuntimeError(f"validation rule {kind} on {column} did not run: {outcome.exception_info}")
            for hit in unexpected:
                row = int(hit["_row"])
                failures.setdefault(row, []).append(Failure(kind, column, rule.explain(frame.iloc[row]), rule.summary))
        verdict = Verdict()
        for i, record in enumerate(records):
            if i in failures:
                verdict.rejected.append((record, failures[i]))
            else:
                verdict.accepted.append(record)
        return verdict

    def build_data_docs(self) -> Path | None:
        """Write the Data Docs HTML of this run's validations; return the index page.

        The report is not the ingest: if it cannot be built, that is logged and None returned,
        because the documents it describes have already landed.
        """
        if self._data_docs_dir is None or not self._validated_any:
            return None
        try:
            self._context.build_data_docs(site_names=[DOCS_SITE])
        except Exception:
            logger.warning("could not build the GX Data Docs in %s", self._data_docs_dir, exc_info=True)
            return None
        return self._data_docs_dir / "index.html"

    def _definition(self, source: str) -> Any:
        if source not in self._definitions:
            gx = self._gx
            asset = self._datasource.add_dataframe_asset(name=source)
            batch = asset.add_batch_definition_whole_dataframe("batch")
            definition = gx.ValidationDefinition(name=f"{SUITE}:{source}", data=batch, suite=self._suite)
            self._definitions[source] = self._context.validation_definitions.add(definition)
        return self._definitions[source]


def _rules(options: ValidationOptions) -> list[_Rule]:
    import great_expectations.expectations as gxe

    lo, hi = options.min_text_chars, options.max_text_chars
    return [
        _Rule(
            "unreadable row",
            gxe.ExpectColumnValuesToBeNull(column="read_error"),
            lambda r: f"could not be read: {r.read_error}",
        ),
        _Rule("id missing", gxe.ExpectColumnValuesToNotBeNull(column="id"), lambda r: "id is missing"),
        _Rule(
            "id not a string",
            gxe.ExpectColumnValuesToBeInSet(column="id_type", value_set=["str"]),
            lambda r: f"id must be a string or an integer, not {r.id_type}",
        ),
        _Rule(  # PostgreSQL text cannot hold NUL: such an id would fail the whole ingest
            "NUL bytes in id",
            gxe.ExpectColumnValuesToNotMatchRegex(column="id", regex="\x00"),
            lambda r: "id contains NUL bytes",
        ),
        _Rule(
            "duplicate id in batch",
            gxe.ExpectColumnValuesToBeUnique(column="id"),
            lambda r: f"id {r.id!r} appears more than once in the batch",
        ),
        _Rule("text missing", gxe.ExpectColumnValuesToNotBeNull(column="text"), lambda r: "text is missing"),
        _Rule(
            "text not a string",
            gxe.ExpectColumnValuesToBeInSet(column="text_type", value_set=["str"]),
            lambda r: f"text must be a string, not {r.text_type}",
        ),
        _Rule(
            "text empty",
            gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex=r"^\s*$"),
            lambda r: "text is empty or only whitespace",
        ),
        _Rule(
            "text length out of bounds",
            gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=lo, max_value=hi),
            lambda r: f"text has {len(r.text):,} characters; the allowed range is {lo:,} to {hi:,}",
        ),
        _Rule(
            "NUL bytes in text",
            gxe.ExpectColumnValuesToNotMatchRegex(column="text", regex="\x00"),
            lambda r: "text contains NUL bytes",
        ),
        _Rule(
            "not valid UTF-8",
            gxe.ExpectColumnValuesToBeInSet(column="encoding", value_set=["utf-8"]),
            lambda r: str(r.encoding),
        ),
        _Rule(
            "title not a string",
            gxe.ExpectColumnValuesToBeInSet(column="title_type", value_set=["str"]),
            lambda r: f"title must be a string, not {r.title_type}",
        ),
        _Rule(
            "title too long",
            gxe.ExpectColumnValueLengthsToBeBetween(column="title", max_value=options.max_title_chars),
            lambda r: f"title has {len(r.title):,} characters; at most {options.max_title_chars:,} are allowed",
        ),
        _Rule(
            "NUL bytes in title",
            gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex="\x00"),
            lambda r: "title contains NUL bytes",
        ),
        _Rule(
            "metadata not an object",
            gxe.ExpectColumnValuesToBeInSet(column="metadata_type", value_set=["dict"]),
            lambda r: f"metadata must be a JSON object, not {r.metadata_type}",
        ),
        _Rule(
            "NUL bytes in metadata",
            gxe.ExpectColumnValuesToNotMatchRegex(column="metadata_text", regex="\x00"),
            lambda r: "metadata contains NUL bytes",
        ),
        _Rule(
            "metadata nested too deep",
            gxe.ExpectColumnValuesToBeBetween(column="metadata_depth", max_value=MAX_METADATA_DEPTH),
            lambda r: f"metadata is nested {r.metadata_depth} levels deep; at most {MAX_METADATA_DEPTH} are allowed",
        ),
    ]


def describe(records: list[Record]) -> pd.DataFrame:
    """The frame GX validates: one row per record, every value hashable and encodable."""
    import pandas as pd

    rows = []
    for i, record in enumerate(records):
        leaves, depth = _walk_metadata(record.metadata)
        not_utf8 = [
            name
            for name, value in (("id", record.id), ("title", record.title), ("text", record.text))
            if isinstance(value, str) and not _is_utf8(value)
        ]
        if not all(_is_utf8(leaf) for leaf in leaves):
            not_utf8.append("metadata")
        rows.append(
            {
                "_row": i,
                "id": _printable(record.id),
                "id_type": _type_name(record.id),
                "text": _printable(record.text),
                "text_type": _type_name(record.text),
                "title": _printable(record.title),
                "title_type": _type_name(record.title),
                "metadata_type": _type_name(record.metadata),
                "metadata_text": _printable("\n".join(leaves)) if leaves else None,
                "metadata_depth": depth,
                "encoding": "utf-8" if not not_utf8 else f"not valid UTF-8 (in {', '.join(not_utf8)})",
                "read_error": record.read_error,
            }
        )
    return pd.DataFrame(rows, columns=list(rows[0]) if rows else None)


def raw_row(record: Record) -> str:
    """The record as JSON, ASCII-escaped so NUL and undecodable bytes are kept exactly."""
    fields = {"id": record.id, "title": record.title, "text": record.text, "metadata": record.metadata}
    if record.raw is not None:
        fields["raw"] = record.raw
    return json.dumps(fields, ensure_ascii=True, default=repr)


def _type_name(value: object) -> str | None:
    return None if value is None else type(value).__name__


def _printable(value: object) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text.encode("utf-8", "replace").decode("utf-8")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _walk_metadata(metadata: object) -> tuple[list[str], int]:
    """Every string key and value in metadata, and its nesting depth, without recursion."""
    leaves: list[str] = []
    depth = 0
    stack: list[tuple[object, int]] = [(metadata, 0)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            depth = max(depth, level + 1)
            leaves.extend(k for k in value if isinstance(k, str))
            stack.extend((v, level + 1) for v in value.values())
        elif isinstance(value, list):
            depth = max(depth, level + 1)
            stack.extend((v, level + 1) for v in value)
        elif isinstance(value, str):
            leaves.append(value)
    return leaves, depth

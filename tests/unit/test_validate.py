"""The GX suite: every kind of bad row is held back with a reason a person can act on."""

import re
from pathlib import Path

import pytest

from pipeline.settings import ValidationOptions
from pipeline.sources import Record
from pipeline.validate import Validator, raw_row


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(ValidationOptions(max_text_chars=50, max_title_chars=10))


@pytest.mark.parametrize(
    ("record", "messages"),
    [
        (Record("a", ""), ["text is empty or only whitespace", "text has 0 characters; the allowed range is 1 to 50"]),
        (Record("a", " \n\t "), ["text is empty or only whitespace"]),
        (Record("a", None), ["text is missing"]),
        (Record("a", 42), ["text must be a string, not int"]),
        (Record("a", "x" * 51), ["text has 51 characters; the allowed range is 1 to 50"]),
        (Record("a", "nul\x00byte"), ["text contains NUL bytes"]),
        (Record("a", b"caf\xe9".decode("utf-8", "surrogateescape")), ["not valid UTF-8 (in text)"]),
        (Record(None, "orphan"), ["id is missing"]),
        (Record(1.5, "float id"), ["id must be a string or an integer, not float"]),
        (Record("a", "ok", title=7), ["title must be a string, not int"]),
        (Record("a", "ok", title="a long title"), ["title has 12 characters; at most 10 are allowed"]),
        (Record("a", "ok", title="t\x00"), ["title contains NUL bytes"]),
        (Record("a", "ok", metadata=["x"]), ["metadata must be a JSON object, not list"]),
        (Record("a", "ok", metadata={"k": {"deep": "v\x00"}}), ["metadata contains NUL bytes"]),
        (
            Record("a", None, read_error="line 3 is not valid JSON"),
            ["could not be read: line 3 is not valid JSON", "text is missing"],
        ),
    ],
)
def test_each_bad_row_is_rejected_with_its_reasons(validator: Validator, record: Record, messages: list[str]):
    good = Record("good", "a fine document", title="Fine", metadata={"lang": "en"})
    verdict = validator.validate([good, record], "docs")
    assert verdict.accepted == [good]
    ((rejected, failures),) = verdict.rejected
    assert rejected is record
    assert sorted(f.message for f in failures) == sorted(messages)


def test_duplicate_ids_in_a_batch_are_all_held_back(validator: Validator):
    verdict = validator.validate([Record("a", "one"), Record("b", "two"), Record("a", "three")], "docs")
    assert [r.text for r in verdict.accepted] == ["two"]
    assert [f.message for _, fs in verdict.rejected for f in fs] == ["id 'a' appears more than once in the batch"] * 2


def test_deeply_nested_metadata_is_held_back(validator: Validator):
    metadata: dict = {}
    node = metadata
    for _ in range(40):
        node["child"] = {}
        node = node["child"]
    verdict = validator.validate([Record("a", "ok", metadata=metadata)], "docs")
    assert [f.summary for _, fs in verdict.rejected for f in fs] == ["metadata nested too deep"]


def test_reason_counts_summarise_a_batch(validator: Validator):
    verdict = validator.validate([Record("a", ""), Record("b", None), Record("c", "ok"), Record("d", None)], "docs")
    assert verdict.reason_counts() == {"text missing": 2, "text empty": 1, "text length out of bounds": 1}


def test_raw_row_keeps_nul_and_undecodable_bytes_exactly():
    record = Record("a", "x\x00" + b"\xff".decode("utf-8", "surrogateescape"), raw="{broken")
    assert raw_row(record).isascii()
    assert (
        raw_row(record) == '{"id": "a", "title": null, "text": "x\\u0000\\udcff", "metadata": null, "raw": "{broken"}'
    )


def test_data_docs_are_written_where_asked(tmp_path: Path):
    validator = Validator(ValidationOptions(), data_docs_dir=tmp_path / "docs")
    assert validator.build_data_docs() is None  # nothing validated yet, nothing to show
    validator.validate([Record("a", ""), Record("b", "fine")], "handbook")
    index = validator.build_data_docs()
    assert index == tmp_path / "docs" / "index.html" and index.exists()
    (page,) = (tmp_path / "docs" / "validations").rglob("*.html")
    assert page.name == "ragtune-handbook.html"  # one page per source
    shown = " ".join(re.sub(r"<[^>]+>", " ", page.read_text()).split())
    assert "must not match this regular expression: ^\\s*$ . 1 unexpected values found. 50% of 2 total rows" in shown


def test_a_data_docs_failure_is_logged_not_raised(tmp_path: Path, caplog):
    blocker = tmp_path / "docs"
    blocker.write_text("a file where the Data Docs folder should be")
    validator = Validator(ValidationOptions(), data_docs_dir=blocker)
    validator.validate([Record("a", "fine")], "handbook")
    assert validator.build_data_docs() is None
    assert f"could not build the GX Data Docs in {blocker}" in caplog.text

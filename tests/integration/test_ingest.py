"""Ingest against real PostgreSQL: upserts by id and hash, snapshots, quarantine, refusal."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from infra import database
from pipeline import runs, store
from pipeline.errors import BatchRefused, SourceError
from pipeline.ingest import IngestOptions, IngestReport, ingest
from pipeline.settings import Settings, ValidationOptions
from pipeline.sources import open_sources
from pipeline.validate import Validator

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator(ValidationOptions())


def run_ingest(
    settings: Settings, validator: Validator, *paths: Path, snapshot: bool = False, batch_size: int = 500
) -> IngestReport:
    pool = database.connect(settings)
    found = open_sources(list(paths))
    options = replace(IngestOptions.from_settings(settings, snapshot=snapshot), batch_size=batch_size)
    with runs.recorded(pool, "ingest", {}) as run:
        report = ingest(pool, found, validator, options, run.run_id)
        run.stats = report.as_dict()  # as the flow records it
    return report


def counts(report: IngestReport) -> dict[str, int]:
    keys = ("inserted", "updated", "unchanged", "deleted", "quarantined")
    return {key: getattr(report, key) for key in keys}


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "handbook"
    (root / "guide").mkdir(parents=True)
    (root / "guide" / "install.md").write_text("# Install\n\nRun the installer.\n")
    (root / "guide" / "usage.md").write_text("# Usage\n\nCall the tool.\n")
    (root / "faq.txt").write_text("Questions and answers.\n")
    return root


def test_first_ingest_inserts_every_document(settings, validator, docs):
    report = run_ingest(settings, validator, docs)
    assert counts(report) == {"inserted": 3, "updated": 0, "unchanged": 0, "deleted": 0, "quarantined": 0}
    doc = store.get_document(database.connect(settings), "handbook", "guide/install.md")
    assert (doc["title"], doc["text"], doc["version"], doc["deleted_at"]) == (
        "Install",
        "# Install\n\nRun the installer.\n",
        1,
        None,
    )


def test_reingesting_the_same_source_changes_nothing(settings, validator, docs):
    run_ingest(settings, validator, docs)
    pool = database.connect(settings)
    before = store.get_document(pool, "handbook", "faq.txt")
    report = run_ingest(settings, validator, docs, snapshot=True)
    after = store.get_document(pool, "handbook", "faq.txt")
    assert counts(report) == {"inserted": 0, "updated": 0, "unchanged": 3, "deleted": 0, "quarantined": 0}
    assert after == before  # not rewritten: same version, same updated_at


def test_a_modified_file_is_updated_with_a_bumped_version(settings, validator, docs):
    run_ingest(settings, validator, docs)
    (docs / "guide" / "usage.md").write_text("# Usage\n\nCall the tool with --help first.\n")
    report = run_ingest(settings, validator, docs)
    assert counts(report) == {"inserted": 0, "updated": 1, "unchanged": 2, "deleted": 0, "quarantined": 0}
    doc = store.get_document(database.connect(settings), "handbook", "guide/usage.md")
    assert doc["version"] == 2
    assert "--help first" in doc["text"]


def test_a_removed_file_is_tombstoned_under_snapshot_and_kept(settings, validator, docs):
    run_ingest(settings, validator, docs)
    (docs / "faq.txt").unlink()

    without_snapshot = run_ingest(settings, validator, docs)
    assert without_snapshot.deleted == 0

    report = run_ingest(settings, validator, docs, snapshot=True)
    assert counts(report) == {"inserted": 0, "updated": 0, "unchanged": 2, "deleted": 1, "quarantined": 0}
    doc = store.get_document(database.connect(settings), "handbook", "faq.txt")
    assert doc is not None and doc["deleted_at"] is not None
    assert doc["text"] == "Questions and answers.\n"
    status = store.status(database.connect(settings))
    assert (status["documents"], status["tombstoned"]) == (2, 1)


def test_a_tombstoned_document_that_returns_is_live_again_as_a_new_version(settings, validator, docs):
    run_ingest(settings, validator, docs)
    (docs / "faq.txt").rename(docs.parent / "faq.txt.bak")
    run_ingest(settings, validator, docs, snapshot=True)
    (docs.parent / "faq.txt.bak").rename(docs / "faq.txt")
    report = run_ingest(settings, validator, docs, snapshot=True)
    assert (report.updated, report.deleted) == (1, 0)
    doc = store.get_document(database.connect(settings), "handbook", "faq.txt")
    assert (doc["deleted_at"], doc["version"]) == (None, 2)


def test_each_bad_input_kind_is_quarantined_with_its_reason_and_good_rows_go_on(settings, validator, tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    for i in range(12):
        (root / f"good{i:02}.md").write_text(f"# Page {i}\n\nUseful content number {i}.\n")
    (root / "empty.md").write_bytes(b"")
    (root / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (root / "latin1.md").write_bytes("caf\u00e9 cr\u00e8me".encode("latin-1"))
    (root / "nul.txt").write_bytes(b"before\x00after")
    (root / "huge.txt").write_text("x" * 2_000_000)

    report = run_ingest(settings, validator, root)

    assert counts(report) == {"inserted": 12, "updated": 0, "unchanged": 0, "deleted": 0, "quarantined": 5}
    assert report.inserted + report.updated + report.unchanged + report.quarantined == report.rows_read == 17
    held = {
        row["id"]: [r["message"] for r in row["reasons"]] for row in store.list_quarantine(database.connect(settings))
    }
    assert held == {
        "empty.md": ["text is empty or only whitespace", "text has 0 characters; the allowed range is 1 to 1,000,000"],
        "binary.txt": ["text contains NUL bytes", "not valid UTF-8 (in text)"],
        "latin1.md": ["not valid UTF-8 (in text)"],
        "nul.txt": ["text contains NUL bytes"],
        "huge.txt": ["text has 2,000,000 characters; the allowed range is 1 to 1,000,000"],
    }


def test_quarantine_keeps_the_raw_row_and_the_run(settings, validator, tmp_path):
    path = tmp_path / "feed.jsonl"
    good = [json.dumps({"id": f"g{i}", "text": f"good row {i}"}) for i in range(5)]
    path.write_text("\n".join([*good, '{"id": "x", "text": "unterminated', '{"id": "n", "text": "a\\u0000b"}']) + "\n")

    report = run_ingest(settings, validator, path)

    assert (report.inserted, report.quarantined) == (5, 2)
    rows = store.list_quarantine(database.connect(settings), run_id=report.run_id)
    by_origin = {row["origin"].rsplit(":", 1)[1]: row for row in rows}
    assert by_origin["6"]["reasons"][0]["message"].startswith("could not be read: line 6 is not valid JSON")
    assert by_origin["7"]["id"] == "n" and by_origin["7"]["reasons"][0]["message"] == "text contains NUL bytes"
    with database.connect(settings).connection() as conn:
        raws = dict(conn.execute("SELECT doc_id, raw FROM quarantine WHERE run_id = %s", (report.run_id,)).fetchall())
    assert json.loads(raws["n"])["text"] == "a\x00b"  # exactly what the source said
    assert json.loads(raws[None])["raw"] == '{"id": "x", "text": "unterminated'


def test_duplicate_ids_within_a_batch_and_across_batches_are_held_back(settings, validator, tmp_path):
    path = tmp_path / "dupes.jsonl"
    rows = [
        {"id": "a", "text": "first a"},
        {"id": "b", "text": "b"},
        {"id": "a", "text": "second a"},
        {"id": "c", "text": "c"},
        {"id": "d", "text": "d"},
        {"id": "c", "text": "c again, next batch"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    report = run_ingest(settings, validator, path, batch_size=5)

    assert (report.inserted, report.quarantined) == (3, 3)
    held = sorted(
        (row["id"], row["reasons"][0]["message"]) for row in store.list_quarantine(database.connect(settings))
    )
    assert held == [("a", "id 'a' appears more than once in the batch")] * 2 + [
        ("c", "id already appeared earlier in this ingest")
    ]


def test_a_mostly_bad_source_is_refused_whole_and_nothing_is_written(settings, validator, tmp_path):
    path = tmp_path / "broken.jsonl"
    lines = [json.dumps({"id": "ok1", "text": "fine"}), json.dumps({"id": "ok2", "text": "fine too"})]
    lines += [json.dumps({"id": f"e{i}", "text": ""}) for i in range(3)]
    path.write_text("\n".join(lines) + "\n")

    with pytest.raises(BatchRefused) as refused:
        run_ingest(settings, validator, path)

    assert str(refused.value).startswith(f"{path}: 3 of 5 rows failed validation (60%, over the 50% allowed)")
    assert "text empty (3)" in str(refused.value)
    status = store.status(database.connect(settings))
    assert (status["documents"], status["quarantined"]) == (0, 0)
    assert status["last_runs"][0]["status"] == "refused"
    assert status["last_runs"][0]["error"].startswith("BatchRefused:")


def test_a_source_that_cannot_be_read_stops_the_ingest_before_anything_is_written(settings, validator, docs, tmp_path):
    (tmp_path / "people.csv").write_text("id,name\n1,Ada\n")
    with pytest.raises(SourceError, match="no 'text' column"):
        run_ingest(settings, validator, docs, tmp_path / "people.csv")
    assert store.status(database.connect(settings))["documents"] == 0


def test_csv_parquet_and_hf_dataset_sources_ingest_alike(settings, validator, tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.csv").write_text('id,text,metadata\n1,one,"{""lang"": ""en""}"\n2,two,\n')
    pq.write_table(pa.table({"id": ["1", "2"], "text": ["uno", "dos"]}), tmp_path / "b.parquet")
    datasets.Dataset.from_dict({"id": ["1"], "text": ["eins"]}).save_to_disk(str(tmp_path / "c"))

    report = run_ingest(settings, validator, tmp_path / "a.csv", tmp_path / "b.parquet", tmp_path / "c")

    assert (report.inserted, report.sources) == (5, ["a", "b", "c"])
    pool = database.connect(settings)
    assert store.get_document(pool, "a", "1")["metadata"] == {"lang": "en"}
    assert store.get_document(pool, "c", "1")["text"] == "eins"


def test_a_fixed_row_leaves_the_current_quarantine_and_stays_in_its_history(settings, validator, docs):
    (docs / "draft.md").write_text("   ")
    run_ingest(settings, validator, docs)
    run_ingest(settings, validator, docs)  # still bad the next night: held back once, not twice
    pool = database.connect(settings)
    assert store.status(pool)["quarantined"] == 1
    assert [row["id"] for row in store.list_quarantine(pool)] == ["draft.md"]

    (docs / "draft.md").write_text("# Draft\n\nNow written.\n")
    report = run_ingest(settings, validator, docs)

    assert (report.inserted, report.quarantined) == (1, 0)
    assert store.status(pool)["quarantined"] == 0
    assert store.list_quarantine(pool) == []
    assert [row["id"] for row in store.list_quarantine(pool, everything=True)] == ["draft.md", "draft.md"]


def test_a_refusal_names_the_problems_of_the_refused_source_only(settings, validator, tmp_path):
    noisy = tmp_path / "noisy.jsonl"  # one bad row of three: accepted, with its row quarantined
    noisy.write_text('{"id": "1", "text": "a"}\n{"id": "2", "text": "b"}\n{"id": "3", "title": 5, "text": "c"}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "1"}\n{"id": "2"}\n')
    with pytest.raises(BatchRefused) as refused:
        run_ingest(settings, validator, noisy, broken)
    assert str(refused.value).startswith(f"{broken}: 2 of 2 rows failed")
    assert "text missing (2)" in str(refused.value)
    assert "title not a string" not in str(refused.value)

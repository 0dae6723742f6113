"""The ingest flow on a real Prefect API: its result, its markdown artifact, its run record."""

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from flows.ingest import ingest_flow
from infra import database
from pipeline import store
from pipeline.errors import BatchRefused

pytestmark = pytest.mark.integration


def latest_report_markdown() -> str:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-report"])),
            limit=1,
            sort="CREATED_DESC",
        )
        return artifact.data


def test_ingest_flow_returns_counts_publishes_them_and_builds_data_docs(prefect_api, settings, tmp_path):
    root = tmp_path / "kb"
    root.mkdir()
    (root / "a.md").write_text("# Alpha\n\nFirst.\n")
    (root / "b.md").write_text("# Beta\n\nSecond.\n")
    (root / "c.md").write_text("   \n")

    result = ingest_flow(paths=[str(root)], settings=settings)

    assert {k: result[k] for k in ("inserted", "updated", "unchanged", "deleted", "quarantined")} == {
        "inserted": 2,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
        "quarantined": 1,
    }
    assert result["data_docs"] == str(settings.data_docs_dir / "index.html")
    assert (settings.data_docs_dir / "index.html").exists()
    markdown = latest_report_markdown()
    assert "# Ingest of kb" in markdown
    assert "| inserted | 2 |" in markdown and "| quarantined | 1 |" in markdown
    assert "| text empty | 1 |" in markdown
    (run,) = store.status(database.connect(settings))["last_runs"]
    assert (run["run_id"], run["status"], run["stats"]["inserted"]) == (result["run_id"], "succeeded", 2)


def test_a_refused_ingest_fails_the_flow_run_and_is_recorded(prefect_api, settings, tmp_path):
    path = tmp_path / "junk.jsonl"
    path.write_text('{"id": "1", "text": ""}\n{"id": "2"}\n')

    with pytest.raises(BatchRefused):
        ingest_flow(paths=[str(path)], settings=settings)

    (run,) = store.status(database.connect(settings))["last_runs"]
    assert run["status"] == "refused"
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs(limit=1, sort="START_TIME_DESC")
    assert flow_runs[0].state.is_failed()
    assert flow_runs[0].parameters["paths"] == [str(path)]
    assert flow_runs[0].parameters["settings"]["database_url"] == "**********"  # the UI never shows it

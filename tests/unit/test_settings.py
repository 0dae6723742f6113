"""Settings: environment over ragtune.toml over defaults, frozen once built."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.settings import Settings


def test_defaults_keep_everything_under_dot_ragtune(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.home == Path(".ragtune")
    assert settings.pgdata == Path(".ragtune/pgdata")
    assert settings.database_url is None
    assert settings.validation.max_failed_share == 0.5


def test_environment_wins_over_toml_which_wins_over_defaults(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragtune.toml").write_text(
        'home = "/srv/ragtune"\nbatch_size = 64\n[validation]\nmax_text_chars = 900\n'
    )
    monkeypatch.setenv("RAGTUNE_BATCH_SIZE", "128")
    monkeypatch.setenv("RAGTUNE_VALIDATION__MAX_FAILED_SHARE", "0.2")
    settings = Settings()
    assert settings.home == Path("/srv/ragtune")  # toml
    assert settings.batch_size == 128  # environment over toml
    assert settings.validation.max_text_chars == 900  # toml, nested
    assert settings.validation.max_failed_share == 0.2  # environment, nested


def test_settings_are_frozen_and_hide_the_database_password(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_DATABASE_URL", "postgresql://app:hunter2@db.internal/rag")
    settings = Settings()
    assert "hunter2" not in repr(settings)
    assert settings.database_url.get_secret_value().endswith("@db.internal/rag")
    with pytest.raises(ValidationError):
        settings.batch_size = 1


@pytest.mark.parametrize(
    ("name", "value"), [("RAGTUNE_BATCH_SIZE", "0"), ("RAGTUNE_VALIDATION__MAX_FAILED_SHARE", "1.5")]
)
def test_out_of_range_values_are_rejected(monkeypatch, tmp_path: Path, name: str, value: str):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_a_misspelt_key_in_ragtune_toml_is_rejected(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ragtune.toml").write_text("batch_sise = 10\n")
    with pytest.raises(ValidationError, match="batch_sise"):
        Settings()


def test_nightly_and_drift_settings_come_from_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_NIGHTLY__SOURCES", '["/data/docs", "/data/faq.jsonl"]')
    monkeypatch.setenv("RAGTUNE_NIGHTLY__TIMEZONE", "Europe/Berlin")
    monkeypatch.setenv("RAGTUNE_DRIFT__THRESHOLD", "0.8")
    settings = Settings()
    assert settings.nightly.sources == [Path("/data/docs"), Path("/data/faq.jsonl")]
    assert (settings.nightly.cron, settings.nightly.timezone) == ("0 2 * * *", "Europe/Berlin")
    assert settings.drift.threshold == 0.8 and settings.drift.alpha == 0.01


def test_an_unknown_time_zone_is_refused_with_an_example(monkeypatch, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAGTUNE_NIGHTLY__TIMEZONE", "Mars/Olympus")
    with pytest.raises(ValidationError, match="not an IANA time zone"):
        Settings()

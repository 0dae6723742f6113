"""ragtune's configuration: RAGTUNE_* environment variables, then ragtune.toml, then defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from pipeline.chunk import ChunkOptions
from pipeline.drift import DriftOptions
from pipeline.gate import GateOptions
from pipeline.pairs import PairOptions
from pipeline.train import FinetuneOptions


class ValidationOptions(BaseModel):
    """Bounds of the Great Expectations suite that every ingested batch must meet."""

    model_config = ConfigDict(frozen=True)

    min_text_chars: int = Field(1, ge=1)
    max_text_chars: int = Field(1_000_000, ge=1)
    max_title_chars: int = Field(1_000, ge=1)
    # A source in which more than this share of rows fails is refused whole.
    max_failed_share: float = Field(0.5, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds_ordered(self) -> ValidationOptions:
        if self.min_text_chars > self.max_text_chars:
            raise ValueError("validation.min_text_chars must not exceed validation.max_text_chars")
        return self


class NightlyOptions(BaseModel):
    """What the nightly flow ingests, when it runs, and how it meets a busy or flaky database."""

    model_config = ConfigDict(frozen=True)

    # Paths ingested when `ragtune nightly` gets none; each one is its source's whole snapshot, so
    # files gone from it are tombstoned.
    sources: list[Path] = []
    snapshot: bool = True
    cron: str = "0 2 * * *"
    timezone: str = "UTC"  # IANA name, e.g. Europe/Berlin; also read by deployments/prefect.yaml
    # A second nightly run finds the first one's lock: wait this long for it, then give up (exit 0).
    wait_seconds: float = Field(0.0, ge=0.0)
    # Stages retried after a transient database error (a dropped connection, a restarting server).
    retries: int = Field(2, ge=0)
    retry_delay_seconds: float = Field(10.0, ge=0.0)

    @model_validator(mode="after")
    def _known_timezone(self) -> NightlyOptions:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            zone = self.timezone
            raise ValueError(f"nightly.timezone {zone!r} is not an IANA time zone (e.g. Europe/Berlin)") from exc
        return self


class Settings(BaseSettings):
    """Every knob ragtune has, built once at the edge and passed down."""

    model_config = SettingsConfigDict(
        env_prefix="RAGTUNE_",
        env_nested_delimiter="__",
        toml_file="ragtune.toml",
        frozen=True,
        extra="forbid",
        populate_by_name=True,
    )

    home: Path = Path(".ragtune")
    database_url: SecretStr | None = None
    # Rows read, validated and written together: a batch ends at batch_size rows or batch_bytes
    # of text, whichever comes first. GX costs ~0.1 s per batch whatever its size, so big batches pay.
    batch_size: int = Field(5000, ge=1)
    batch_bytes: int = Field(16_000_000, ge=1)
    # Directory sources: files larger than this are quarantined unread.
    max_file_bytes: int = Field(8_000_000, ge=1)
    validation: ValidationOptions = ValidationOptions()
    chunk: ChunkOptions = ChunkOptions()
    # The model registered as version 1 on first use; default: the packaged all-MiniLM-L6-v2.
    base_model: Path | None = None
    # MLflow tracking and registry; default: a SQLite store under home.
    mlflow_tracking_uri: str | None = Field(
        None,
        validation_alias=AliasChoices("mlflow_tracking_uri", "RAGTUNE_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
    )
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    nightly: NightlyOptions = NightlyOptions()
    # When new chunks count as drift (domain-classifier AUC, p-value, sample size, cool-down).
    drift: DriftOptions = DriftOptions()
    # Fine-tuning: LoRA and optimiser hyperparameters, how training pairs are mined and split,
    # and when a challenger may become champion.
    finetune: FinetuneOptions = FinetuneOptions()
    pairs: PairOptions = PairOptions()
    gate: GateOptions = GateOptions()
    # The user's own query file ({"query", "relevant": [doc_id, ...]} per line): the gate never
    # promotes a model that loses on it.
    eval_queries: Path | None = None
    # Retired indexes kept beside the active one, so a rollback needs no embedding.
    index_retention: int = Field(1, ge=0)
    # Scale-out: refresh shards embedding across this many Dask workers (a local cluster), or across
    # the workers of an existing Dask scheduler at dask_address (tcp://host:8786). 1: embed in-process.
    refresh_workers: int = Field(1, ge=1)
    dask_address: str | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL server."""
        return self.home / "pgdata"

    @property
    def tracking_uri(self) -> str:
        """Where MLflow runs and the model registry live."""
        return self.mlflow_tracking_uri or f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def mlflow_artifacts(self) -> Path:
        """Artifact root of ragtune's MLflow experiments (models, plots, reports)."""
        return self.home / "mlartifacts"

    @property
    def model_cache(self) -> Path:
        """Local copies of registered model versions, fetched through the registry."""
        return self.home / "models"

    @property
    def data_docs_dir(self) -> Path:
        """Where Great Expectations writes its Data Docs HTML."""
        return self.home / "data_docs"

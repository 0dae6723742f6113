-- The foundation: documents and their chunks, validation quarantine, run bookkeeping,
-- and the tables the later stages fill (an index per model version, alias history, drift).
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE IF NOT EXISTS runs (
    run_id      uuid PRIMARY KEY,
    kind        text NOT NULL,
    status      text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'refused')),
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    params      jsonb NOT NULL DEFAULT '{}',
    stats       jsonb NOT NULL DEFAULT '{}',
    error       text
);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at DESC);

-- One row per document; a change bumps version, a deletion only sets deleted_at.
CREATE TABLE IF NOT EXISTS documents (
    source       text NOT NULL,
    doc_id       text NOT NULL,
    title        text,
    text         text NOT NULL,
    metadata     jsonb NOT NULL DEFAULT '{}',
    content_hash text NOT NULL,
    version      integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    run_id       uuid REFERENCES runs,
    PRIMARY KEY (source, doc_id)
);
CREATE INDEX IF NOT EXISTS documents_live ON documents (source) WHERE deleted_at IS NULL;

CREATE TABLE IF NOT EXISTS chunks (
    chunk_id     text PRIMARY KEY,
    source       text NOT NULL,
    doc_id       text NOT NULL,
    doc_version  integer NOT NULL,
    ordinal      integer NOT NULL,
    heading      text,
    text         text NOT NULL,
    content_hash text NOT NULL,
    n_tokens     integer,
    created_at   timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (source, doc_id) REFERENCES documents ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS chunks_by_document ON chunks (source, doc_id);
CREATE INDEX IF NOT EXISTS chunks_by_content ON chunks (content_hash);

-- Rows that failed validation: the raw row (JSON, ASCII-escaped so NUL bytes and
-- undecodable bytes survive) and every failed expectation.
CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id bigserial PRIMARY KEY,
    run_id        uuid NOT NULL REFERENCES runs,
    source        text NOT NULL,
    doc_id        text,
    origin        text NOT NULL,
    reasons       jsonb NOT NULL,
    raw           text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS quarantine_by_run ON quarantine (run_id);

-- One vector table per registered model version; search reads the active one.
CREATE TABLE IF NOT EXISTS model_indexes (
    model_version text PRIMARY KEY,
    table_name    text NOT NULL UNIQUE,
    dimension     integer NOT NULL CHECK (dimension > 0),
    status        text NOT NULL DEFAULT 'building' CHECK (status IN ('building', 'ready', 'retired')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    ready_at      timestamptz
);

CREATE TABLE IF NOT EXISTS active_index (
    singleton     boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    model_version text NOT NULL REFERENCES model_indexes,
    switched_at   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alias_history (
    change_id        bigserial PRIMARY KEY,
    alias            text NOT NULL,
    version          text NOT NULL,
    previous_version text,
    reason           text NOT NULL,
    run_id           uuid REFERENCES runs,
    changed_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS drift_reports (
    report_id     bigserial PRIMARY KEY,
    run_id        uuid REFERENCES runs,
    model_version text NOT NULL,
    method        text NOT NULL,
    score         double precision NOT NULL,
    threshold     double precision NOT NULL,
    p_value       double precision,
    n_reference   integer NOT NULL,
    n_current     integer NOT NULL,
    drifted       boolean NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);

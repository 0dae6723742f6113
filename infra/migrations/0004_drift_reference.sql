-- Drift: what each model version knew when it became champion. Every chunk text that existed
-- then is listed (so "added or changed since" is exact); a seeded sample of them keeps its vector
-- as the reference the domain classifier compares new chunks against.
CREATE TABLE IF NOT EXISTS drift_references (
    model_version text PRIMARY KEY,
    taken_at      timestamptz NOT NULL DEFAULT now(),
    n_known       integer NOT NULL,
    n_sampled     integer NOT NULL,
    run_id        uuid REFERENCES runs
);

CREATE TABLE IF NOT EXISTS drift_reference_chunks (
    model_version text NOT NULL REFERENCES drift_references ON DELETE CASCADE,
    content_hash  text NOT NULL,
    source        text NOT NULL,
    doc_id        text NOT NULL,
    embedding     vector,  -- NULL: known then, not in the sample
    PRIMARY KEY (model_version, content_hash)
);

-- A report that could not score (too few new chunks) still records its decision and why.
ALTER TABLE drift_reports ALTER COLUMN score DROP NOT NULL;

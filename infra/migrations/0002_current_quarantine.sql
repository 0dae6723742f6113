-- What validation holds back now: the rows quarantined by each source's latest successful
-- ingest. Older quarantine rows stay as history; a fixed and re-ingested row drops out of this view.
CREATE OR REPLACE VIEW current_quarantine AS
WITH latest AS (
    SELECT DISTINCT ON (s.source) s.source, r.run_id
    FROM runs r CROSS JOIN LATERAL jsonb_array_elements_text(r.stats -> 'sources') AS s(source)
    WHERE r.kind = 'ingest' AND r.status = 'succeeded'
    ORDER BY s.source, r.started_at DESC
)
SELECT q.* FROM quarantine q JOIN latest l ON l.source = q.source AND l.run_id = q.run_id;

CREATE INDEX IF NOT EXISTS runs_by_kind ON runs (kind, status, started_at DESC);

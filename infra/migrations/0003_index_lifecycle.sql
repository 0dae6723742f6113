-- Promotion and rollback: an index that stops serving is retired, not dropped, so a rollback can
-- switch back to it without embedding anything; retention keeps the newest retired ones.
ALTER TABLE model_indexes ADD COLUMN IF NOT EXISTS retired_at timestamptz;

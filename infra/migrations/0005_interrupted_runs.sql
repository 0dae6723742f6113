-- A run whose process died (kill -9, power loss) cannot record its own end. The next run that takes
-- the same lock knows it is dead and marks it 'interrupted', so a run never stays 'running' for ever.
ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_status_check;
ALTER TABLE runs ADD CONSTRAINT runs_status_check
    CHECK (status IN ('running', 'succeeded', 'failed', 'refused', 'interrupted'));

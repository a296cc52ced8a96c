-- A periodic sweep request from the database itself, as the seed's scheduling option did.
-- The reactor sweeps on its own timer (SWEEP_INTERVAL_SEC) anyway; this job adds a
-- wake-up from the database side, e.g. while you tune that interval up.
--
-- Supabase: Database -> Extensions -> enable pg_cron (it lives in the `cron` schema),
-- then run this file in the SQL editor. Elsewhere: shared_preload_libraries = 'pg_cron'
-- and CREATE EXTENSION pg_cron in the database named by cron.database_name.

CREATE EXTENSION IF NOT EXISTS pg_cron;

-- Idempotent: re-running the file replaces the job of the same name.
SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = 'gpu-reactor-sweep';

SELECT cron.schedule(
    'gpu-reactor-sweep',
    '* * * * *',  -- every minute (pg_cron >= 1.5 also takes '30 seconds')
    $$NOTIFY gpu_reactor, '{"event":"sweep"}'$$
);

-- Check it:   SELECT jobid, jobname, schedule, command, active FROM cron.job;
-- Its runs:   SELECT status, return_message, start_time FROM cron.job_run_details
--                 ORDER BY start_time DESC LIMIT 5;
-- Remove it:  SELECT cron.unschedule('gpu-reactor-sweep');

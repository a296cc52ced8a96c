-- Supabase's default privileges on the public schema: anon, authenticated and
-- service_role may use every table, sequence and function there (row level security
-- then decides which rows), including objects created later by the same owner.
-- Not from a Reigh migration: Supabase sets this up for every project.
-- The heartbeat with status is revoked from anon and authenticated by
-- 20260121200000_restrict_system_logs_to_service_role.sql.

GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO anon, authenticated, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT EXECUTE ON FUNCTIONS TO anon, authenticated, service_role;

REVOKE EXECUTE ON FUNCTION func_worker_heartbeat_with_logs(text, int, int, jsonb, uuid, text)
    FROM authenticated, anon;

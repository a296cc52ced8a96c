-- What Supabase provides around the app's schema, stubbed for a plain PostgreSQL.
--
-- Not from a Reigh migration: Supabase ships these. PostgREST (and so every edge
-- function's supabase-js call and every RPC a worker makes) runs a request as
--     SET LOCAL ROLE <role from the JWT>;
--     SELECT set_config('request.jwt.claims', '<the JWT claims as json>', true);
-- and auth.role() / auth.uid() read those settings back. Older PostgREST versions set
-- one setting per claim (request.jwt.claim.role, request.jwt.claim.sub); Supabase's
-- functions read either, and so do these.
-- service_role has BYPASSRLS in Supabase; anon and authenticated do not. Roles are
-- cluster-wide, so they are created only when missing.

CREATE SCHEMA IF NOT EXISTS auth;

CREATE OR REPLACE FUNCTION auth.role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.role', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role'
    )::text
$$;

CREATE OR REPLACE FUNCTION auth.uid() RETURNS uuid
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        nullif(current_setting('request.jwt.claim.sub', true), ''),
        nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub'
    )::uuid
$$;

DO $$
BEGIN
    BEGIN
        CREATE ROLE anon NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object THEN NULL;
    END;
    BEGIN
        CREATE ROLE authenticated NOLOGIN NOINHERIT;
    EXCEPTION WHEN duplicate_object THEN NULL;
    END;
    BEGIN
        CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
    EXCEPTION WHEN duplicate_object THEN NULL;
    END;
END
$$;

GRANT USAGE ON SCHEMA auth TO anon, authenticated, service_role;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA auth TO anon, authenticated, service_role;

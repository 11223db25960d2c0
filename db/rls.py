"""Row-level security: the roles, policies and narrow cross-tenant functions, as SQL.

Kept as SQL text so that migrations can run it verbatim and tests can check the catalog against it.

- The application role owns no table, so policies always apply to it (superusers and table owners
  would slip past them).
- A unit of work runs `set_config('app.organization_id', ..., true)`, i.e. SET LOCAL: it ends with
  the transaction and cannot leak to the next user of a pooled connection. Unset means "no rows".
- A system unit of work (maintenance, dead letters, outbox sweeps) sets `app.system` instead.
- Routing a webhook to its tenant is the one cross-tenant read, done by SECURITY DEFINER functions
  that return just the routing facts.
"""

from __future__ import annotations

ORG_SETTING = "app.organization_id"
SYSTEM_SETTING = "app.system"

HELPER_FUNCTIONS = """
CREATE OR REPLACE FUNCTION app_current_org() RETURNS uuid
    LANGUAGE sql STABLE
    AS $$ SELECT NULLIF(current_setting('app.organization_id', true), '')::uuid $$;

CREATE OR REPLACE FUNCTION app_is_system() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.system', true), '') = 'on' $$;

CREATE OR REPLACE FUNCTION app_resolve_phone_number(p_phone_number_id text)
    RETURNS TABLE (organization_id uuid, whatsapp_number_id uuid, access_token text, mps integer)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        SELECT n.organization_id, n.id, n.access_token, n.mps
        FROM whatsapp_numbers n WHERE n.phone_number_id = p_phone_number_id
    $$;

CREATE OR REPLACE FUNCTION app_resolve_api_key(p_key_hash text)
    RETURNS TABLE (id uuid, organization_id uuid, scopes jsonb, expires_at timestamptz,
                   revoked_at timestamptz)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public
    SET app.system = 'on'
    AS $$
        SELECT k.id, k.organization_id, k.scopes, k.expires_at, k.revoked_at
        FROM api_keys k WHERE k.key_hash = p_key_hash
    $$;
"""

DROP_HELPER_FUNCTIONS = """
DROP FUNCTION IF EXISTS app_resolve_api_key(text);
DROP FUNCTION IF EXISTS app_resolve_phone_number(text);
DROP FUNCTION IF EXISTS app_is_system();
DROP FUNCTION IF EXISTS app_current_org();
"""


def create_app_role(role: str) -> str:
    # NOLOGIN when we create it: the runtime reaches it by SET ROLE from DATABASE_URL's user.
    # Operators who want the app to log in as it directly can ALTER ROLE ... LOGIN PASSWORD.
    return f"""
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE "{role}" NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
END $$;
DO $$ BEGIN
    IF current_user <> '{role}' AND NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', '{role}', current_user);
    END IF;
END $$;
"""


def grant_app_role(role: str) -> str:
    return f"""
GRANT USAGE ON SCHEMA public TO "{role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO "{role}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{role}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{role}";
REVOKE ALL ON TABLE alembic_version FROM "{role}";
"""


def revoke_app_role(role: str) -> str:
    return f"""
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM "{role}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM "{role}";
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{role}";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{role}";
REVOKE ALL ON SCHEMA public FROM "{role}";
"""


def enable_tenant_rls(table: str) -> str:
    return f"""
ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON {table}
    USING (organization_id = app_current_org() OR app_is_system())
    WITH CHECK (organization_id = app_current_org() OR app_is_system());
"""


def enable_organizations_rls() -> str:
    return """
ALTER TABLE organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON organizations
    USING (id = app_current_org() OR app_is_system())
    WITH CHECK (id = app_current_org() OR app_is_system());
"""


def disable_rls(table: str) -> str:
    return f"""
DROP POLICY IF EXISTS tenant_isolation ON {table};
ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
"""

"""Row-level security: the roles, policies and narrow cross-tenant functions, as SQL.

Kept as SQL text so that migrations can run it verbatim and tests can check the catalog against it.

- The application role owns no table, so policies always apply to it (superusers and table owners
  would slip past them).
- A unit of work runs `set_config('app.organization_id', ..., true)`, i.e. SET LOCAL: it ends with
  the transaction and cannot leak to the next user of a pooled connection. Unset means "no rows".
- A system unit of work (maintenance, dead letters, outbox sweeps) sets `app.system` instead.
- A send batch (the claims or wamids of several organizations' sends in one statement) sets
  `app.organization_ids` to the batch's organizations: a few policies of their own open just the
  rows and commands the send path needs (reading and updating messages, reading early statuses,
  counting usage, appending to the audit trail) to those organizations, and its statements pair
  every row with its own organization besides.
- Routing a webhook to its tenant is the one cross-tenant read, done by SECURITY DEFINER functions
  that return just the routing facts.
"""

from __future__ import annotations

ORG_SETTING = "app.organization_id"
SYSTEM_SETTING = "app.system"
BATCH_SETTING = "app.organization_ids"

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


# What a send batch may do, table by table (see the module's docstring); every other table and
# command stays closed to it.
SEND_BATCH_COMMANDS: dict[str, tuple[str, ...]] = {
    "messages": ("SELECT", "UPDATE"),
    "message_status_events": ("SELECT",),
    "usage_counters": ("SELECT", "INSERT", "UPDATE"),
    "event_store": ("INSERT",),
}


def enable_send_batch_scope() -> str:
    policies = []
    for table, commands in SEND_BATCH_COMMANDS.items():
        for command in commands:
            using = "" if command == "INSERT" else " USING (organization_id = ANY (app_batch_orgs()))"
            check = " WITH CHECK (organization_id = ANY (app_batch_orgs()))" if command != "SELECT" else ""
            policies.append(
                f"CREATE POLICY send_batch_{command.lower()} ON {table} FOR {command}{using}{check};"
            )
    joined = "\n".join(policies)
    return f"""
CREATE OR REPLACE FUNCTION app_batch_orgs() RETURNS uuid[]
    LANGUAGE sql STABLE
    AS $$ SELECT string_to_array(NULLIF(current_setting('{BATCH_SETTING}', true), ''), ',')::uuid[] $$;
{joined}
"""


def disable_send_batch_scope() -> str:
    drops = "\n".join(
        f"DROP POLICY IF EXISTS send_batch_{command.lower()} ON {table};"
        for table, commands in SEND_BATCH_COMMANDS.items()
        for command in commands
    )
    return f"""
{drops}
DROP FUNCTION IF EXISTS app_batch_orgs();
"""


def disable_rls(table: str) -> str:
    return f"""
DROP POLICY IF EXISTS tenant_isolation ON {table};
ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY;
ALTER TABLE {table} DISABLE ROW LEVEL SECURITY;
"""


def create_login_roles(app_role: str, system_role: str) -> str:
    """The application role logs in itself (no superuser session that switched role), and the
    maintenance role of system units of work is created beside it. Both are plain: no superuser,
    no BYPASSRLS, members of no role. Creating a role concurrently with another migration of the
    same cluster can race; the loser finds it made."""
    return f"""
ALTER ROLE "{app_role}" LOGIN;
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{system_role}') THEN
        CREATE ROLE "{system_role}" LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
GRANT USAGE ON SCHEMA public TO "{system_role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{system_role}";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{system_role}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO "{system_role}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO "{system_role}";
REVOKE ALL ON TABLE alembic_version FROM "{system_role}";
"""


def revoke_system_role(system_role: str) -> str:
    # The role itself stays: roles belong to the cluster, and other databases may use it.
    return f"""
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    REVOKE SELECT, INSERT, UPDATE, DELETE ON TABLES FROM "{system_role}";
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE USAGE, SELECT ON SEQUENCES FROM "{system_role}";
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM "{system_role}";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM "{system_role}";
REVOKE ALL ON SCHEMA public FROM "{system_role}";
"""


def gated_system_scope(system_role: str, owner: str) -> str:
    """`app.system` is a setting any session may set; it opens the system scope only for the
    maintenance role, and for the owner (who runs the SECURITY DEFINER functions: current_user
    inside them is the owner that created them). The application role setting it sees no more."""
    return f"""
CREATE OR REPLACE FUNCTION app_is_system() RETURNS boolean
    LANGUAGE sql STABLE
    AS $fn$ SELECT coalesce(current_setting('app.system', true), '') = 'on'
               AND current_user IN ('{system_role}', '{owner}') $fn$;
"""


UNGATED_SYSTEM_SCOPE = """
CREATE OR REPLACE FUNCTION app_is_system() RETURNS boolean
    LANGUAGE sql STABLE
    AS $$ SELECT coalesce(current_setting('app.system', true), '') = 'on' $$;
"""


# The SECURITY DEFINER functions are the only cross-tenant reads: nobody but the application role
# may call them (PostgreSQL grants EXECUTE to PUBLIC by default).
def restrict_definer_functions(app_role: str) -> str:
    return f"""
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', f);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I', f, '{app_role}');
    END LOOP;
END $$;
"""


def reopen_definer_functions() -> str:
    return """
DO $$
DECLARE f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = 'public'::regnamespace AND p.prosecdef LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO PUBLIC', f);
    END LOOP;
END $$;
"""


APPEND_ONLY_TABLE = "event_store"


def append_only_event_store(*roles: str) -> str:
    """The audit trail is written, never rewritten: no UPDATE, DELETE or TRUNCATE for the runtime's
    roles, and a trigger that refuses them for everyone else but a superuser who drops it."""
    revokes = "\n".join(
        f'REVOKE UPDATE, DELETE, TRUNCATE ON {APPEND_ONLY_TABLE} FROM "{role}";' for role in roles
    )
    return f"""
{revokes}
CREATE OR REPLACE FUNCTION app_refuse_event_rewrite() RETURNS trigger
    LANGUAGE plpgsql
    AS $fn$ BEGIN
        RAISE EXCEPTION 'event_store is append-only: % refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END $fn$;
CREATE TRIGGER event_store_append_only BEFORE UPDATE OR DELETE ON {APPEND_ONLY_TABLE}
    FOR EACH ROW EXECUTE FUNCTION app_refuse_event_rewrite();
CREATE TRIGGER event_store_no_truncate BEFORE TRUNCATE ON {APPEND_ONLY_TABLE}
    FOR EACH STATEMENT EXECUTE FUNCTION app_refuse_event_rewrite();
"""


def rewritable_event_store(*roles: str) -> str:
    grants = "\n".join(f'GRANT UPDATE, DELETE ON {APPEND_ONLY_TABLE} TO "{role}";' for role in roles)
    return f"""
DROP TRIGGER IF EXISTS event_store_no_truncate ON {APPEND_ONLY_TABLE};
DROP TRIGGER IF EXISTS event_store_append_only ON {APPEND_ONLY_TABLE};
DROP FUNCTION IF EXISTS app_refuse_event_rewrite();
{grants}
"""

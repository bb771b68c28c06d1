"""The start-up audit: a service refuses to serve when the database would not hold the wall."""

from __future__ import annotations

from sqlalchemy import Engine, text

# Every relation with a tenant_id column that the role can touch, with what protects it.
# Views and materialized views count: they bypass the base table's RLS unless the view
# runs with the caller's rights (security_invoker), and a materialized view cannot have RLS.
_TENANT_RELATIONS = text(
    """
    SELECT format('%I.%I', n.nspname, c.relname) AS name,
           c.relkind::text AS kind,
           c.relrowsecurity AS enabled,
           c.relforcerowsecurity AS forced,
           EXISTS (
               SELECT 1 FROM pg_policy p
               WHERE p.polrelid = c.oid
                 AND (p.polroles = '{0}' OR EXISTS (
                     SELECT 1 FROM unnest(p.polroles) AS r(oid)
                     WHERE pg_has_role(current_user, r.oid, 'MEMBER')))
           ) AS has_policy,
           ARRAY(
               -- Permissive policies are ORed: one that does not read app.tenant_id
               -- (USING (true), say) opens the table whatever the others check.
               SELECT p.polname::text FROM pg_policy p
               WHERE p.polrelid = c.oid AND p.polpermissive
                 AND (p.polroles = '{0}' OR EXISTS (
                     SELECT 1 FROM unnest(p.polroles) AS r(oid)
                     WHERE pg_has_role(current_user, r.oid, 'MEMBER')))
                 AND NOT ((p.polqual IS NULL
                           OR pg_get_expr(p.polqual, p.polrelid) LIKE '%app.tenant_id%')
                          AND (p.polwithcheck IS NULL
                           OR pg_get_expr(p.polwithcheck, p.polrelid) LIKE '%app.tenant_id%'))
               ORDER BY 1
           ) AS loose_policies,
           pg_has_role(current_user, c.relowner, 'MEMBER') AS owned,
           coalesce('security_invoker=true' = ANY (c.reloptions)
                    OR 'security_invoker=on' = ANY (c.reloptions), false) AS invoker
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%'
      AND (pg_has_role(current_user, c.relowner, 'MEMBER')
           OR has_table_privilege(c.oid, 'SELECT, INSERT, UPDATE, DELETE'))
    ORDER BY 1
    """
)

# Superuser and BYPASSRLS skip every policy; a role can also reach them through membership.
_POWERFUL_ROLES = text(
    """
    SELECT r.rolname, r.rolsuper, r.rolbypassrls
    FROM pg_roles r
    WHERE pg_has_role(current_user, r.oid, 'MEMBER') AND (r.rolsuper OR r.rolbypassrls)
    ORDER BY r.rolname
    """
)


class UnsafeDatabase(Exception):
    """The database would let this service read or write across tenants."""


def find_isolation_problems(engine: Engine) -> list[str]:
    """Everything that would let the service's role cross the tenant wall; empty when none."""
    problems: list[str] = []
    with engine.connect() as conn:
        user = conn.execute(text("SELECT current_user")).scalar_one()
        for name, is_super, bypass in conn.execute(_POWERFUL_ROLES):
            via = "" if name == user else f" (through membership in {name})"
            if is_super:
                problems.append(f"role {user} is a superuser{via}")
            if bypass:
                problems.append(f"role {user} has BYPASSRLS{via}")
        for row in conn.execute(_TENANT_RELATIONS).mappings():
            problems.extend(_relation_problems(row, user))
    return problems


def _relation_problems(row: object, user: str) -> list[str]:
    r = dict(row)  # type: ignore[call-overload]
    name = r["name"]
    if r["kind"] == "v":
        return (
            []
            if r["invoker"]
            else [f"view {name} exposes tenant_id without security_invoker (it bypasses RLS)"]
        )
    if r["kind"] == "m":
        return [f"materialized view {name} exposes tenant_id (RLS cannot protect it)"]
    problems = []
    if r["owned"]:
        problems.append(f"role {user} owns tenant table {name}")
    if not r["enabled"]:
        problems.append(f"tenant table {name} does not have row-level security enabled")
    elif not r["forced"]:
        problems.append(f"tenant table {name} does not have row-level security forced")
    if not r["has_policy"]:
        problems.append(f"tenant table {name} has no row-level security policy for {user}")
    for policy in r["loose_policies"]:
        problems.append(f"tenant table {name} has policy {policy} that does not read app.tenant_id")
    return problems


def require_isolation(engine: Engine) -> None:
    """Raise `UnsafeDatabase` naming the first problem (and how many more) when any exists."""
    problems = find_isolation_problems(engine)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UnsafeDatabase(problems[0] + more)

"""The start-up audit's Citus part: the wall must hold on every shard, not just the shell table.

On a Citus coordinator the tables the main audit reads are shells: the rows live in shards on
the workers, each a table of its own with its own RLS flags and policies. A shard that lost
`FORCE ROW LEVEL SECURITY` or its policy (a shard created by hand, a botched split) leaks
whatever the shell says. And without `citus.propagate_set_commands = 'local'` for the
services' role, the workers never see `app.tenant_id`: every read is empty, every write fails.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.engine import Connection

_CITUS_INSTALLED = text("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')")
# Asked only once the extension is known to be there: the function is Citus's.
_IS_COORDINATOR = text("SELECT citus_is_coordinator()")

# Distributed tables with a tenant_id column (reference tables have one copy per node and
# carry no tenant data).
_DISTRIBUTED_TENANT_TABLES = text(
    """
    SELECT p.logicalrelid::regclass::text
    FROM pg_dist_partition p
    JOIN pg_attribute a ON a.attrelid = p.logicalrelid AND a.attname = 'tenant_id'
                       AND NOT a.attisdropped
    WHERE p.partmethod = 'h'
    ORDER BY 1
    """
)

# Run on each shard by run_command_on_shards, which puts the shard's name in place of %s.
# The policy counts when it applies to the current role, as in the main audit.
_SHARD_STATE = """
    SELECT c.relrowsecurity::text || ',' || c.relforcerowsecurity::text || ',' ||
           EXISTS (SELECT 1 FROM pg_policy p
                   WHERE p.polrelid = c.oid
                     AND (p.polroles = '{0}' OR EXISTS (
                         SELECT 1 FROM unnest(p.polroles) AS r(oid)
                         WHERE pg_has_role(current_user, r.oid, 'MEMBER'))))::text
    FROM pg_class c WHERE c.oid = '%s'::regclass
"""

_ON_SHARDS = text(
    "SELECT shardid, success, result FROM run_command_on_shards(:table, :command) ORDER BY 1"
)


def is_citus_coordinator(conn: Connection) -> bool:
    """True when this database is a Citus coordinator (the extension is there and says so)."""
    if not conn.execute(_CITUS_INSTALLED).scalar_one():
        return False
    return bool(conn.execute(_IS_COORDINATOR).scalar_one())


def find_citus_problems(conn: Connection, user: str) -> list[str]:
    """On a Citus coordinator: shards without the wall, and a tenant setting that stays home."""
    if not is_citus_coordinator(conn):
        return []
    problems: list[str] = []
    propagate = conn.execute(text("SHOW citus.propagate_set_commands")).scalar_one()
    if propagate != "local":
        problems.append(
            f"role {user} has citus.propagate_set_commands = '{propagate}', not 'local' "
            "(the workers would never see the tenant)"
        )
    for table in conn.execute(_DISTRIBUTED_TENANT_TABLES).scalars():
        shards = conn.execute(_ON_SHARDS, {"table": table, "command": _SHARD_STATE}).all()
        for shard_id, success, result in shards:
            problems.extend(_shard_problems(table, shard_id, success, result, user))
    return problems


def _shard_problems(table: str, shard_id: int, success: bool, result: str, user: str) -> list[str]:
    where = f"shard {shard_id} of {table}"
    if not success:
        return [f"{where} could not be audited: {result}"]
    enabled, forced, has_policy = (part == "true" for part in result.split(","))
    problems = []
    if not enabled:
        problems.append(f"{where} does not have row-level security enabled")
    elif not forced:
        problems.append(f"{where} does not have row-level security forced")
    if not has_policy:
        problems.append(f"{where} has no row-level security policy for {user}")
    return problems

"""Constraint violations keep their answers when the name carries a Citus shard suffix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from kit.procs import ServiceProcess
from kit.testing import Database, new_database
from services.tenancy.constraints import (
    constraint_name_matches,
    domain_error_for,
    violated_constraint,
)
from services.users.service import CONSTRAINT_ERRORS, DuplicateEmail, TenantGone
from services.users.tests.conftest import SignedClient


@pytest.fixture(scope="module")
def sharded_names_db(postgres_server: Any, kit_workdir: Path) -> Database:
    """A migrated database whose constraints are named as a Citus shard names them."""
    database = new_database(postgres_server, log_dir=kit_workdir / "logs", name="users_shardnames")
    conn = psycopg2.connect(database.url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(
            "ALTER TABLE users RENAME CONSTRAINT users_tenant_email_key"
            " TO users_tenant_email_key_102196"
        )
        cur.execute(
            "ALTER TABLE tenant_row_ids RENAME CONSTRAINT tenant_row_ids_tenant_id_fkey"
            " TO tenant_row_ids_tenant_id_fkey_102200"
        )
    conn.close()
    return database


@pytest.fixture
def sharded_api(
    sharded_names_db: Database,
    start_service: Callable[..., ServiceProcess],
    secrets: Any,
) -> Iterator[tuple[SignedClient, psycopg2.extensions.connection]]:
    """Signed requests to a users service on that database, and the owner's connection."""
    service = start_service("users", {"APP_DATABASE_URL": sharded_names_db.app_url})
    owner = psycopg2.connect(sharded_names_db.url)
    owner.autocommit = True
    with httpx.Client(base_url=service.url, timeout=10) as http:
        yield SignedClient(http, secrets.signing_secret), owner
    owner.close()


def _new_tenant(owner: psycopg2.extensions.connection, name: str) -> int:
    with owner.cursor() as cur:
        cur.execute("INSERT INTO tenants (name) VALUES (%s) RETURNING id", (name,))
        row = cur.fetchone()
        assert row is not None
        return int(row[0])


def test_duplicate_email_is_409_when_the_constraint_has_a_shard_suffix(
    sharded_api: tuple[SignedClient, psycopg2.extensions.connection],
) -> None:
    api, owner = sharded_api
    tenant = _new_tenant(owner, "shard-suffix-dup")
    body = {"name": "A", "email": "twice@x.example"}
    assert api.request("POST", "/users", tenant, json=body).status_code == 201
    again = api.request("POST", "/users", tenant, json={**body, "email": "TWICE@x.example"})
    assert again.status_code == 409, again.text
    assert again.json() == {"detail": "a user with this email already exists"}


def test_deleted_tenant_is_404_when_the_foreign_key_has_a_shard_suffix(
    sharded_api: tuple[SignedClient, psycopg2.extensions.connection],
) -> None:
    api, owner = sharded_api
    tenant = _new_tenant(owner, "shard-suffix-gone")
    with owner.cursor() as cur:
        cur.execute("DELETE FROM tenants WHERE id = %s", (tenant,))
    # The gateway vouched for the tenant just before it was deleted.
    late = api.request("POST", "/users", tenant, json={"name": "Late"})
    assert late.status_code == 404, late.text
    assert late.json() == {"detail": "tenant not found"}


# The long form: a name that cannot take `_<shard id>` within 63 bytes is clipped and hashed.
_LONG = "orders_tenant_external_reference_normalized_and_region_key"


@pytest.mark.parametrize(
    ("reported", "name", "matches"),
    [
        ("users_tenant_email_key", "users_tenant_email_key", True),
        ("users_tenant_email_key_102196", "users_tenant_email_key", True),
        ("users_tenant_email_key_extra", "users_tenant_email_key", False),
        ("users_tenant_email_key_1_2", "users_tenant_email_key", False),
        ("users_tenant_email_keys_102196", "users_tenant_email_key", False),
        ("users_tenant_email_102196", "users_tenant_email_key", False),
        (_LONG[:46] + "_1a2b3c4d_102196", _LONG, True),
        # A short name is never clipped: a hashed form of its prefix is another constraint.
        ("users_tenant_1a2b3c4d_102196", "users_tenant_email_key", False),
    ],
)
def test_shard_names_match_only_their_own_constraint(
    reported: str, name: str, matches: bool
) -> None:
    assert constraint_name_matches(reported, name) is matches


@pytest.mark.parametrize(
    ("sqlstate", "message", "expected"),
    [
        (
            "unique_violation",
            'duplicate key value violates unique constraint "users_tenant_email_key_102063"',
            DuplicateEmail,
        ),
        (
            "foreign_key_violation",
            'insert or update on table "tenant_row_ids_102072" violates foreign key '
            'constraint "tenant_row_ids_tenant_id_fkey_102072"',
            TenantGone,
        ),
        ("unique_violation", 'violates unique constraint "users_pkey_102063"', None),
    ],
)
def test_a_relayed_error_without_the_constraint_field_still_maps(
    app_engine: Engine, sqlstate: str, message: str, expected: type[Exception] | None
) -> None:
    # A Citus coordinator relays a worker's violation with its SQLSTATE and message only (no
    # constraint_name field); RAISE produces exactly that shape on plain PostgreSQL.
    raise_it = f"DO $$ BEGIN RAISE {sqlstate} USING MESSAGE = {_quoted(message)}; END $$"
    with pytest.raises(IntegrityError) as caught, app_engine.connect() as conn:
        conn.exec_driver_sql(raise_it)
    assert violated_constraint(caught.value) == message.rsplit('"', 2)[1]
    assert domain_error_for(caught.value, CONSTRAINT_ERRORS) is expected


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"

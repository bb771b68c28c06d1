"""docs/add-a-service.md is true: its code blocks, as written, make a working isolated service."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from kit.procs import ROOT, start_service
from kit.testing import Database, new_database
from migrations.settings import MigrateSettings
from services.users.tests.conftest import SignedClient

DOC = ROOT / "docs" / "add-a-service.md"
# In the test the example lives outside the repository, as package `notes_example`.
PACKAGE = "notes_example"


def _code_blocks() -> dict[str, str]:
    """Each ```python block of the page that starts with a `# <path>` line, by path."""
    blocks = re.findall(r"```python\n# (\S+)\n(.*?)```", DOC.read_text(), flags=re.S)
    return {path: code for path, code in blocks}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's files written out: the service package and the migration."""
    root = tmp_path_factory.mktemp("add-a-service")
    blocks = _code_blocks()
    package = root / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    service_files = {p: c for p, c in blocks.items() if p.startswith("services/notes/")}
    assert set(service_files) == {
        f"services/notes/{name}"
        for name in ("models.py", "routes.py", "config.py", "main.py", "__main__.py")
    }
    for path, code in service_files.items():
        (package / Path(path).name).write_text(code.replace("services.notes", PACKAGE))
    (root / "versions").mkdir()
    (migration,) = [c for p, c in blocks.items() if p.startswith("migrations/versions/")]
    (root / "versions" / "notes_example.py").write_text(migration)
    return root


def _upgrade_with_example(database: Database, example: Path) -> None:
    settings = MigrateSettings.model_validate({"DATABASE_URL": database.url})
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["settings"] = settings
    # The example's migration follows whatever is the newest revision of the real history.
    head = ScriptDirectory.from_config(config).get_current_head()
    path = example / "versions" / "notes_example.py"
    path.write_text(
        re.sub(r'down_revision = "[^"]*"', f'down_revision = "{head}"', path.read_text())
    )
    # alembic.ini sets path_separator = os: the locations are joined with os.pathsep.
    locations = os.pathsep.join([str(ROOT / "migrations" / "versions"), str(example / "versions")])
    config.set_main_option("version_locations", locations)
    command.upgrade(config, "heads")


@pytest.fixture(scope="module")
def notes_db(postgres_server: Any, kit_workdir: Path, example: Path) -> Database:
    database = new_database(postgres_server, log_dir=kit_workdir / "logs", name="notes_example")
    _upgrade_with_example(database, example)
    return database


@pytest.fixture
def notes(
    notes_db: Database, example: Path, secrets: Any, kit_workdir: Path
) -> Iterator[SignedClient]:
    """`python -m notes_example`, a real process on NOTES_HOST/NOTES_PORT."""
    service = start_service(
        "notes",
        env={
            "APP_DATABASE_URL": notes_db.app_url,
            "INTERNAL_SIGNING_SECRET": secrets.signing_secret,
            "PYTHONPATH": str(example),
        },
        log_dir=kit_workdir / "logs",
        argv=[sys.executable, "-m", PACKAGE],
    )
    try:
        with httpx.Client(base_url=service.url, timeout=10) as client:
            yield SignedClient(client, secrets.signing_secret, destination="/notes")
    finally:
        service.stop()


def _tenant(database: Database) -> int:
    conn = psycopg2.connect(database.url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("INSERT INTO tenants (name) VALUES (gen_random_uuid()::text) RETURNING id")
        row = cur.fetchone()
    conn.close()
    assert row is not None
    return int(row[0])


def test_example_service_keeps_tenants_apart(notes: SignedClient, notes_db: Database) -> None:
    a, b = _tenant(notes_db), _tenant(notes_db)
    made = [notes.request("POST", "/notes", a, json={"body": f"a's secret {n}"}) for n in (1, 2)]
    assert [r.status_code for r in made] == [201, 201], made[-1].text
    first, note = (r.json() for r in made)
    assert (first["tenant_id"], note["tenant_id"]) == (a, a)
    assert notes.request("GET", f"/notes/{note['id']}", a).json() == note
    # Note 2 exists for a only: b cannot reach it, nor list anything.
    assert notes.request("GET", f"/notes/{note['id']}", b).status_code == 404
    assert notes.request("GET", "/notes", b).json() == []
    assert notes.request("GET", "/notes/", a).json() == [first, note]
    assert notes.client.get("/notes", headers={"x-tenant-id": str(a)}).status_code == 401


def test_example_service_numbers_notes_per_tenant(notes: SignedClient, notes_db: Database) -> None:
    a, b = _tenant(notes_db), _tenant(notes_db)
    a_note = notes.request("POST", "/notes", a, json={"body": "a's note"}).json()
    b_note = notes.request("POST", "/notes", b, json={"body": "b's note"}).json()
    assert (a_note["id"], b_note["id"]) == (1, 1)
    # The same id names each tenant's own note, never the other's.
    assert notes.request("GET", "/notes/1", b).json()["body"] == "b's note"
    assert notes.request("GET", "/notes/1", a).json()["body"] == "a's note"


def test_example_table_is_sealed_by_the_database(notes_db: Database, example: Path) -> None:
    conn = psycopg2.connect(notes_db.app_url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'notes'"
            )
            assert cur.fetchone() == (True, True)
            cur.execute("SELECT count(*) FROM notes")
            assert cur.fetchone() == (0,)
    finally:
        conn.close()

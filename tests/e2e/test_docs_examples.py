"""Every curl and psql line of README.md and docs/*.md works on a fresh stack, as written.

The lines are extracted from the docs on each run, so a doc can no longer drift from the
code: editing an example edits this test.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from doclines import DOCS, Reader, names_in, sh_blocks

from kit.procs import ROOT
from kit.testing import Stack

HEADER_MODE = {"GATEWAY_AUTH_MODES": "header", "GATEWAY_BASE_DOMAIN": None}
RUNNABLE = [doc for doc in DOCS if sh_blocks(doc)]


def test_the_docs_hold_the_examples_this_test_runs() -> None:
    # Guards the extraction itself: a changed fence or prompt must not silently empty it.
    names = [str(doc.relative_to(ROOT)) for doc in RUNNABLE]
    assert "README.md" in names and "docs/compose.md" in names, names
    assert sum(len(block) for doc in RUNNABLE for block in sh_blocks(doc)) >= 12


@pytest.mark.parametrize("doc", RUNNABLE, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_example_of_the_doc_answers_as_it_says(
    doc: Path, fresh_stack: Callable[..., Stack]
) -> None:
    readers: dict[bool, Reader] = {}
    for block in sh_blocks(doc):
        # The tutorial's blocks name tenants by X-Tenant-ID: they run in its header mode.
        header = any("X-Tenant-ID" in line.text for line in block)
        if header not in readers:
            stack = fresh_stack(gateway_env=HEADER_MODE if header else None)
            readers[header] = Reader(
                base_url=stack.url,
                database_url=stack.database.url,
                admin_token=stack.secrets.admin_token,
            )
        reader = readers[header]
        for line in block:
            answer = reader.run(line)
            if answer is not None and line.comment and isinstance(answer.json(), list):
                assert names_in(answer) == line.comment.split(", "), line

"""The curl and psql lines of README.md and docs/*.md, extracted and run as a reader would.

A reader copies the lines of a ```sh block in order; so does `run_block`. Placeholders
become what the reader would paste: the stack's URL for `http://localhost:<port>`, the
admin token for `$ADMIN_TOKEN` (or the `.env` lookup of docs/compose.md), and the API key
of the last tenant created for `tk_...`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg2

from kit.procs import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_SH_BLOCK = re.compile(r"```sh\n(.*?)```", re.S)
_LOCALHOST = re.compile(r"http://localhost:\d+")
_ADMIN_TOKEN = re.compile(r"\$\(sed -n 's/\^ADMIN_TOKEN=//p' \.env\)|\$ADMIN_TOKEN")


@dataclass(frozen=True)
class DocLine:
    """One command of a doc, continuation lines joined, with where it came from."""

    doc: str
    line: int
    text: str

    @property
    def comment(self) -> str:
        """What follows `#` after the command (the doc's expected answer), or ''."""
        parts = shlex.split(self.text, comments=False)
        return " ".join(parts[parts.index("#") + 1 :]) if "#" in parts else ""

    def __str__(self) -> str:
        return f"{self.doc}:{self.line}: {self.text}"


def sh_blocks(path: Path) -> list[list[DocLine]]:
    """Each ```sh block of `path` as its curl and psql commands, in order."""
    text = path.read_text()
    blocks = []
    for match in _SH_BLOCK.finditer(text):
        first_line = text.count("\n", 0, match.start(1)) + 1
        commands: list[DocLine] = []
        pending, start = "", 0
        for offset, raw in enumerate(match.group(1).splitlines()):
            if not pending:
                start = first_line + offset
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            line = (pending + raw).strip()
            pending = ""
            if line.startswith(("curl ", "psql ")):
                commands.append(DocLine(str(path.relative_to(ROOT)), start, line))
        if commands:
            blocks.append(commands)
    return blocks


def all_blocks() -> list[list[DocLine]]:
    """Every runnable block of README.md and docs/*.md."""
    return [block for doc in DOCS for block in sh_blocks(doc)]


@dataclass
class Curl:
    """A curl command line, as curl would send it."""

    method: str
    url: str
    headers: dict[str, str]
    data: str | None

    @classmethod
    def parse(cls, argv: list[str]) -> Curl:
        """The request of `curl [-s] [-X M] [-H 'K: V']... [-d DATA] URL`."""
        method, url, data = None, None, None
        headers: dict[str, str] = {}
        args = iter(argv[1:])
        for arg in args:
            if arg == "-X":
                method = next(args)
            elif arg == "-H":
                key, _, value = next(args).partition(":")
                headers[key.strip()] = value.strip()
            elif arg == "-d":
                data = next(args)
            elif arg in ("-s", "-i"):
                continue
            elif arg.startswith("-"):
                raise AssertionError(f"curl option {arg} not understood by this runner")
            else:
                url = arg
        assert url is not None, f"no URL in {argv}"
        if data is not None:
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        return cls(method or ("POST" if data is not None else "GET"), url, headers, data)


@dataclass
class Reader:
    """Runs doc lines against one stack, remembering what a reader would paste next."""

    base_url: str
    database_url: str
    admin_token: str
    api_key: str | None = None
    answers: list[httpx.Response] = field(default_factory=list)

    def substitute(self, line: DocLine) -> str:
        text = _LOCALHOST.sub(self.base_url, line.text)
        text = _ADMIN_TOKEN.sub(self.admin_token, text)
        if "tk_..." in text:
            assert self.api_key, f"{line}: no tenant created before this line"
            text = text.replace("tk_...", self.api_key)
        return text

    def run(self, line: DocLine) -> httpx.Response | None:
        """Run one line; the HTTP answer (None for psql), checked to be a success."""
        argv = shlex.split(self.substitute(line), comments=True)
        if argv[0] == "psql":
            assert argv[1] == "$DATABASE_URL" and argv[2] == "-c", line
            conn = psycopg2.connect(self.database_url)
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(argv[3])
            finally:
                conn.close()
            return None
        curl = Curl.parse(argv)
        answer = httpx.request(
            curl.method, curl.url, headers=curl.headers, content=curl.data, timeout=10
        )
        assert answer.is_success, f"{line}\n-> {answer.status_code} {answer.text}"
        if answer.headers.get("content-type", "").startswith("application/json"):
            body = answer.json()
            if isinstance(body, dict) and "api_key" in body:
                self.api_key = body["api_key"]
        self.answers.append(answer)
        return answer


def names_in(answer: httpx.Response) -> list[str]:
    """The user names of a list answer."""
    return [user["name"] for user in answer.json()]

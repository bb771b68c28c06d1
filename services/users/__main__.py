"""`python -m services.users`: check settings and database, then serve."""

from __future__ import annotations

from services.tenancy.app import serve
from services.users.config import Settings
from services.users.main import create_app


def main() -> None:
    settings = Settings.load()
    serve(create_app(settings), settings, host=settings.USERS_HOST, port=settings.USERS_PORT)


if __name__ == "__main__":
    main()

"""The seed tutorial's app, the baseline of `make bench`: its code as the article prints it.

Only what it needs to run is changed: the session dependency the article assumes
(`get_db`, the FastAPI/SQLAlchemy docs' pattern), the header middleware answering 400 instead
of raising (Starlette turns that raise into a 500), and a get-by-id route written the same
way as its list route, so both sides are read with the same requests. One process, sync
SQLAlchemy + psycopg2, tenant from the X-Tenant-ID header: no key, no rate limit, no
signature, no RLS. Never part of tenantkit: it isolates nothing.

`python -m bench.tutorial_app` serves it on TUTORIAL_HOST:TUTORIAL_PORT from TUTORIAL_DATABASE_URL.
"""

# The article's own style (Depends() in defaults, no return annotations: FastAPI would take
# them as response models) is kept on purpose.
# ruff: noqa: B008
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Column, ForeignKey, Integer, String, create_engine
from sqlalchemy.orm import Session, declarative_base, relationship, sessionmaker

Base: Any = declarative_base()


class Tenant(Base):
    __tablename__ = "tenants"
    id = Column(Integer, primary_key=True, index=True)
    name = Column(String, unique=True)
    users = relationship("User", back_populates="tenant")


class User(Base):
    __tablename__ = "users"
    id = Column(Integer, primary_key=True, index=True)
    name = Column(String)
    tenant_id = Column(Integer, ForeignKey("tenants.id"))
    tenant = relationship("Tenant", back_populates="users")


def create_app(database_url: str) -> FastAPI:
    """The article's app on `database_url` (tables made by `Base.metadata.create_all`)."""
    engine = create_engine(database_url)
    session_local = sessionmaker(autocommit=False, autoflush=False, bind=engine)

    def get_db() -> Iterator[Session]:
        db = session_local()
        try:
            yield db
        finally:
            db.close()

    app = FastAPI()

    @app.middleware("http")
    async def tenant_middleware(request: Request, call_next):
        tenant_id = request.headers.get("X-Tenant-ID")
        if not tenant_id:
            return JSONResponse({"detail": "X-Tenant-ID header missing"}, status_code=400)
        request.state.tenant_id = tenant_id
        response = await call_next(request)
        return response

    def get_tenant_id(request: Request):
        return request.state.tenant_id

    @app.post("/users/")
    def create_user(
        name: str, db: Session = Depends(get_db), tenant_id: str = Depends(get_tenant_id)
    ):
        user = User(name=name, tenant_id=tenant_id)
        db.add(user)
        db.commit()
        db.refresh(user)
        return user

    @app.get("/users/")
    def list_users(db: Session = Depends(get_db), tenant_id: str = Depends(get_tenant_id)):
        users = db.query(User).filter(User.tenant_id == tenant_id).all()
        return users

    @app.get("/users/{user_id}")
    def get_user(
        user_id: int, db: Session = Depends(get_db), tenant_id: str = Depends(get_tenant_id)
    ):
        user = db.query(User).filter(User.tenant_id == tenant_id, User.id == user_id).first()
        if user is None:
            raise HTTPException(status_code=404, detail="User not found")
        return user

    return app


def main() -> None:
    """Serve the tutorial app as the article runs it: one uvicorn process."""
    app = create_app(os.environ["TUTORIAL_DATABASE_URL"])
    host = os.environ.get("TUTORIAL_HOST", "127.0.0.1")
    uvicorn.run(app, host=host, port=int(os.environ["TUTORIAL_PORT"]), log_level="warning")


if __name__ == "__main__":
    main()

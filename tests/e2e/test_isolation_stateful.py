"""Random operations of several tenants through the gateway, each answer checked against a model.

No sequence of create / list / get / patch / delete, by any tenant on any id, may show or
change another tenant's data: every answer must equal what the model of that tenant alone
predicts. Ids are numbered per tenant, so the model keys users by (tenant, id) and the same
id is often held by several tenants: a probe of it must find the caller's own row.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

TENANTS = 3
names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ÄéЖ語-", min_size=1, max_size=12)
# A small pool, mixed case: duplicates within a tenant (409) and across tenants (fine) happen.
emails = st.sampled_from([None, "ann@x.example", "ANN@x.example", "bob@x.example", "cy@y.example"])
limits = st.integers(min_value=1, max_value=4)

User = dict[str, Any]


class TenantsMachine(RuleBasedStateMachine):
    """Several tenants share the gateway; the model keeps each tenant's users apart."""

    gateway_url: str = ""
    admin: httpx.Client

    user_ids = Bundle("user_ids")

    def __init__(self) -> None:
        super().__init__()
        self.tenant_ids: list[int] = []
        self.clients: list[httpx.Client] = []
        # model[t][id]: tenant t's users by id; issued[t]: the last id tenant t was given.
        self.model: list[dict[int, User]] = []
        self.issued: list[int] = []

    @initialize()
    def make_tenants(self) -> None:
        for _ in range(TENANTS):
            created = self.admin.post(
                "/admin/tenants", json={"name": f"stateful-{uuid.uuid4().hex[:12]}"}
            )
            assert created.status_code == 201, created.text
            body = created.json()
            self.tenant_ids.append(int(body["id"]))
            self.clients.append(
                httpx.Client(
                    base_url=self.gateway_url,
                    headers={"Authorization": f"Bearer {body['api_key']}"},
                    timeout=10,
                )
            )
            self.model.append({})
            self.issued.append(0)

    def teardown(self) -> None:
        for client in self.clients:
            client.close()
        for tenant_id in self.tenant_ids:
            self.admin.delete(f"/admin/tenants/{tenant_id}?purge=true")

    # --- helpers --------------------------------------------------------------------

    def _email_taken(self, t: int, email: str | None, *, besides: int | None = None) -> bool:
        if email is None:
            return False
        return any(
            u["email"] is not None and u["email"].lower() == email.lower() and uid != besides
            for uid, u in self.model[t].items()
        )

    def _check_user(self, t: int, body: User) -> None:
        assert body["tenant_id"] == self.tenant_ids[t], body
        expected = self.model[t][body["id"]]
        assert {k: body[k] for k in ("name", "email")} == {
            k: expected[k] for k in ("name", "email")
        }

    # --- rules ------------------------------------------------------------------------

    @rule(
        target=user_ids, t=st.integers(0, TENANTS - 1), name=names, email=emails, form=st.booleans()
    )
    def create(self, t: int, name: str, email: str | None, form: bool) -> Any:
        payload = {"name": name} | ({"email": email} if email else {})
        client = self.clients[t]
        response = (
            client.post("/users/", data=payload) if form else client.post("/users", json=payload)
        )
        if self._email_taken(t, email):
            assert response.status_code == 409, response.text
            return multiple()
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["tenant_id"] == self.tenant_ids[t] and body["name"] == name
        assert (body["email"] or "").lower() == (email or "").lower()
        # Per-tenant numbering: the next id of this tenant, whatever the others created.
        self.issued[t] += 1
        assert body["id"] == self.issued[t], (body, self.issued)
        self.model[t][body["id"]] = {"name": name, "email": body["email"]}
        return int(body["id"])

    @rule(t=st.integers(0, TENANTS - 1), limit=limits)
    def list_all_pages(self, t: int, limit: int) -> None:
        seen: list[User] = []
        target: str | None = f"/users?limit={limit}"
        while target is not None:
            response = self.clients[t].get(target)
            assert response.status_code == 200, response.text
            page = response.json()
            assert len(page) <= limit
            seen += page
            link = response.headers.get("link")
            target = link[1 : link.index(">")] if link else None
        assert [u["id"] for u in seen] == sorted(self.model[t])
        for body in seen:
            self._check_user(t, body)

    @rule(t=st.integers(0, TENANTS - 1), user_id=user_ids)
    def get(self, t: int, user_id: int) -> None:
        response = self.clients[t].get(f"/users/{user_id}")
        if user_id in self.model[t]:
            assert response.status_code == 200, response.text
            self._check_user(t, response.json())
        else:
            assert response.status_code == 404, response.text

    @rule(
        t=st.integers(0, TENANTS - 1),
        user_id=user_ids,
        name=st.none() | names,
        email=st.none() | emails,
    )
    def patch(self, t: int, user_id: int, name: str | None, email: str | None) -> None:
        changes = {"name": name} if name is not None else {}
        if email is not None:
            changes["email"] = email
        response = self.clients[t].patch(f"/users/{user_id}", json=changes)
        if user_id not in self.model[t]:
            # Other tenants' rows with this id are unchanged: the invariant reads them all.
            assert response.status_code == 404, response.text
            return
        if self._email_taken(t, email, besides=user_id):
            assert response.status_code == 409, response.text
            return
        assert response.status_code == 200, response.text
        body = response.json()
        if name is not None:
            self.model[t][user_id]["name"] = name
        if email is not None:
            assert body["email"].lower() == email.lower()
            self.model[t][user_id]["email"] = body["email"]
        self._check_user(t, body)

    @rule(t=st.integers(0, TENANTS - 1), user_id=consumes(user_ids))
    def delete(self, t: int, user_id: int) -> None:
        response = self.clients[t].delete(f"/users/{user_id}")
        if user_id in self.model[t]:
            assert response.status_code == 204, response.text
            del self.model[t][user_id]
        else:
            assert response.status_code == 404, response.text

    @invariant()
    def every_tenant_sees_exactly_its_model(self) -> None:
        for t, client in enumerate(self.clients):
            response = client.get("/users?limit=500")
            assert response.status_code == 200, response.text
            assert [u["id"] for u in response.json()] == sorted(self.model[t])
            # Content too, not only ids: another tenant's row under one of t's ids is caught.
            for body in response.json():
                self._check_user(t, body)


def test_no_sequence_of_operations_crosses_tenants(gateway: Any, admin: httpx.Client) -> None:
    class Machine(TenantsMachine):
        pass

    Machine.gateway_url = gateway.url
    Machine.admin = admin
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=12,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )

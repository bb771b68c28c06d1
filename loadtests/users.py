"""The simulated users: people of one tenant using the users API, and the noisy neighbour."""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any, NamedTuple

from locust import FastHttpUser, between, constant_throughput, task
from locust.exception import StopUser

from loadtests.isolation import describe, email_marker, foreign_rows, name_marker, next_link
from loadtests.state import STATE
from loadtests.tenants import LoadTenant
from loadtests.verdict import FLOOD_SUFFIX

logger = logging.getLogger("loadtests")

PAGE_SIZE = 10


class Reply(NamedTuple):
    """A response that passed every check."""

    status: int
    body: Any
    next_page: str | None


class TenantApiUser(FastHttpUser):
    """Base: one tenant's key on every request, every response checked for foreign rows."""

    abstract = True
    tenant: LoadTenant
    expected_tenant_id: int
    auth: dict[str, str]

    def bind(self, tenant: LoadTenant, *, api_key: str) -> None:
        """Act as `tenant`: send `api_key`, accept only `tenant`'s rows."""
        self.tenant = tenant
        self.expected_tenant_id = tenant.id
        self.auth = {"Authorization": f"Bearer {api_key}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        name: str,
        expect: tuple[int, ...] = (200,),
        json: dict[str, Any] | None = None,
    ) -> Reply | None:
        """One request; its reply when it passed every check, else None (a failure)."""
        with self.client.request(
            method,
            path,
            headers=self.auth,
            json=json,
            name=f"[{self.tenant.label}] {method} {name}",
            catch_response=True,
        ) as response:
            status = response.status_code
            body = None
            # Every body is read, errors too: a row can leak inside any answer.
            if response.content:
                try:
                    body = response.json()
                except ValueError:
                    if status in (200, 201):
                        response.failure(f"{status} response is not JSON")
                        return None
            # Checked before the status: a leak that comes with an odd status is still a leak.
            found = foreign_rows(body, tenant_id=self.expected_tenant_id)
            if found:
                message = describe(found, tenant_label=self.tenant.label)
                ids = [i for i, _ in found]
                logger.error("%s (%s %s, user ids %s)", message, method, path, ids)
                response.failure(message)
                return None
            if status not in expect:
                response.failure(f"{status} {'rate limited' if status == 429 else 'unexpected'}")
                return None
            response.success()
            return Reply(status, body, next_link(response.headers.get("link")))


class TenantUser(TenantApiUser):
    """A person of one tenant: mostly reads, some writes, now and then a deletion."""

    wait_time = between(0.3, 1.5)

    def on_start(self) -> None:
        tenant = STATE.claim_tenant()
        key = tenant.api_key
        settings = STATE.settings
        if settings and settings.LOAD_PLANT_CROSS_TENANT and not STATE.planted:
            impostor = STATE.tenant("tenant-02")
            if tenant.label == "tenant-01" and impostor is not None:
                # Test-only: this user expects tenant-01's rows but holds tenant-02's key, so
                # the gateway hands it real tenant-02 rows, as a routing mix-up would.
                STATE.planted = True
                key = impostor.api_key
        self.bind(tenant, api_key=key)
        self.own_ids: list[int] = []
        for _ in range(2):
            self.create_user()

    def _name(self, prefix: str) -> str:
        # The tenant's marker in every name and email written: a row's content says whose it
        # is, so a leaked row is caught even when its tenant_id field says ours.
        return f"{prefix} {uuid.uuid4().hex[:8]} {name_marker(self.tenant.id)}"

    @task(2)
    def create_user(self) -> None:
        """Sign a new person up; remember the id as this tenant's."""
        tag = uuid.uuid4().hex[:12]
        email = f"u{tag}{email_marker(self.tenant.id)}example.com"
        result = self.call(
            "POST",
            "/users",
            name="/users",
            expect=(201,),
            json={"name": self._name("Load user"), "email": email},
        )
        if result and isinstance(result.body, dict) and isinstance(result.body.get("id"), int):
            user_id = result.body["id"]
            STATE.registry.record(user_id=user_id, tenant_id=self.expected_tenant_id)
            self.own_ids.append(user_id)

    @task(8)
    def get_user(self) -> None:
        """Open one of the people this user created."""
        if self.own_ids:
            self.call("GET", f"/users/{random.choice(self.own_ids)}", name="/users/{id}")

    @task(4)
    def list_users(self) -> None:
        """The first page, and the next one when the Link header offers it."""
        result = self.call("GET", f"/users?limit={PAGE_SIZE}", name="/users?limit=")
        if result is not None and result.next_page:
            self.call("GET", result.next_page, name="/users?after=")

    @task(2)
    def patch_user(self) -> None:
        """Rename one of them."""
        if self.own_ids:
            user_id = random.choice(self.own_ids)
            self.call(
                "PATCH",
                f"/users/{user_id}",
                name="/users/{id}",
                json={"name": self._name("Renamed")},
            )

    @task(1)
    def delete_user(self) -> None:
        """Remove one of them (keeping one, so reads always have a target)."""
        if len(self.own_ids) > 1:
            user_id = self.own_ids.pop(random.randrange(len(self.own_ids)))
            self.call("DELETE", f"/users/{user_id}", name="/users/{id}", expect=(204,))

    @task(1)
    def probe_foreign_user(self) -> None:
        """Ask for an id another tenant holds: never that tenant's row.

        Ids are numbered per tenant, so this tenant may hold the same id (perhaps created on
        another worker): its own row is a right answer, and so is 404. `call` checks the row's
        tenant_id and markers, so another tenant's row fails the request either way.
        """
        foreign = STATE.registry.foreign_ids(self.expected_tenant_id)
        if foreign:
            target = f"/users/{random.choice(foreign)}"
            self.call("GET", target, name="/users/{id} (foreign)", expect=(200, 404))


class FloodUser(TenantApiUser):
    """The noisy neighbour: one tenant's client hammering far above its rate limit."""

    attacker = True  # its requests are left out of the measured tenants' figures
    # Replaced from LOAD_FLOOD_USERS / LOAD_FLOOD_RPS_PER_USER when the run starts.
    fixed_count = 1
    wait_time = constant_throughput(50)

    def on_start(self) -> None:
        settings = STATE.settings
        label = settings.LOAD_FLOOD_TENANT if settings else None
        STATE.wait_for_tenants()
        tenant = STATE.tenant(label) if label else None
        if tenant is None:
            logger.error("FloodUser needs LOAD_FLOOD_TENANT naming one of the run's tenants")
            raise StopUser()
        self.bind(tenant, api_key=tenant.api_key)

    @task
    def flood(self) -> None:
        """The cheapest request there is, as fast as the wait time allows."""
        self.call("GET", "/users?limit=1", name="/users" + FLOOD_SUFFIX)

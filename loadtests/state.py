"""What one Locust process knows about the run: its tenants, who serves which, who owns what."""

from __future__ import annotations

from gevent.event import Event
from locust.exception import StopUser

from loadtests.isolation import OwnershipRegistry
from loadtests.settings import LoadSettings
from loadtests.tenants import LoadTenant, assignment_order, user_quotas

# How long a worker's users wait for the master to send the tenants it created.
TENANTS_WAIT_SECONDS = 60


class RunState:
    """Shared by the users and the event listeners of one Locust process (one per process)."""

    def __init__(self) -> None:
        self.settings: LoadSettings | None = None
        self.tenants: list[LoadTenant] = []
        self.created_here = False
        self.setup_error: str | None = None
        self.registry = OwnershipRegistry()
        self.users_per_tenant: dict[str, int] = {}
        self.planted = False
        self._order: list[int] = []
        self._spawned = 0
        # A worker takes every `_stride`-th place of the plan from `_offset` on, so the
        # workers together bind users as one process would.
        self._stride = 1
        self._offset = 0
        self._ready = Event()

    def use_tenants(
        self, tenants: list[LoadTenant], *, users: int, stride: int = 1, offset: int = 0
    ) -> None:
        """Adopt the run's tenants and the order in which users are bound to them."""
        self.tenants = tenants
        self._stride, self._offset = max(stride, 1), offset
        self._order = assignment_order(user_quotas([t.weight for t in tenants], users))
        self._ready.set()

    def fail_setup(self, message: str) -> None:
        """Setup failed: users that start from now on stop at once."""
        self.setup_error = message
        self._ready.set()

    def wait_for_tenants(self) -> None:
        """Block until the tenants are known; stop the calling user if setup failed."""
        if not self._ready.wait(TENANTS_WAIT_SECONDS) or self.setup_error or not self.tenants:
            raise StopUser()

    def claim_tenant(self) -> LoadTenant:
        """The tenant the next spawned user is bound to (waits for the master's list)."""
        self.wait_for_tenants()
        place = self._spawned * self._stride + self._offset
        tenant = self.tenants[self._order[place % len(self._order)]]
        self._spawned += 1
        self.users_per_tenant[tenant.label] = self.users_per_tenant.get(tenant.label, 0) + 1
        return tenant

    def users_by_tenant(self) -> dict[str, int]:
        """Users bound per tenant: counted here, else (a master, whose users run on the
        workers) as planned."""
        if self.users_per_tenant:
            return self.users_per_tenant
        planned: dict[str, int] = {}
        for index in self._order:
            label = self.tenants[index].label
            planned[label] = planned.get(label, 0) + 1
        return planned

    def tenant(self, label: str) -> LoadTenant | None:
        """The tenant with this label, if the run has one."""
        return next((t for t in self.tenants if t.label == label), None)


# Locust loads the scenario once per process; the users and listeners share this instance.
STATE = RunState()

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
        self._ready = Event()

    def use_tenants(self, tenants: list[LoadTenant], *, users: int) -> None:
        """Adopt the run's tenants and the order in which users are bound to them."""
        self.tenants = tenants
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
        tenant = self.tenants[self._order[self._spawned % len(self._order)]]
        self._spawned += 1
        self.users_per_tenant[tenant.label] = self.users_per_tenant.get(tenant.label, 0) + 1
        return tenant

    def tenant(self, label: str) -> LoadTenant | None:
        """The tenant with this label, if the run has one."""
        return next((t for t in self.tenants if t.label == label), None)


# Locust loads the scenario once per process; the users and listeners share this instance.
STATE = RunState()

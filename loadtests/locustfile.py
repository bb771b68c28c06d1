"""tenantkit's per-tenant load test (`make load`); also usable with plain `locust -f`.

    locust -f loadtests/locustfile.py --headless -u 25 -r 10 -t 45s --host http://127.0.0.1:8000

Only the users named here run; the listeners (tenants, clean-up, verdict) come with them.
"""

from loadtests import lifecycle  # noqa: F401  (registers the event listeners)
from loadtests.users import TenantUser

__all__ = ["TenantUser"]

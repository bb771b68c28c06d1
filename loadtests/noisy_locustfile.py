"""The flood phase of `make load-noisy`: the normal users plus one tenant's flooding client."""

from loadtests import lifecycle  # noqa: F401  (registers the event listeners)
from loadtests.users import FloodUser, TenantUser

__all__ = ["FloodUser", "TenantUser"]

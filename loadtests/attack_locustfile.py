"""The attack phases of `make load-noisy`: the normal users plus one attacker class, chosen by
name on Locust's command line (`TenantUser SlowBodyUser`, ...)."""

from loadtests import lifecycle  # noqa: F401  (registers the event listeners)
from loadtests.attackers import HeavyUser, RandomKeyUser, SlowBodyUser
from loadtests.users import TenantUser

__all__ = ["HeavyUser", "RandomKeyUser", "SlowBodyUser", "TenantUser"]

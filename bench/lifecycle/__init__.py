"""`make load-lifecycle`: issue 13's targets for a large tenant's export and purge.

A tenant of LIFECYCLE_ROWS users (1,000,000 by default) is exported through the gateway
under concurrent writes, then purged while other tenants keep sending requests; every
figure is printed beside its target (docs/lifecycle.md, "Measured").
"""

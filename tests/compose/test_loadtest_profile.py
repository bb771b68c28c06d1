"""The loadtest profile: Locust master and workers from the project's image, run for real."""

from __future__ import annotations

from compose_stack import ComposeStack

LOADTEST = ("scale", "loadtest")


def test_loadtest_profile_runs_locust_with_workers_and_reports_its_verdict(
    stack: ComposeStack,
) -> None:
    # A short, small run: this checks the profile's wiring (image, master, workers, verdict),
    # not the machine's speed, so the latency bound is loose.
    env = {"LOAD_TIME": "8s", "LOAD_USERS": "6", "LOAD_TENANTS": "3", "LOAD_P95_MS": "5000"}
    try:
        stack.run(
            "up",
            "-d",
            "--build",
            "locust-master",
            "locust-worker",
            profiles=LOADTEST,
            env=env,
            timeout=600,
        )
        # `wait` ends with the master; its exit code is the load test's verdict.
        stack.run("wait", "locust-master", profiles=LOADTEST, env=env, timeout=180, check=False)
        logs = stack.run("logs", "--no-log-prefix", "locust-master", profiles=LOADTEST, env=env)
        assert "2 workers connected" in logs, logs[-3000:]
        assert "PASSED: no cross-tenant row" in logs, logs[-3000:]
        assert "Shutting down (exit code 0)" in logs, logs[-3000:]
    finally:
        stack.run(
            "rm",
            "--stop",
            "--force",
            "locust-master",
            "locust-worker",
            profiles=LOADTEST,
            env=env,
            check=False,
        )

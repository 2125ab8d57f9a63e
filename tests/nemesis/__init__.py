"""The nemesis harness (issue 11): fault proxies, process nemeses, a client history, a checker, seeded schedules."""

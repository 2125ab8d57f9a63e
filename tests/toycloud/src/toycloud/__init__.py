"""A toy cloud for failover, packaged as a third party would package an adapter (docs/extending.md).

`options` is what failover reads to validate a configuration (light: pydantic only); `cloud` holds the adapter and
the router, imported only when a site or DNS record on the toy cloud is built. The toy cloud's "API" is a JSON file
in a directory (`state_dir`), so that a test in one process and the orchestrator in another see one cloud.
"""

"""The sans-IO core: pure functions over immutable data and a time passed in.

Nothing under this package imports anything outside it but the standard library: no SDK, no network, no store,
no clock. The daemon, the cron command, the CLI and the simulator are thin drivers around it.
"""

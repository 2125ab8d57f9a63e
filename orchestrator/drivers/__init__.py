"""Drivers: the only layer that combines the core with the store, the engines and the providers."""

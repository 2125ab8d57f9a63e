"""The drill: the whole system on one machine with no cloud account (moto, local API-shaped fakes, real replicas)."""

"""The test infrastructure, in one place: the real processes and local fakes a failover can be rehearsed against.

Why it ships in the product rather than under `tests/`: `failover drill` stands the same world up on an operator's
machine, and the benchmarks use it too. Why it is one package: a newcomer looks for "how do I get a cluster, a
cloud, a broken link" in one directory, and the layering stays checkable (the drill builds on the testbed, never
the other way round; nothing below the drill imports it).

- `world`: the drill's world on 127.0.0.1 (moto as AWS, the GCP and Azure fakes, three real replicas, and a
  configuration pointing at them): `Testbed`.
- `replicas`: real reference-replica processes (`ReplicaCluster`, `ReplicaSpec`, `Blackhole`, `free_port`).
- `fakes`: API-shaped GCP and Azure compute fakes the real SDKs talk to (`python -m orchestrator.testbed.fakes`).
- `etcd`: real etcd members on loopback (`EtcdCluster`).
- `proxy`: a fault-injecting TCP proxy per link (`ProxyHub`, `FaultProxy`).

Nothing is imported here, so taking one piece (say `etcd`) does not pull in moto or the replicas.
"""

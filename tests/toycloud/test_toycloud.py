"""A third-party cloud, added by following docs/extending.md literally, takes over a lost primary (issue 13).

The toy cloud is a package of its own under `src/`, written as "Add a cloud" and "Add a DNS router" say:
`toycloud/options.py` (step 1 of each), `toycloud/cloud.py` (step 2 of each) and, as pip would install it,
`toycloud-0.1.0.dist-info/entry_points.txt` (cloud step 3, router step 3). Nothing outside that directory knows
it: failover finds it through its entry points once `src/` is on the path (cloud step 4: PYTHONPATH for the CLI,
`sys.path` here), validates its options with its own model, and builds its adapter and router only when a toy site
or record is used. This file is cloud step 6.

The failover is real: three reference replicas as processes (the primary on GCP, served by the GCP fake; a standby
in each of two toy regions), the GCP data centre lost, and `failover check` run as cron runs it until the runbook
has promoted the toy replica, moved the toy DNS record and reopened trading.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config import load_config
from orchestrator.core.model import Phase, Role
from orchestrator.errors import ConfigError
from orchestrator.store import open_store
from orchestrator.testbed.fakes import FakeServer, GcpComputeFake
from orchestrator.testbed.replicas import ReplicaCluster, ReplicaSpec
from providers.catalog import PROVIDERS, ROUTERS

SRC = Path(__file__).resolve().parent / "src"  # what `pip install toycloud` would have put in site-packages
GCP_PROJECT, GCP_REGION, GCP_ZONE = "exchange-toy", "asia-east2", "asia-east2-a"
TOY_REGION, TOY_ZONE = "toy-east", "toy-east-a"
TOY_WEST, TOY_WEST_ZONE = "toy-west", "toy-west-a"
RECORD = "spot.toy.example"
FAILOVER_DEADLINE = 300.0  # cron runs on a busy machine: a deadline, never a count of runs
pytestmark = pytest.mark.timeout(FAILOVER_DEADLINE + 120)


@pytest.fixture
def toy_on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """extending.md, "Add a cloud" step 4 (install the package): here, its directory on sys.path, read afresh."""
    monkeypatch.syspath_prepend(str(SRC))
    PROVIDERS.refresh()
    ROUTERS.refresh()
    yield
    monkeypatch.undo()
    PROVIDERS.refresh()
    ROUTERS.refresh()


def toy_env(config: Path) -> dict[str, str]:
    """The environment of a CLI run that has the toy cloud installed (and no way to reach a real cloud)."""
    path = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PYTHONPATH": path, "FAILOVER_CONFIG": str(config), "NO_GCE_CHECK": "True",
            "GCE_METADATA_HOST": "127.0.0.1:9"}


def config(*, store: Path, state_dir: Path, gcp_url: str, cluster: ReplicaCluster) -> dict[str, Any]:
    """extending.md, "Add a cloud" step 5 and "Add a DNS router" step 3: a toy site and a toy record are written as
    any other, their own keys (`state_dir`) beside the common ones."""
    toy_port = cluster.url("spot-toy").rsplit(":", 1)[1]
    return {
        "version": 1,
        "store": f"sqlite:///{store}",
        "require_multi_cloud": True,  # gcp and toy: the toy cloud counts as a cloud of its own
        "control_token_file": str(cluster.token_file),
        "sites": {
            "gcp-hk": {"provider": "gcp", "region": GCP_REGION, "zones": [GCP_ZONE], "project": GCP_PROJECT,
                       "endpoint_url": gcp_url},
            "toy-hk": {"provider": "toy", "region": TOY_REGION, "zones": [TOY_ZONE], "state_dir": str(state_dir)},
            "toy-west": {"provider": "toy", "region": TOY_WEST, "zones": [TOY_WEST_ZONE], "state_dir": str(state_dir)},
        },
        "probes": {"interval": "400ms", "timeout": "300ms", "provider_interval": "400ms"},
        "policy": {"failure_threshold": 3, "quorum": 1},  # the orchestrator's own probes: no vantage daemons here
        "protection_window": {"duration": "12s"},
        "engines": {"spot": {
            "primary": "spot-gcp",
            "replicas": {
                "spot-gcp": {"site": "gcp-hk", "instance": "spot-engine-gcp", "control_url": cluster.url("spot-gcp")},
                # `localhost`, not 127.0.0.1: the DNS record then shows which replica it points at
                "spot-toy": {"site": "toy-hk", "instance": "spot-engine-toy",
                             "control_url": f"http://localhost:{toy_port}"},
                "spot-toy-west": {"site": "toy-west", "instance": "spot-engine-toy-west",
                                  "control_url": cluster.url("spot-toy-west")},
            },
            "dns": {"provider": "toy", "zone_id": "toy-zone", "record": RECORD, "state_dir": str(state_dir)},
        }},
        "notifications": {"stdout": False},
    }


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def sample_config(tmp_path: Path, **toy_site: Any) -> Path:
    """A configuration with a toy site, for validation only (nothing runs)."""
    return write(tmp_path / "failover.yaml", {
        "version": 1,
        "sites": {"gcp-hk": {"provider": "gcp", "region": GCP_REGION, "project": GCP_PROJECT},
                  "toy-hk": {"provider": "toy", "region": TOY_REGION, **toy_site}},
        "engines": {"spot": {"primary": "a", "replicas": {
            "a": {"site": "gcp-hk", "instance": "a", "control_url": "http://10.0.0.1:8700"},
            "b": {"site": "toy-hk", "instance": "b", "control_url": "http://10.0.0.2:8700"}}}},
        "policy": {"quorum": 1},
    })


def test_the_toy_cloud_registers_through_its_entry_points(toy_on_path: None, tmp_path: Path) -> None:
    """extending.md, "Add a cloud" step 3: the entry points name the options, and validation asks the registry."""
    assert "toy" in PROVIDERS.names() and "toy" in ROUTERS.names()
    site = load_config(sample_config(tmp_path, state_dir="/var/lib/toy")).topology.sites["toy-hk"]
    assert (site.provider, dict(site.options)) == ("toy", {"state_dir": "/var/lib/toy"})


def test_a_typo_in_a_toy_option_is_located_with_a_suggestion(toy_on_path: None, tmp_path: Path) -> None:
    """The shared code lists no toy option, yet the typo reads like any other: at its line, all at once."""
    path = sample_config(tmp_path, stat_dir="/var/lib/toy")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value).splitlines() == [
        f"{path}:7: sites.toy-hk.state_dir: required field is missing for provider toy",  # the site's line
        f"{path}:10: sites.toy-hk.stat_dir: unknown key (did you mean 'state_dir'?)",  # the key's own line
    ]


def test_without_the_package_the_toy_provider_is_unknown(tmp_path: Path) -> None:
    PROVIDERS.refresh()
    with pytest.raises(ConfigError, match=r"sites\.toy-hk\.provider: unknown provider 'toy'; known: aws, azure, gcp"):
        load_config(sample_config(tmp_path, state_dir="/var/lib/toy"))


def test_validation_imports_the_toy_options_but_not_its_adapter(tmp_path: Path) -> None:
    """extending.md's rule for step 1: `failover config validate` must stay fast, so the adapter loads only when
    built. Checked in a fresh process, as the CLI would run."""
    path = sample_config(tmp_path, state_dir="/var/lib/toy")
    code = ("import json, sys\nfrom orchestrator.config import load_config\n"
            f"load_config({str(path)!r})\n"
            "print(json.dumps([m for m in sys.modules if m.startswith(('toycloud', 'google', 'boto3', 'azure'))]))")
    answer = subprocess.run([sys.executable, "-c", code], env=toy_env(path), capture_output=True, text=True,
                            timeout=120, check=True)
    assert sorted(json.loads(answer.stdout)) == ["toycloud", "toycloud.options"]


@contextmanager
def clouds_and_replicas(tmp_path: Path) -> Iterator[tuple[Any, str, ReplicaCluster, GcpComputeFake]]:
    """The toy cloud (extending.md, "Add a cloud" step 5: seeded with the standbys' machines and the DNS record),
    the GCP fake with the primary's, and three reference replicas: the primary on GCP, a standby in each of two toy
    regions. Replication is synchronous across failure domains, so the new primary needs the other toy region's
    standby to commit anything: with two replicas, losing one leaves trading halted, as it should."""
    from toycloud.cloud import ToyCloud  # on sys.path through the toy_on_path fixture, as if installed

    toy = ToyCloud.seed(tmp_path / "toy-cloud", zones=[TOY_ZONE, TOY_WEST_ZONE],
                        instances={"spot-engine-toy": TOY_ZONE, "spot-engine-toy-west": TOY_WEST_ZONE})
    toy.change(lambda state: state["records"].__setitem__(f"toy-zone/{RECORD}", "127.0.0.1"))
    gcp = GcpComputeFake(GCP_PROJECT, GCP_REGION, (GCP_ZONE,))
    gcp.add_instance("spot-engine-gcp", GCP_ZONE)
    server = FakeServer(gcp).start()
    cluster = ReplicaCluster(tmp_path / "replicas", [ReplicaSpec("spot-gcp", "gcp", primary=True),
                                                     ReplicaSpec("spot-toy", TOY_REGION),
                                                     ReplicaSpec("spot-toy-west", TOY_WEST)], engine="spot")
    try:
        cluster.start()
        yield toy, server.url, cluster, gcp
    finally:
        cluster.close()
        server.stop()


@pytest.mark.slow
def test_a_lost_gcp_primary_fails_over_onto_the_toy_cloud(toy_on_path: None, tmp_path: Path) -> None:
    with clouds_and_replicas(tmp_path) as (toy, gcp_url, cluster, gcp):
        # cloud step 5 and router step 3: configure a toy site and a toy record, and check them with the CLI
        path = write(tmp_path / "failover.yaml", config(store=tmp_path / "state.db", state_dir=toy.state_dir,
                                                        gcp_url=gcp_url, cluster=cluster))
        validate = failover(path, "config", "validate")
        assert validate.returncode == 0, validate.stderr
        assert "3 sites on gcp, toy" in validate.stdout
        assert check(path)["message"] == "all healthy"
        assert toy.get_record("toy-zone", RECORD) == "127.0.0.1"  # clients go to the GCP primary

        # cloud step 6: a real failover onto the new cloud
        cluster.kill("spot-gcp")  # the GCP data centre is lost: its replica is gone, GCP's API reports the zone down
        gcp.set_zone(GCP_ZONE, "DOWN")
        began = time.monotonic()
        while not closed(path):
            assert time.monotonic() - began < FAILOVER_DEADLINE, f"no failover within {FAILOVER_DEADLINE:g}s"
            check(path)
            time.sleep(0.2)  # cron's pace, compressed

        with cluster.client() as client:
            new = client.status(cluster.replica("spot-toy"))
        assert (new.role, new.phase) == (Role.PRIMARY, Phase.OPEN)
        assert new.epoch > 0
        # router step 3's check: the toy router moved the record; and the toy adapter was asked through the toy API,
        # by the CLI's processes, which found it through its entry points
        assert toy.get_record("toy-zone", RECORD) == "localhost"
        calls = toy.calls()
        assert "describe_instances" in calls and f"put_record {RECORD} localhost" in calls
        done = journal_steps(path)
        assert {"fence_old_primary", "promote", "switch_traffic", "reopen"} <= set(done), done
        assert done.index("promote") < done.index("switch_traffic") < done.index("reopen"), done


def failover(config_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], env=toy_env(config_path),
                          capture_output=True, text=True, timeout=180, check=False)


def check(config_path: Path) -> dict[str, Any]:
    """One cron run: `failover check`, its JSON result."""
    run = failover(config_path, "check", "--output", "json")
    assert run.stdout, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def closed(config_path: Path) -> bool:
    with open_store(load_config(config_path).store_url) as store:
        incidents = store.incidents()
    return bool(incidents) and incidents[0].status.value == "closed"


def journal_steps(config_path: Path) -> list[str]:
    """The runbook's steps as the store journaled them done, in order."""
    with open_store(load_config(config_path).store_url) as store:
        incident = store.incidents()[0]
        entries = store.journal(incident.id)
    return list(dict.fromkeys(entry.step for entry in entries if entry.state.value == "done"))


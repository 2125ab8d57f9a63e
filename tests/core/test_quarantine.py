"""The quarantine rules, driven like the runbook they check: a data centre goes dark, comes back, fails again,
and is trusted again only after two unbroken healthy hours (or an operator's release)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from orchestrator.core.errors import ConfigError
from orchestrator.core.model import Engine, Replica
from orchestrator.core.quarantine import (
    DEFAULT_QUARANTINE,
    Quarantine,
    may_host,
    observe,
    quarantined_replicas,
    quarantined_sites,
    release,
    without_quarantined,
)

H = 3600.0
DOWN, HEALTHY, UNKNOWN = ("down", "3 of 3 probes failed"), ("healthy", ""), ("unknown", "too few sources")
ENGINE = Engine("spot", "spot-aws", tuple(
    Replica(name, "spot", site, f"i-{name}", f"http://127.0.0.1:{port}")
    for name, site, port in (("spot-aws", "aws-hk", 1), ("spot-gcp", "gcp-hk", 2), ("spot-azure", "az-sg", 3))))


@dataclass(frozen=True)
class Ranked:
    replica: str
    eligible: bool = True


def test_a_site_that_went_down_is_quarantined_until_two_unbroken_healthy_hours() -> None:
    book = observe({}, {"aws-hk": DOWN, "gcp-hk": HEALTHY}, 0.0, DEFAULT_QUARANTINE)
    assert list(book) == ["aws-hk"] and book["aws-hk"].ends_at(DEFAULT_QUARANTINE) is None
    book = observe(book, {"aws-hk": DOWN}, 60.0, DEFAULT_QUARANTINE)
    assert book["aws-hk"] == Quarantine("aws-hk", 0.0, None, 0, "3 of 3 probes failed")  # same spell
    book = observe(book, {"aws-hk": HEALTHY}, 600.0, DEFAULT_QUARANTINE)
    assert book["aws-hk"].ends_at(DEFAULT_QUARANTINE) == 600.0 + 2 * H
    book = observe(book, {"aws-hk": HEALTHY}, 600.0 + 2 * H - 1, DEFAULT_QUARANTINE)
    assert quarantined_sites(book, 600.0 + 2 * H - 1, DEFAULT_QUARANTINE) == {"aws-hk"}
    book = observe(book, {"aws-hk": HEALTHY}, 600.0 + 2 * H, DEFAULT_QUARANTINE)
    assert book == {}


def test_a_relapse_restarts_the_clock_and_is_counted() -> None:
    book = observe({}, {"aws-hk": DOWN}, 0.0, DEFAULT_QUARANTINE)
    book = observe(book, {"aws-hk": HEALTHY}, 100.0, DEFAULT_QUARANTINE)
    book = observe(book, {"aws-hk": ("down", "zone impaired")}, 100.0 + 1.5 * H, DEFAULT_QUARANTINE)
    assert (book["aws-hk"].relapses, book["aws-hk"].healthy_since, book["aws-hk"].reason) == (1, None,
                                                                                             "zone impaired")
    book = observe(book, {"aws-hk": HEALTHY}, 2 * H, DEFAULT_QUARANTINE)
    assert book["aws-hk"].ends_at(DEFAULT_QUARANTINE) == 4 * H  # two hours from the second recovery
    assert not may_host("aws-hk", book, 3 * H, DEFAULT_QUARANTINE)
    assert may_host("aws-hk", book, 4 * H, DEFAULT_QUARANTINE)  # the book read late still judges by the time


def test_a_site_we_cannot_see_well_stops_the_clock_without_a_relapse() -> None:
    book = observe({}, {"aws-hk": DOWN}, 0.0, 10.0)
    book = observe(book, {"aws-hk": HEALTHY}, 1.0, 10.0)
    book = observe(book, {"aws-hk": UNKNOWN}, 5.0, 10.0)
    assert (book["aws-hk"].healthy_since, book["aws-hk"].relapses) == (None, 0)
    book = observe(book, {"aws-hk": HEALTHY}, 6.0, 10.0)
    assert book["aws-hk"].ends_at(10.0) == 16.0
    assert observe(book, {}, 100.0, 10.0) == book  # no verdict: left as it is


def test_a_flapping_site_enters_quarantine_and_a_suspect_one_that_never_went_down_does_not() -> None:
    book = observe({}, {"aws-hk": ("flapping", "3 downs in 30m"), "gcp-hk": ("suspect", "1 source")}, 0.0, H)
    assert set(book) == {"aws-hk"}


def test_release_ends_one_quarantine_and_refuses_a_site_not_in_quarantine() -> None:
    book = observe({}, {"aws-hk": DOWN, "az-sg": DOWN}, 0.0, H)
    after, ended = release(book, "aws-hk")
    assert set(after) == {"az-sg"} and ended.site == "aws-hk" and set(book) == {"aws-hk", "az-sg"}
    with pytest.raises(ConfigError, match=r"^site gcp-hk: not in quarantine"):
        release(book, "gcp-hk")


def test_target_selection_keeps_the_order_and_drops_quarantined_sites() -> None:
    book = observe({}, {"gcp-hk": DOWN}, 0.0, H)
    ranked = (Ranked("spot-gcp"), Ranked("spot-azure"))
    assert without_quarantined(ranked, ENGINE, book, 10.0, H) == (Ranked("spot-azure"),)
    assert quarantined_replicas(ENGINE, book, 10.0, H) == {"spot-gcp"}
    book = observe(book, {"gcp-hk": HEALTHY}, 20.0, H)
    assert without_quarantined(ranked, ENGINE, book, 20.0 + H, H) == ranked


def test_the_book_round_trips_through_json() -> None:
    quarantine = Quarantine("aws-hk", 1.5, 2.5, 3, "why")
    assert Quarantine.from_json(quarantine.to_json()) == quarantine

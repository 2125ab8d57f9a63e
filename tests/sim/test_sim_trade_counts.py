"""Trades are counted against what the exchange announced: `protection until T` promises no matching until T. A
trade after T, once the replica has reopened but before the orchestrator has confirmed and announced it (a status
read later), is outside the announced window; one before T is a broken promise, and one by a replica whose own phase
forbids matching always is."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

from orchestrator.core.model import Phase
from orchestrator.sim.flow import EngineFlow, count_trades


def flow() -> Any:
    return SimpleNamespace(trades=0, trades_in_protection=0, trades_while_halted=0, trades_off_phase=0)


def test_a_trade_after_the_announced_end_of_the_window_is_not_inside_it() -> None:
    counted = flow()
    count_trades(cast(EngineFlow, counted), Phase.PROTECTION, True, 2, until=100.0, now=100.5)
    assert (counted.trades, counted.trades_in_protection, counted.trades_off_phase) == (2, 0, 0)


def test_a_trade_inside_the_announced_window_or_off_phase_is_counted() -> None:
    counted = flow()
    count_trades(cast(EngineFlow, counted), Phase.PROTECTION, True, 1, until=100.0, now=99.0)
    count_trades(cast(EngineFlow, counted), Phase.PROTECTION, True, 1, until=None, now=500.0)  # no end announced
    count_trades(cast(EngineFlow, counted), Phase.HALTED, False, 3, now=10.0)
    assert (counted.trades, counted.trades_in_protection, counted.trades_while_halted,
            counted.trades_off_phase) == (5, 2, 3, 3)

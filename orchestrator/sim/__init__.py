"""The deterministic outage simulator: a simulated world behind the production interfaces, on a virtual clock.

`run_scenario` / `simulate` run a scenario file (docs/design.md §9) through the real controller and runbook and measure
what clients experienced; `render_timeline` prints it. See runner.py for how the pieces fit.
"""

from orchestrator.sim.metrics import SimResult
from orchestrator.sim.policies import PRESETS, apply_policy
from orchestrator.sim.runner import Simulation, render_timeline, run_scenario, simulate
from orchestrator.sim.scenario import Scenario, load_scenario

__all__ = [
    "PRESETS",
    "Scenario",
    "SimResult",
    "Simulation",
    "apply_policy",
    "load_scenario",
    "render_timeline",
    "run_scenario",
    "simulate",
]

"""`failover simulate SCENARIO`: a scenario on a virtual clock through the real controller and runbook."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.args import int_between
from orchestrator.cli.common import Output, OutputOption, console, print_json
from orchestrator.errors import EXIT_ACTED


def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario file (configs/scenarios/*.yaml).")],
    seed: Annotated[int, typer.Option("--seed", help="Random seed, 0 or more: the same seed gives the same run.")]
    = 0,
    policy: Annotated[str, typer.Option("--policy", help="default, route53, route53-fast, patroni or naive.")]
    = "default",
    instant: Annotated[bool, typer.Option("--instant", help="Every engine and cloud call answers at once (the "
                                          "simulator before call latencies, docs/simulated-latency.md).")] = False,
    output: OutputOption = Output.TABLE,
) -> None:
    """Run SCENARIO on a virtual clock; print the timeline and the figures (the failover's own clock: each engine
    and cloud call takes its simulated time, so halt, new primary and traffic switched are what production would
    see). Exit 1 if an expectation fails, 2 on a bad scenario file."""
    int_between(seed, "--seed", low=0, high=2**63 - 1)
    from orchestrator.sim import render_timeline
    from orchestrator.sim import simulate as run

    result = run(scenario, seed=seed, policy=policy, instant=instant)
    if output is Output.JSON:
        print_json(result)
    else:
        console.print(render_timeline(result), markup=False)
    if not all(result["expectations"].values()):
        raise typer.Exit(EXIT_ACTED)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)

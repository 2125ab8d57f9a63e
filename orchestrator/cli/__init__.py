"""The `failover` command line: typer commands that call drivers and format their results."""

"""`pinfeatures evaluate` (placeholder until its issue lands)."""

import click


@click.command()
def evaluate() -> None:
    """Not implemented yet."""
    raise click.UsageError("'evaluate' is not implemented yet")

"""`pinfeatures pairs` (placeholder until its issue lands)."""

import click


@click.command()
def pairs() -> None:
    """Not implemented yet."""
    raise click.UsageError("'pairs' is not implemented yet")

"""`pinfeatures caption` (placeholder until its issue lands)."""

import click


@click.command()
def caption() -> None:
    """Not implemented yet."""
    raise click.UsageError("'caption' is not implemented yet")

"""The `pinfeatures` command line: a thin layer of click commands over the stage functions.

Each command lives in its own module here; this one only groups them and turns a
PinfeaturesError into a one-line reason and exit status 2.
"""

from __future__ import annotations

import sys

import click

from pinfeatures import __version__
from pinfeatures.errors import PinfeaturesError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # noqa: D401 - click API
        try:
            return super().invoke(ctx)
        except PinfeaturesError as exc:
            click.echo(f"pinfeatures: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="pinfeatures")
def cli() -> None:
    """Build the text a search-relevance model reads for each Pin."""


from pinfeatures.cli import assess_cmd, build_cmd, caption_cmd, evaluate_cmd, pairs_cmd, report_cmd  # noqa: E402


def _register() -> None:
    cli.add_command(build_cmd.build)
    cli.add_command(build_cmd.variants)
    cli.add_command(caption_cmd.caption)
    cli.add_command(evaluate_cmd.evaluate)
    cli.add_command(pairs_cmd.pairs)
    cli.add_command(assess_cmd.assess)
    cli.add_command(report_cmd.report)


_register()

SETTINGS = {
    "build": build_cmd.build_settings,
    "caption": caption_cmd.caption_settings,
    "evaluate": evaluate_cmd.evaluate_settings,
    "pairs": pairs_cmd.pairs_settings,
    "assess": assess_cmd.assess_settings,
    "report": report_cmd.report_settings,
}
"""Each command's settings maker: (config, **flags) -> {table: settings}; flags are its click params."""


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="pinfeatures")

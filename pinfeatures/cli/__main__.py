"""`python -m pinfeatures.cli ...` runs the CLI."""

from pinfeatures.cli import main

main()

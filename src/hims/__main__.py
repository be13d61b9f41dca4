"""`python -m hims` runs the CLI."""

from hims.cli import main

main()

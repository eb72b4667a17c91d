"""``python -m collagekit`` runs the CLI."""

from collagekit.cli import main

main()

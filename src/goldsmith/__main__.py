"""``python -m goldsmith`` is the ``goldsmith`` command."""

from goldsmith.cli.main import main

main()

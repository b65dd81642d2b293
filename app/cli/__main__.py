"""``python -m taas.app.cli``: the ``taas`` command."""

from taas.app.cli.main import main

main()

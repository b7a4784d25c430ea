"""``python -m radraft_cli``: the ``radraft`` command, as the console script runs it."""

from radraft_cli.main import main

main()

"""``python -m vsremaster`` = the ``vsremaster`` command."""

from .cli import main

main()

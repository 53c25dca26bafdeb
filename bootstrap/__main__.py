"""``python -m bootstrap`` runs the ``lwm2m-bootstrap`` command."""

from .cli import main

main()

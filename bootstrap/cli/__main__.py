"""``python -m bootstrap.cli`` runs the ``lwm2m-bootstrap`` command (as ``python -m bootstrap`` does)."""

from . import main

main()

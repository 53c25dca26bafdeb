"""LwM2M bootstrap server with EST-coaps certificate enrollment through pluggable CAs.

Layout: protocol cores (``est``, ``policy``, ``lwm2m``) are sans-I/O; ``enrollment`` runs the
signing path; ``store`` holds Postgres access; ``coap`` and ``admin`` are thin adapters.
"""

__version__ = "0.1.0"

"""Device-facing CoAP adapters: aiocoap resources and transports around the protocol cores."""

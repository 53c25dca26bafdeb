"""Simulated device fleet: sans-I/O devices, their CoAP client, the fleet runner and its report."""

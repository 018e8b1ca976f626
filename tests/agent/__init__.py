"""Tests of the agent core (host.agent): a package so its conftest never shadows tests/conftest.py."""

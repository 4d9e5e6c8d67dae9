"""Fixtures for erasure and evidence: the engine tests' workspace and destination."""

from tests.engine.conftest import export_env  # noqa: F401  (the `export_env` fixture)

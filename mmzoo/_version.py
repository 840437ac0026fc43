"""The one version source: ``pyproject.toml`` and every module that records the version read it here."""

__version__ = "0.2.0"

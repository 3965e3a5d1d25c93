"""Which FreezeLab this is: the CLI's --version and an exported model's manifest say the same."""

from importlib import metadata


def version() -> str:
    """The installed FreezeLab's version (pyproject's, when run from a checkout that was never installed)."""
    try:
        return metadata.version("freezelab")
    except metadata.PackageNotFoundError:
        return "0.1.0 (not installed)"

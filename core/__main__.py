"""`python -m core`: the command line (core/cli)."""

from core.cli import console, main

__all__ = ["console", "main"]  # console: the entry point that editable installs made before core.cli still name

if __name__ == "__main__":
    raise SystemExit(main())

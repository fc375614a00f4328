"""``python -m reprokit``: the same CLI as the ``reprokit`` command."""

from reprokit._cli import main

if __name__ == "__main__":
    raise SystemExit(main())

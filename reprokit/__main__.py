"""``python -m reprokit``: the same CLI as the ``reprokit`` command."""

from reprokit._cli.app import main

if __name__ == "__main__":
    raise SystemExit(main())

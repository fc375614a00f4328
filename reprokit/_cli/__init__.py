from reprokit._cli.app import main

__all__ = ["main"]

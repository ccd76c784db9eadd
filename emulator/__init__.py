"""Local Azure Resource Manager emulator for poolsync (see docs/emulator.md)."""

from emulator.app import Emulator
from emulator.throttling import BucketSettings

__all__ = ["BucketSettings", "Emulator"]

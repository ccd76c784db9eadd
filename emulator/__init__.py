"""Local Azure Resource Manager emulator for poolsync (see docs/emulator.md)."""

from emulator.app import Emulator
from emulator.delivery import AZURE_DELIVERY, DEFAULT_DELIVERY, DeliveryPolicy
from emulator.throttling import BucketSettings

__all__ = ["AZURE_DELIVERY", "DEFAULT_DELIVERY", "BucketSettings", "DeliveryPolicy", "Emulator"]

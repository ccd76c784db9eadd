"""tests/reliability runs on the emulator's `azure` profile: Azure's throttle buckets per subscription and
principal, the four busy-load-balancer answers (409, 429, accept-then-fail, cancel-earlier), Failed
provisioning states. Long-running operations are shortened (helpers.FAST_OPERATION_SECONDS) so the suite
fits in CI; the one scenario that needs Azure's 5-10 s operations sets them itself."""

from __future__ import annotations

import pytest

from emulator import Emulator
from tests.reliability.helpers import use_azure_profile


@pytest.fixture
def arm(arm: Emulator) -> Emulator:
    use_azure_profile(arm)
    return arm

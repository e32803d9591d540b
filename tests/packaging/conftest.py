"""The packaging tests' requirements, checked before their module-scoped fixtures build the
package (the function-scoped guard in tests/conftest.py would come too late)."""

from __future__ import annotations

import pytest

from tests.conftest import packaging_unavailable_reason, skip_or_fail


@pytest.fixture(scope="package", autouse=True)
def _packaging_guard() -> None:
    reason = packaging_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)

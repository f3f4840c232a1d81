"""Request bodies bounded per endpoint before they are read (policyhub/bodies.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client


@pytest.mark.django_db
def test_a_form_post_past_its_bound_is_answered_413_before_the_view(settings: Any) -> None:
    body = "x" * (settings.FORM_BODY_MAX_BYTES + 1)
    response = Client().post("/accounts/login/", data=body, content_type="text/plain")
    assert response.status_code == 413
    assert response.json() == {
        "detail": f"the request body may be at most {settings.FORM_BODY_MAX_BYTES:,} bytes"
    }
    # At the bound it reaches the view (which answers the form as it would any other post).
    at_bound = Client().post(
        "/accounts/login/", data="x" * settings.FORM_BODY_MAX_BYTES, content_type="text/plain"
    )
    assert at_bound.status_code != 413


@pytest.mark.django_db
def test_an_unreadable_length_counts_as_too_large() -> None:
    response = Client().post(
        "/api/v1/device/enroll", data=b"{}", content_type="application/json", CONTENT_LENGTH="x"
    )
    assert response.status_code == 413

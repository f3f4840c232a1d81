"""Run the test OpenID Connect provider on loopback, with one client and one person.

    python -m tests.browser.oidc_provider.serve --port P --redirect-uri URI \
        --client-id ID --client-secret SECRET --user EMAIL --password PASSWORD
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in (
        "--port",
        "--redirect-uri",
        "--client-id",
        "--client-secret",
        "--user",
        "--password",
    ):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.environ["OIDC_PROVIDER_KEY"] = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    os.environ["OIDC_PROVIDER_DB"] = str(Path(tempfile.mkdtemp()) / "provider.sqlite3")
    os.environ["DJANGO_SETTINGS_MODULE"] = "tests.browser.oidc_provider.settings"
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from oauth2_provider.models import get_application_model

    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user(args.user, args.user, args.password)
    get_application_model().objects.create(
        name="PolicyHub",
        client_id=args.client_id,
        client_secret=args.client_secret,
        client_type="confidential",
        authorization_grant_type="authorization-code",
        redirect_uris=args.redirect_uri,
        algorithm="RS256",
        skip_authorization=True,
        user=user,
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    call_command("runserver", f"127.0.0.1:{args.port}", use_reloader=False, use_threading=True)


if __name__ == "__main__":
    main()

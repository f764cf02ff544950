"""One redaction function, every encoding of a secret, every platform's way of sending it."""

from __future__ import annotations

import base64
import json
import random
import traceback
from urllib.parse import quote, quote_plus

import pytest

from destinations.errors import AuthError
from destinations.google import GoogleAudienceClient
from destinations.mailchimp import MailchimpClient
from destinations.meta import MetaAudienceClient
from destinations.redaction import leaked_forms, redact, secret_forms
from tests.destinations.test_client_http import ScriptedAdapter

#: (platform, secret, how the platform's client sends it)
SECRETS = [
    ("meta", "EAABsbCS1iHgBAKZCZBmock0SecretZBZAtokenZDZD", "bearer"),
    ("mailchimp", "3f9c2b1e0d8a7c6b5a4f3e2d1c0b9a8f-us21", "basic"),
    ("mailchimp", "k3y/with+odd=chars&more", "basic"),
    ("google", "ya29.a0AfB_byCmockOAuthSecret-Token_0123456789", "bearer"),
]


def encoded(secret: str) -> dict[str, str]:
    """Every encoding a text may carry the secret in."""
    basic = base64.b64encode(f"anystring:{secret}".encode()).decode()
    return {
        "literal": secret,
        "basic": basic,
        "basic unpadded": basic.rstrip("="),
        "basic other user": base64.b64encode(f"someone.else:{secret}".encode()).decode(),
        "basic url-safe": base64.urlsafe_b64encode(f"u:{secret}".encode()).decode(),
        "base64 of token": base64.b64encode(secret.encode()).decode(),
        "percent-encoded": quote(secret, safe=""),
        "quote_plus": quote_plus(secret),
        "double percent-encoded": quote(quote(secret, safe=""), safe=""),
        "in a query string": f"https://graph.example.com/v19.0/1/users?access_token={secret}&x=1",
        "json-escaped": json.dumps({"t": secret})[6:-2],
        "authorization header": f"Authorization: Bearer {secret}",
    }


@pytest.mark.parametrize(("platform", "secret", "scheme"), SECRETS)
def test_every_encoding_of_every_platform_secret_is_blanked(platform, secret, scheme) -> None:
    for name, form in encoded(secret).items():
        text = f"{platform} said: request refused ({form}) for bob@example.com"
        out = redact(text, [secret])
        assert secret not in out and form not in out, (name, out)
        assert leaked_forms(out, [secret]) == [], name
        assert "bob@example.com" not in out


def test_base64_with_any_prefix_and_suffix_is_blanked() -> None:
    secret = "3f9c2b1e0d8a7c6b5a4f3e2d1c0b9a8f-us21"
    rnd = random.Random(20261203)
    for _ in range(300):
        user = "".join(rnd.choice("abcxyz:_-.") for _ in range(rnd.randint(0, 9)))
        tail = "".join(rnd.choice("pqr") for _ in range(rnd.randint(0, 5)))
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            blob = encode(f"{user}{secret}{tail}".encode()).decode()
            out = redact(f"echo {blob} end", [secret])
            assert blob not in out and blob.rstrip("=") not in out


def test_ordinary_text_and_hashes_are_left_alone() -> None:
    text = "Audience Size too low (code 2650); 3 of 5 rows; " + "ab" * 32
    assert redact(text, ["EAABsbCS1iHgBAKZCZBmock0SecretZBZAtokenZDZD"]) == text
    assert secret_forms("") == set()


def scripted(client, body: bytes, status: int = 403) -> ScriptedAdapter:
    adapter = ScriptedAdapter([(status, {"Content-Type": "application/json"}, body)])
    client._http.session.mount("http://", adapter)
    return adapter


@pytest.mark.parametrize(("platform", "secret", "scheme"), SECRETS)
def test_a_client_error_never_carries_an_echoed_secret(platform, secret, scheme) -> None:
    echoes = " ".join(encoded(secret).values())
    if platform == "meta":
        client = MetaAudienceClient("meta_ads", "http://x/meta", secret)
        doc: dict = {"error": {"code": 200, "message": f"denied: {echoes}"}}
    elif platform == "google":
        client = GoogleAudienceClient("google_ads", "http://x/google", secret, account_id="123")
        doc = {"error": {"code": 403, "status": "PERMISSION_DENIED", "message": f"no: {echoes}"}}
    else:
        client = MailchimpClient("mailchimp", "http://x/mailchimp/3.0", secret)
        doc = {"title": "Forbidden", "status": 403, "detail": f"denied: {echoes}"}
    body = json.dumps(doc).encode()
    adapter = scripted(client, body)
    with pytest.raises(AuthError) as info:
        client.member_count("aud1")
    assert adapter.requests  # the request was sent with the secret, as the platform needs
    text = "".join(traceback.format_exception(info.value))
    assert leaked_forms(text, [secret]) == []
    for name, form in encoded(secret).items():
        assert form not in text, name

"""Console security over HTTP: sign-in, sessions, CSRF, and other accounts' images.

Every test drives the real server's /console with httpx, as a browser (forms, cookies) or
through the JSON twins.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import httpx
import pytest
from console_helpers import ConsoleClient, Images, flash_text, new_account

from harness import Creds, Server

pytestmark = pytest.mark.integration

FAILED = "Sign-in failed. Check the credentials and try again."


def _signin_page(client: ConsoleClient, name: str, secret: str) -> httpx.Response:
    """Sign in through the HTML form (no JSON), returning the answer to the POST."""
    page = client.http.get("/console/signin")
    token = page.text.split('name="signin_token" value="', 1)[1].split('"', 1)[0]
    form = {"signin_token": token, "name": name, "secret": secret}
    return client.http.post("/console/signin", data=form)


def test_unsigned_pages_redirect_to_signin_and_json_says_401(console: ConsoleClient) -> None:
    page = console.http.get("/console/images")
    assert page.status_code == 303
    assert page.headers["location"] == "/console/signin?next=/console/images"
    twin = console.get_json("/console/images")
    assert twin.status_code == 401
    assert twin.json()["Error"]["Code"] == "AuthFailure"


def test_sign_in_with_access_key_sets_a_strict_http_only_cookie(
    server: Server, console: ConsoleClient, account: Creds
) -> None:
    response = _signin_page(console, account.access_key_id, account.secret_access_key)
    assert response.status_code == 303
    assert response.headers["location"] == "/console/images"
    cookie = next(c for c in response.headers.get_list("set-cookie") if "gs_session=" in c)
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    page = console.http.get("/console/images")
    assert page.status_code == 200
    assert account.account_id in page.text


def test_wrong_secret_and_wrong_key_id_get_the_same_answer(
    console: ConsoleClient, account: Creds
) -> None:
    wrong_secret = _signin_page(console, account.access_key_id, "x" * 40)
    wrong_key = _signin_page(console, "AKIA" + "Z" * 16, account.secret_access_key)
    wrong_both = _signin_page(console, "nobody-here", "whatever-secret")
    for response in (wrong_secret, wrong_key, wrong_both):
        assert response.status_code == 401
        assert flash_text(response) == FAILED
        assert "gs_session=" not in response.headers.get("set-cookie", "")
    # Nothing in the JSON twin tells the cases apart either.
    answers = [
        console.sign_in(account.access_key_id, "y" * 40).json()["Error"],
        console.sign_in("AKIA" + "Q" * 16, account.secret_access_key).json()["Error"],
    ]
    assert answers[0] == answers[1] == {"Code": "AuthFailure", "Message": FAILED}


def test_sign_in_without_the_signin_token_is_forbidden(
    console: ConsoleClient, account: Creds
) -> None:
    form = {"name": account.access_key_id, "secret": account.secret_access_key}
    response = console.http.post("/console/signin", data=form)
    assert response.status_code == 403
    assert "gs_session=" not in response.headers.get("set-cookie", "")


def test_deactivated_key_ends_the_session(server: Server, console: ConsoleClient) -> None:
    creds = new_account(server)
    console.sign_in_as(creds)
    assert console.get_json("/console/keypairs").status_code == 200
    server.cli("accounts", "keys", "deactivate", creds.access_key_id)
    assert console.get_json("/console/keypairs").status_code == 401


def test_console_password_signs_in_by_account_id_or_alias(server: Server) -> None:
    creds = new_account(server, alias="console-pw-user")
    cmd = [sys.executable, "-m", "goldsmith", "accounts", "console-password", creds.account_id]
    cmd += ["--password-stdin", "--data-dir", str(server.data_dir)]
    subprocess.run(cmd, input="correct horse battery\n", text=True, check=True, timeout=60)
    client = ConsoleClient(server)
    try:
        assert client.sign_in(creds.account_id, "correct horse").status_code == 401
        assert client.sign_in("console-pw-user", "correct horse battery").status_code == 200
        assert client.get_json("/console/keypairs").status_code == 200
        ok = client.sign_in(creds.account_id, "correct horse battery")
        assert ok.json()["Account"] == creds.account_id
        # Changing the password ends sessions opened with the old one.
        subprocess.run(cmd, input="another long password\n", text=True, check=True, timeout=60)
        assert client.get_json("/console/keypairs").status_code == 401
    finally:
        client.close()


def test_short_console_password_is_refused(server: Server, account: Creds) -> None:
    cmd = [sys.executable, "-m", "goldsmith", "accounts", "console-password", account.account_id]
    cmd += ["--password-stdin", "--data-dir", str(server.data_dir)]
    done = subprocess.run(
        cmd, input="short\n", text=True, timeout=60, capture_output=True, check=False
    )
    assert done.returncode != 0
    assert "at least 8" in done.stderr + done.stdout


@pytest.mark.parametrize(
    "path",
    ["/console/keypairs/create", "/console/signout", "/console/region", "/console/images/x/tags"],
)
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_posts_without_the_right_csrf_token_are_forbidden(
    console: ConsoleClient, account: Creds, path: str, token: str | None
) -> None:
    console.sign_in_as(account)
    form = {"name": "csrf-key", "region": "us-west-2", "key": "k"}
    if token is not None:
        form["csrf_token"] = token
    response = console.post(path, form, csrf=False)
    assert response.status_code == 403
    # Nothing happened: no key pair, still signed in, still in the same region.
    pairs = console.get_json("/console/keypairs").json()["KeyPairs"]
    assert [p["KeyName"] for p in pairs] == []
    assert console.get_json("/console/images").json()["Region"] == "us-east-1"


def test_csrf_header_is_accepted_for_json_clients(console: ConsoleClient, account: Creds) -> None:
    console.sign_in_as(account)
    response = console.http.post(
        "/console/keypairs/create",
        data={"name": "via-header"},
        headers={"Accept": "application/json", "X-CSRF-Token": console.csrf},
    )
    assert response.status_code == 200
    assert response.json()["KeyName"] == "via-header"


def test_sign_out_revokes_the_session_cookie(server: Server, account: Creds) -> None:
    client = ConsoleClient(server).sign_in_as(account)
    try:
        stolen = client.http.cookies["gs_session"]
        assert client.post("/console/signout", {}).status_code == 200
        replay = httpx.get(
            f"{server.endpoint}/console/keypairs?format=json", cookies={"gs_session": stolen}
        )
        assert replay.status_code == 401
    finally:
        client.close()


def test_forged_or_tampered_cookies_are_no_session(server: Server, console: ConsoleClient) -> None:
    console.sign_in_as(new_account(server))
    payload, mac = console.http.cookies["gs_session"].split(".")
    for value in (f"{payload}.{'A' * len(mac)}", f"{payload[:-2]}xx.{mac}", "garbage"):
        response = httpx.get(
            f"{server.endpoint}/console/images?format=json", cookies={"gs_session": value}
        )
        assert response.status_code == 401


def test_region_selector_changes_the_region_of_every_call(
    console: ConsoleClient, account: Creds
) -> None:
    console.sign_in_as(account)
    console.post("/console/keypairs/create", {"name": "east-key"})
    assert console.post("/console/region", {"region": "eu-west-1"}).json() == {
        "Region": "eu-west-1"
    }
    assert console.get_json("/console/images").json()["Region"] == "eu-west-1"
    assert console.get_json("/console/keypairs").json()["KeyPairs"] == []
    bad = console.post_html("/console/region", {"region": "mars-north-1"})
    assert bad.status_code == 303
    assert console.get_json("/console/images").json()["Region"] == "eu-west-1"


def test_next_parameter_never_leaves_the_console(console: ConsoleClient, account: Creds) -> None:
    token = console.signin_token()
    form = {
        "signin_token": token,
        "name": account.access_key_id,
        "secret": account.secret_access_key,
        "next": "//evil.example/console/x",
    }
    response = console.http.post("/console/signin", data=form)
    assert response.headers["location"] == "/console/images"


def test_pages_carry_security_headers(console: ConsoleClient, account: Creds) -> None:
    console.sign_in_as(account)
    for response in (console.http.get("/console/images"), console.get_json("/console/images")):
        assert response.status_code == 200
        csp = response.headers["content-security-policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_another_accounts_private_image_is_neither_shown_nor_actionable(
    server: Server, console_factory: Callable[[Creds], ConsoleClient]
) -> None:
    owner, stranger = new_account(server), new_account(server)
    image_id = Images(server, owner).register("private-of-owner")
    them = console_factory(stranger)
    for scope in ("owned", "shared", "public"):
        listed = them.get_json("/console/images", scope=scope).json()["Images"]
        assert image_id not in [i["ImageId"] for i in listed]
    detail = them.get_json(f"/console/images/{image_id}")
    assert detail.status_code == 400
    assert detail.json()["Error"]["Code"] == "InvalidAMIID.NotFound"
    crafted = {
        "deregister": {"delete_snapshots": "1"},
        "permissions": {"op": "public"},
        "tags": {"key": "pwned", "value": "yes"},
        "disable": {},
        "deprecate": {},
    }
    for verb, form in crafted.items():
        response = them.post(f"/console/images/{image_id}/{verb}", form)
        assert response.status_code == 400, (verb, response.text)
        assert response.json()["Error"]["Code"] == "InvalidAMIID.NotFound"
    # The owner's image is untouched.
    mine = console_factory(owner).get_json(f"/console/images/{image_id}").json()["Image"]
    assert mine["State"] == "available"
    assert mine["Public"] is False
    assert not mine.get("Tags")
    assert not mine.get("DeprecationTime")


def test_unknown_pages_are_the_consoles_own_404(console: ConsoleClient, account: Creds) -> None:
    assert console.http.get("/console/nope").status_code == 303  # sign in first
    console.sign_in_as(account)
    twin = console.get_json("/console/no/such/page")
    assert twin.status_code == 404
    assert twin.json()["Error"]["Code"] == "NotFound"
    page = console.http.get("/console/no/such/page")
    assert page.status_code == 404
    assert "There is no console page /console/no/such/page." in flash_text(page)
    script = console.http.get("/console/static/console.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_repeated_failures_make_the_name_wait(console: ConsoleClient, account: Creds) -> None:
    for _ in range(10):
        assert console.sign_in(account.access_key_id, "w" * 40).status_code == 401
    blocked = console.sign_in(account.access_key_id, account.secret_access_key)
    assert blocked.status_code == 429
    assert blocked.json()["Error"]["Code"] == "Throttling"
    # Another name is not affected.
    other = new_account(console.server)
    assert console.sign_in(other.access_key_id, other.secret_access_key).status_code == 200

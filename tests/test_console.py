"""The operator console (``/console/``) end to end: Debian's headless Chromium driven by Playwright
against the running server (real Postgres), the real ``cfssl serve`` and simulated devices enrolling
over CoAP.

Screenshots of every page go to ``$CONSOLE_SCREENSHOTS_DIR`` or a pytest temporary directory; the
path is printed in the test output.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio
from aiocoap import Code, Message
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7
from playwright.async_api import Browser, Page, async_playwright, expect

from bootstrap.admin import bound_port, create_app, keys, start_admin
from bootstrap.admin.routes_console import CONTENT_SECURITY_POLICY, add_console_routes
from bootstrap.bootstrap_plan import BootstrapConfig
from bootstrap.issuer_service import LWM2M, IssuerService
from bootstrap.secretbox import SecretBox
from bootstrap.server import BootstrapServer
from bootstrap.store import bootstrap_configs
from device_sim.device import SimDevice
from device_sim.fleet import FleetOptions
from device_sim.journey import run_journey

from .cfssl_server import AUTH_PROFILE, DEFAULT_HMAC_KEY, CfsslNotInstalled, CfsslServer, cfssl_serve
from .console_helpers import VIEWPORT, ConsolePage, launch_chromium, storage, unlabelled_controls
from .pki import p256

pytestmark = pytest.mark.interop
expect.set_options(timeout=20_000)


@pytest_asyncio.fixture(scope="module")
async def cfssl() -> AsyncIterator[CfsslServer]:
    """A real ``cfssl serve`` with an authenticated ``device`` profile."""
    try:
        async with cfssl_serve() as server:
            yield server
    except CfsslNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest_asyncio.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless system Chromium (the test fails if it is not installed)."""
    async with async_playwright() as playwright:
        instance = await launch_chromium(playwright)
        try:
            yield instance
        finally:
            await instance.close()


def _say(request: pytest.FixtureRequest, line: str) -> None:
    """Print ``line`` in the test output even under capture and ``-q``."""
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(line)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def screenshots(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots go (printed)."""
    configured = os.environ.get("CONSOLE_SCREENSHOTS_DIR")
    directory = Path(configured) if configured else tmp_path_factory.mktemp("console-screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    _say(request, f"console screenshots: {directory}")
    return directory


async def _serves_console(base: str) -> bool:
    async with aiohttp.ClientSession() as session, session.get(base + "/console/") as response:
        return response.status == 200


@pytest_asyncio.fixture(scope="module")
async def console_base(
    server: BootstrapServer, pool: asyncpg.Pool, box: SecretBox, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """``http://host:port`` of an admin listener serving the console and the API: the session
    server's own, or (until ``create_app`` registers the console) a second listener of the same
    application on the same database."""
    assert server.settings.admin_bind is not None
    host, port = server.settings.admin_bind
    base = f"http://{host}:{port}"
    if await _serves_console(base):
        yield base
        return
    _say(request, "console: not registered in create_app yet; serving it on a second admin listener")
    app = create_app(pool=pool, box=box, issuers=IssuerService(pool, box))
    add_console_routes(app)
    runner = await start_admin(app, "127.0.0.1", 0, None)
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}"
    finally:
        await runner.cleanup()


# --- serving -------------------------------------------------------------------------------------


async def test_create_app_serves_the_console(pool: asyncpg.Pool, box: SecretBox) -> None:
    """The admin application itself serves /console/ (registered in bootstrap/admin/app.py)."""
    client: TestClient[Any, Any] = TestClient(
        TestServer(create_app(pool=pool, box=box, issuers=IssuerService(pool, box)))
    )
    await client.start_server()
    try:
        response = await client.get("/console/")
        assert response.status == 200, (
            "create_app does not serve the console: register routes_console.add_console_routes(app) "
            "in bootstrap/admin/app.py"
        )
    finally:
        await client.close()


async def test_static_files_headers_and_no_key_needed(console_base: str) -> None:
    """index and modules are served without a key, with the CSP and the hardening headers; nothing
    outside the file list is served; the OpenAPI document does not mention the console."""
    async with aiohttp.ClientSession() as session:
        async with session.get(console_base + "/console", allow_redirects=False) as response:
            assert response.status == 301 and response.headers["Location"] == "/console/"
        for path, content_type in (
            ("/console/", "text/html"),
            ("/console/main.js", "text/javascript"),
            ("/console/console.css", "text/css"),
            ("/console/favicon.svg", "image/svg+xml"),
        ):
            async with session.get(console_base + path) as response:
                assert response.status == 200, path
                assert response.content_type == content_type, path
                headers = response.headers
                assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
                assert "default-src 'self'" in CONTENT_SECURITY_POLICY
                assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
                assert "'unsafe-inline'" not in CONTENT_SECURITY_POLICY
                assert headers["X-Content-Type-Options"] == "nosniff"
                assert headers["Referrer-Policy"] == "no-referrer"
                assert headers["Cache-Control"] == "no-cache"
                etag = headers["ETag"]
            async with session.get(console_base + path, headers={"If-None-Match": etag}) as response:
                assert response.status == 304
        for path in ("/console/nope.js", "/console/..%2Fapp.py", "/console/README", "/console/x/main.js"):
            async with session.get(console_base + path) as response:
                assert response.status == 404, path
        async with session.get(console_base + "/console/index.html") as response:
            text = await response.text()
        assert "<script>" not in text and " style=" not in text and "onclick" not in text.lower()
        async with session.get(console_base + "/v3/openapi.json") as response:
            document = await response.json()
        assert not any(p.startswith("/console") for p in document["paths"])
        assert not any("onsole" in t["name"] for t in document["tags"])


def test_static_files_have_no_inline_code() -> None:
    """No inline scripts, styles or event handler attributes; no third-party URL anywhere."""
    directory = Path(__file__).resolve().parent.parent / "bootstrap" / "admin" / "console"
    for path in directory.iterdir():
        text = path.read_text()
        assert not re.search(r"\son[a-z]+\s*=", text), f"inline event handler in {path.name}"
        assert "innerHTML" not in text and "eval(" not in text, path.name
        assert not re.search(
            r"https?://(?!www\.w3\.org/2000/svg)", text.replace("https://cfssl.example.com", "")
        ), f"absolute URL in {path.name}"
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)", text), "inline script"
            assert "<style" not in text and " style=" not in text, "inline style"


# --- the browser journey -------------------------------------------------------------------------


async def _go(page: Page, section: str) -> None:
    """Follow a link of the console's navigation."""
    await page.get_by_role("navigation", name="Console sections").get_by_role("link", name=section).click()


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02X}" for b in digest)


async def _wait_for_lwm2m_ca(
    client: Any, server_uri: str, anchor: x509.Certificate
) -> list[x509.Certificate]:
    """Running servers learn of the switch through NOTIFY: wait until crts answers with ``anchor``."""
    for _ in range(200):
        response = await client.request(Message(code=Code.GET, uri=f"{server_uri}/est/crts")).response
        if response.code == Code.CONTENT:
            chain = list(pkcs7.load_der_pkcs7_certificates(response.payload))
            if anchor in chain:
                return chain
        await asyncio.sleep(0.05)
    raise AssertionError("the server never switched LWM2M to the new CA")


async def _sign_in(console: ConsolePage, key: str) -> None:
    page = console.page
    await page.goto(console.base_url + "/console/")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await console.shot("sign-in")
    field = page.get_by_label("API key", exact=True)
    await field.fill("lwb_00000000_" + "A" * 43)
    await field.press("Enter")
    await expect(page.locator("#api-key-error")).to_contain_text("not valid")
    await expect(field).to_have_attribute("aria-invalid", "true")
    await expect(field).to_be_focused()
    await console.shot("sign-in-refused")
    await field.fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Certificate authorities", level=1)).to_be_visible()
    await expect(page.get_by_role("heading", name="Certificate authorities", level=1)).to_be_focused()
    kept = await storage(page)
    assert key in kept["session"].values(), "the key is kept in sessionStorage"
    assert not any(key in v for v in kept["local"].values()), "the key must not be in localStorage"
    assert key not in page.url


async def _add_cfssl_ca(console: ConsolePage, cfssl: CfsslServer, name: str) -> None:
    page = console.page
    await page.get_by_role("button", name="Add CA").click()
    dialog = page.get_by_role("dialog", name="Add CA")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("GlobalSign (HVCA)")).to_be_focused()
    # The GlobalSign form: the portal's fields.
    for label in ("API key", "API secret", "Client certificate (PEM)", "Private key (PEM)", "Passphrase"):
        await expect(dialog.get_by_label(label, exact=False).first).to_be_visible()
    await console.shot("add-ca-globalsign")
    # The API's field errors land under the fields (GlobalSign with nothing filled in).
    await dialog.get_by_label("Name").fill(name + "-gs")
    await dialog.get_by_role("button", name="Add CA").click()
    api_key = dialog.locator("#gs-api-key")
    await expect(api_key).to_have_attribute("aria-invalid", "true")
    await expect(dialog.locator("#gs-api-key-error")).to_have_text("Required.")
    await expect(api_key).to_be_focused()

    await dialog.get_by_label("CFSSL (CFSSL_AUTH)").check()
    for label in ("Host URL", "CFSSL profile", "CFSSL label", "HMAC hex key"):
        await expect(dialog.get_by_label(label, exact=False).first).to_be_visible()
    await expect(api_key).to_be_hidden()
    await dialog.get_by_label("Name").fill(name)
    await dialog.get_by_label("Description").fill("Device CA (cfssl serve)")
    await dialog.get_by_label("Host URL").fill(cfssl.url)
    await dialog.get_by_label("CFSSL profile").fill(AUTH_PROFILE)
    hmac = dialog.get_by_label("HMAC hex key")
    await hmac.fill("ABC")  # odd number of digits: refused by the API, field by field
    await dialog.get_by_role("button", name="Add CA").click()
    await expect(dialog.locator("#cfssl-hmac-error")).to_contain_text("even number of hex digits")
    await expect(hmac).to_have_attribute("aria-invalid", "true")
    await expect(hmac).to_be_focused()
    await console.shot("add-ca-cfssl-field-error")
    await hmac.fill(DEFAULT_HMAC_KEY)
    await dialog.get_by_role("button", name="Add CA").click()
    await expect(dialog).to_be_hidden()
    row = page.locator("#ca-table tbody tr", has_text=name).first
    await expect(row).to_contain_text("CFSSL")
    await expect(row).to_contain_text("No service")
    await expect(row.locator(".verification")).to_have_text("Not verified")
    # Focus lands on the new CA's Verify button.
    await expect(page.get_by_role("button", name=f"Verify {name}", exact=True)).to_be_focused()


async def _dialog_escape_returns_focus(page: Page) -> None:
    """Keyboard: Escape closes a dialog and focus goes back to the button that opened it."""
    opener = page.get_by_role("button", name="Add CA")
    await opener.focus()
    await page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Add CA")
    await expect(dialog).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(dialog).to_be_hidden()
    await expect(opener).to_be_focused()


async def test_console_end_to_end(
    server: BootstrapServer,
    server_uri: str,
    coap_client: Any,
    pool: asyncpg.Pool,
    box: SecretBox,
    cfssl: CfsslServer,
    browser: Browser,
    console_base: str,
    screenshots: Path,
    unique: str,
) -> None:
    """Sign in; add a CFSSL CA (field errors from the API), verify it, make it the LWM2M CA (warned
    while unverified), create a custom service from the same dialog; enroll devices and see their
    certificates and bootstrap; revoke one; the active CA cannot be deleted; trusted certificates;
    back to the built-in CA; sign out."""
    _, key = await keys.create(pool, f"console-{unique}")
    name = f"cfssl-{unique}"
    custom = f"renewal-{unique}"
    context = await browser.new_context(viewport=VIEWPORT, locale="en-GB", service_workers="block")
    page = await context.new_page()
    console = ConsolePage(page, console_base, screenshots, api_key=key)
    console.watch()
    issuers = IssuerService(pool, box)
    try:
        await _sign_in(console, key)
        await _dialog_escape_returns_focus(page)
        assert await unlabelled_controls(page) == []

        await _add_cfssl_ca(console, cfssl, name)
        await console.shot("cas-added")

        # Service configurations: LWM2M first, on the built-in CA; choosing the unverified CA warns.
        await _go(page, "Service configurations")
        await expect(page.get_by_role("heading", name="Service configurations", level=1)).to_be_focused()
        first = page.locator("#service-table tbody tr").first
        await expect(first.locator("th")).to_contain_text(LWM2M)
        await expect(first).to_contain_text("Built-in CA")
        await page.get_by_role("button", name=f"Change CA {LWM2M}", exact=True).click()
        dialog = page.get_by_role("dialog", name="Select service configuration")
        await expect(dialog).to_be_visible()
        await dialog.get_by_label("Certificate authority").select_option(label=f"{name} (CFSSL)")
        warning = dialog.locator("#svc-warning")
        await expect(warning).to_contain_text("has never been verified")
        await console.shot("service-dialog-unverified-warning")
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(dialog).to_be_hidden()

        # Verify from the CA list: the result shows in the row.
        await _go(page, "Certificate authorities")
        await page.get_by_role("button", name=f"Verify {name}", exact=True).click()
        row = page.locator("#ca-table tbody tr", has_text=name).first
        await expect(row.locator(".verification")).to_contain_text("Verified")
        await expect(row.locator(".verification")).to_contain_text("signed a test certificate")
        await expect(page.locator("#announcer")).to_contain_text(f"{name} verified")
        await console.shot("ca-verified")

        # Make it the LWM2M CA (no warning now), from the CA's row as in the portal.
        await page.get_by_role("button", name=f"Activate… {name}", exact=True).click()
        await expect(dialog).to_be_visible()
        await expect(dialog.get_by_label("Certificate authority")).to_have_value(
            (await issuers.get_issuer(name)).id
        )
        await expect(dialog.get_by_label("Service configuration", exact=True)).to_have_value(LWM2M)
        await expect(warning).to_contain_text(f"{name} was verified")
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden()
        await expect(row.get_by_role("button", name=f"{LWM2M}: change its CA")).to_be_visible()
        assert (await issuers.get_service(LWM2M)).certificate_issuer_id == (await issuers.get_issuer(name)).id

        # A custom service configuration, created from the same dialog.
        await page.get_by_role("button", name=f"Activate… {name}", exact=True).click()
        await expect(dialog).to_be_visible()
        await dialog.get_by_label("New service configuration").fill("bootstrap")  # reserved
        await dialog.get_by_role("button", name="Add this service configuration to the list").click()
        await expect(dialog.get_by_role("button", name="Create")).to_be_visible()
        await dialog.get_by_role("button", name="Create").click()
        await expect(dialog.locator("#svc-reference-error")).to_contain_text("reserved")
        await dialog.get_by_label("New service configuration").fill(custom)
        await dialog.get_by_label("New service configuration").press("Enter")
        await expect(dialog.get_by_label("Service configuration", exact=True)).to_have_value(custom)
        await console.shot("service-dialog-new-configuration")
        await dialog.get_by_role("button", name="Create").click()
        await expect(dialog).to_be_hidden()
        await expect(row.get_by_role("button", name=f"{custom}: change its CA")).to_be_visible()
        await console.shot("cas-active")

        await _go(page, "Service configurations")
        rows = page.locator("#service-table tbody tr")
        await expect(rows.first.locator("th")).to_contain_text(LWM2M)
        await expect(rows.first).to_contain_text(name)
        await expect(rows.first).to_contain_text("Verified")
        await expect(page.locator("#service-table tbody tr", has_text=custom)).to_contain_text(name)
        await console.shot("services")

        # Devices: one enrolls by EST over CoAP, one bootstraps (pack) then enrolls.
        chain = await _wait_for_lwm2m_ca(coap_client, server_uri, cfssl.ca_certificate)
        device = SimDevice(f"console-{unique}", p256())
        response = await coap_client.request(
            Message(code=Code.POST, uri=f"{server_uri}/est/sen", payload=device.csr_der(), content_format=286)
        ).response
        assert response.code == Code.CHANGED, response.payload
        leaf = device.check_enrolled(
            response.payload, 281, [cfssl.ca_certificate], now=dt.datetime.now(dt.UTC)
        )
        journeyer = SimDevice(f"console-bs-{unique}", p256())
        await bootstrap_configs.put(
            pool,
            journeyer.endpoint,
            BootstrapConfig(
                server_uri="coaps://lwm2m.example:5684",
                security_mode="est",
                server_certificate_der=cfssl.ca_certificate.public_bytes(Encoding.DER),
                lifetime=3600,
            ),
        )
        journey = await run_journey(
            journeyer,
            FleetOptions(server=server_uri, flow="bootstrap", progress=False, timeout_s=30),
            chain,
            use_pack=True,
        )
        assert journey.method == "pack" and journey.certificate is not None

        # The issued list: the device's certificate from the CFSSL CA; details; revoke.
        await _go(page, "Issuance and bootstraps")
        await expect(page.get_by_role("heading", name="Issuance and bootstraps", level=1)).to_be_focused()
        issued_row = page.locator("#issued-table tbody tr", has_text=device.endpoint).first
        await expect(issued_row).to_contain_text(name)
        await expect(issued_row).to_contain_text(LWM2M)
        await expect(issued_row).to_contain_text("Valid")
        await console.shot("activity")
        await page.get_by_label("Endpoint").fill(device.endpoint)
        await page.get_by_role("button", name="Apply filters").click()
        await expect(page.locator("#issued-table tbody tr")).to_have_count(1)
        await page.get_by_role("button", name=f"Details certificate of {device.endpoint}").click()
        details = page.get_by_role("dialog", name=f"Certificate of {device.endpoint}")
        await expect(details).to_be_visible()
        serial = format(leaf.serial_number, "X")
        await expect(details).to_contain_text(serial)
        await expect(details).to_contain_text(_colon_hex(leaf.fingerprint(hashes.SHA256())))
        await expect(details).to_contain_text(f"CN={device.endpoint}")
        await console.shot("issued-certificate-details")
        await details.get_by_role("button", name="Revoke…").click()
        revoke = page.get_by_role("dialog", name="Revoke certificate")
        await expect(revoke).to_be_visible()
        await revoke.get_by_label("Reason").select_option("keyCompromise")
        await console.shot("revoke-dialog")
        await revoke.get_by_role("button", name="Revoke").click()
        await expect(revoke).to_be_hidden()
        await expect(page.locator("#issued-table tbody tr").first).to_contain_text("Revoked")
        await expect(page.locator("#issued-table tbody tr").first).to_contain_text("keyCompromise")
        await expect(
            page.get_by_role("button", name=f"Details certificate of {device.endpoint}")
        ).to_be_focused()

        # Bootstraps, filtered by endpoint and outcome (GET /v3/bootstrap-sessions).
        await page.get_by_label("Endpoint").fill(journeyer.endpoint)
        await page.get_by_label("Outcome (bootstraps)").select_option("success")
        await page.get_by_role("button", name="Apply filters").click()
        bootstrap_row = page.locator("#bootstraps-table tbody tr").first
        for _ in range(100):  # the record is written right after the pack is sent
            if await pool.fetchval(
                "SELECT count(*) FROM bootstrap_sessions WHERE endpoint = $1", journeyer.endpoint
            ):
                break
            await asyncio.sleep(0.05)
        await page.get_by_role("button", name="Apply filters").click()
        await expect(bootstrap_row).to_contain_text(journeyer.endpoint)
        await expect(bootstrap_row).to_contain_text("Pack (/bspack)")
        await expect(bootstrap_row).to_contain_text("Success")
        await expect(page.locator("#issued-table tbody tr", has_text=journeyer.endpoint)).to_contain_text(
            name
        )
        await page.get_by_label("Outcome (bootstraps)").select_option("failed")
        await page.get_by_role("button", name="Apply filters").click()
        await expect(page.locator("#bootstraps-empty")).to_be_visible()
        await page.get_by_role("button", name="Clear").click()
        await expect(page.locator("#issued-table tbody tr", has_text=device.endpoint).first).to_be_visible()
        await console.shot("activity-bootstraps")

        # The active CA cannot be deleted: the refusal and its reason show in its row.
        await _go(page, "Certificate authorities")
        delete = page.get_by_role("button", name=f"Delete {name}", exact=True)
        await delete.click()
        confirm = page.get_by_role("dialog", name=f"Delete {name}?")
        await expect(confirm).to_be_visible()
        await expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
        await confirm.get_by_role("button", name="Delete").click()
        note = page.locator("#ca-table tr.row-note")
        await expect(note).to_contain_text(f"Cannot delete {name}")
        await expect(note).to_contain_text("is active for")
        await expect(note).to_contain_text(LWM2M)
        await expect(note.get_by_role("alert")).to_be_visible()
        await expect(delete).to_be_focused()
        await console.shot("ca-delete-refused")

        # Trusted certificates: upload the CFSSL CA for lwm2m, details, deactivate, delete.
        await _go(page, "Trusted certificates")
        await page.get_by_role("button", name="Upload certificate").click()
        upload = page.get_by_role("dialog", name="Upload a trusted certificate")
        await expect(upload.get_by_label("Name")).to_be_focused()
        trusted_name = f"cfssl-root-{unique}"
        await upload.get_by_label("Name").fill(trusted_name)
        await upload.get_by_label("Service").select_option("lwm2m")
        await upload.get_by_label("Certificate (PEM)").fill(
            "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"
        )
        await upload.get_by_role("button", name="Upload").click()
        await expect(upload.locator("#trust-pem")).to_have_attribute("aria-invalid", "true")
        await expect(upload.locator("#trust-pem-error")).not_to_be_empty()
        await console.shot("trust-upload-error")
        pem = cfssl.ca_certificate.public_bytes(Encoding.PEM).decode()
        await upload.get_by_label("Certificate (PEM)").fill(pem)
        await upload.get_by_role("button", name="Upload").click()
        await expect(upload).to_be_hidden()
        trusted_row = page.locator("#trust-table tbody tr", has_text=trusted_name)
        await expect(trusted_row).to_contain_text("lwm2m")
        await expect(trusted_row).to_contain_text("Active")
        await page.get_by_role("button", name=f"Details {trusted_name}", exact=True).click()
        trusted_details = page.get_by_role("dialog", name=f"Trusted certificate {trusted_name}")
        await expect(trusted_details).to_contain_text(
            _colon_hex(cfssl.ca_certificate.fingerprint(hashes.SHA256()))
        )
        await expect(trusted_details).to_contain_text("CN=Test Device CA")
        await expect(trusted_details).to_contain_text("Valid until")
        await console.shot("trusted-details")
        await trusted_details.get_by_role("button", name="Close").click()
        await page.get_by_role("button", name=f"Deactivate {trusted_name}", exact=True).click()
        await expect(trusted_row).to_contain_text("Inactive")
        await expect(page.get_by_role("button", name=f"Activate {trusted_name}", exact=True)).to_be_focused()
        await console.shot("trusted")
        await page.get_by_role("button", name=f"Delete {trusted_name}", exact=True).click()
        await (
            page.get_by_role("dialog", name=f"Delete {trusted_name}?")
            .get_by_role("button", name="Delete")
            .click()
        )
        await expect(trusted_row).to_have_count(0)

        # Back to the built-in CA (the session server is shared), then the CA can be deleted.
        await _go(page, "Service configurations")
        await page.get_by_role("button", name=f"Change CA {LWM2M}", exact=True).click()
        await dialog.get_by_label("Certificate authority").select_option("")
        await expect(warning).to_be_hidden()
        await dialog.get_by_role("button", name="Save").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#service-table tbody tr").first).to_contain_text("Built-in CA")
        await page.get_by_role("button", name=f"Delete {custom}", exact=True).click()
        await (
            page.get_by_role("dialog", name=f"Delete {custom}?").get_by_role("button", name="Delete").click()
        )
        await expect(page.locator("#service-table tbody tr", has_text=custom)).to_have_count(0)
        await _go(page, "Certificate authorities")

        # Edit: secrets are never shown and may be kept; saving resets the verification.
        await page.get_by_role("button", name=f"Edit {name}", exact=True).click()
        edit = page.get_by_role("dialog", name=f"Edit {name}")
        await expect(edit.get_by_label("Name")).to_be_focused()
        await expect(edit.get_by_label("Host URL")).to_have_value(cfssl.url)
        await expect(edit.get_by_label("HMAC hex key")).to_have_value("")
        await expect(edit.get_by_label("CFSSL (CFSSL_AUTH)")).to_be_disabled()
        await edit.get_by_label("Description").fill("Device CA, edited")
        await console.shot("ca-edit")
        await edit.get_by_role("button", name="Save changes").click()
        await expect(edit).to_be_hidden()
        await expect(row).to_contain_text("Device CA, edited")
        await expect(row.locator(".verification")).to_have_text("Not verified")
        await expect(page.get_by_role("button", name=f"Edit {name}", exact=True)).to_be_focused()

        await page.get_by_role("button", name=f"Delete {name}", exact=True).click()
        await page.get_by_role("dialog", name=f"Delete {name}?").get_by_role("button", name="Delete").click()
        await expect(page.locator("#ca-table tbody tr", has_text=name)).to_have_count(0)
        await expect(page.get_by_role("button", name="Add CA")).to_be_focused()

        # Sign out: the key is gone from the tab.
        await page.get_by_role("button", name="Sign out").click()
        await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        await expect(page.get_by_label("API key", exact=True)).to_be_focused()
        assert not any(key in v for v in (await storage(page))["session"].values())
        await console.shot("signed-out")
        console.check()
    finally:
        await context.close()
        # Whatever happened above, leave LWM2M on the built-in CA for the other tests.
        await issuers.set_service_issuer(LWM2M, None)
        with contextlib.suppress(Exception):
            await bootstrap_configs.delete(pool, f"console-bs-{unique}")

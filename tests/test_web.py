"""The web chat in a real headless Chromium (Debian's /usr/bin/chromium through Selenium)."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yarl

from adapters.registry import Registry
from adapters.web import STATIC
from bot import app as app_module
from bot.app import App
from bot.daemon import Daemon
from tests.helpers import ScriptedModel, tiny_config
from tests.test_selfhost import free_port

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
XSS = '<img src=x onerror="document.title=\'pwned\'"><script>document.title="pwned"</script><b>bold</b>'

if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()) and not os.environ.get("CI"):
    pytest.skip(
        "Debian's chromium and chromium-driver are not installed (make test installs them)",
        allow_module_level=True,
    )


class Site:
    def __init__(self, daemon: Daemon, model: ScriptedModel, url: str) -> None:
        self.daemon, self.model, self.url = daemon, model, url


async def start_site(
    tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch, token: str | None = None
) -> Site:
    holder: dict[str, ScriptedModel] = {}

    def load(config: Any) -> ScriptedModel:
        holder["m"] = ScriptedModel(app_module.load_model(config), ["Nice to meet you!"], delay=1.0)
        return holder["m"]

    port = free_port()
    config = tiny_config(tmp_path / "data", blenderbot_dir, http={"port": port}, web={"enabled": True})
    if token is not None:
        monkeypatch.setenv("BLENDERD_WEB_TOKEN", token)
    daemon = Daemon(App(config, load=load), Registry(config))
    await daemon.start()
    return Site(daemon, holder["m"], f"http://127.0.0.1:{port}/chat")


@pytest.fixture
async def site(tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Site]:
    s = await start_site(tmp_path, blenderbot_dir, monkeypatch)
    yield s
    await s.daemon.stop()


def browser(tmp_path: Path) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=900,700",
        f"--user-data-dir={tmp_path / 'chrome-profile'}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


def wait(driver: Any, condition: Callable[[Any], Any], timeout: float = 30) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def bubbles(driver: Any, role: str) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, f"#log .msg.{role}")]


def say(driver: Any, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.ID, "text")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def chat_session(url: str, tmp_path: Path, screenshot: Path) -> dict[str, Any]:
    from selenium.webdriver.common.by import By

    seen: dict[str, Any] = {}
    driver = browser(tmp_path)
    try:
        driver.get(url)
        wait(driver, lambda d: d.find_element(By.ID, "text").is_displayed())
        say(driver, "Hello there, bot!")
        wait(driver, lambda d: d.find_element(By.ID, "typing").is_displayed(), timeout=5)
        seen["typing_shown"] = True
        wait(driver, lambda d: len(bubbles(d, "bot")) == 1)
        seen["typing_after"] = driver.find_element(By.ID, "typing").is_displayed()
        seen["first"] = (bubbles(driver, "user"), bubbles(driver, "bot"))
        driver.refresh()
        wait(driver, lambda d: len(bubbles(d, "bot")) == 1)
        seen["after_reload"] = (bubbles(driver, "user"), bubbles(driver, "bot"))
        say(driver, XSS)
        wait(driver, lambda d: len(bubbles(d, "bot")) == 2)
        seen["xss_user"] = bubbles(driver, "user")[-1]
        seen["xss_bot"] = bubbles(driver, "bot")[-1]
        seen["title"] = driver.title
        seen["injected"] = len(driver.find_elements(By.CSS_SELECTOR, "#log img, #log b, #log script"))
        say(driver, "/export")
        wait(driver, lambda d: len(bubbles(d, "bot")) == 3)
        link = driver.find_element(By.CSS_SELECTOR, "#log .msg.bot a[download]")
        seen["export_link"] = (link.get_attribute("download"), link.get_attribute("href")[:5])
        driver.save_screenshot(str(screenshot))
        # Past the field's maxlength (a script can do that): the server's 413 text is what the page shows.
        driver.execute_script(
            "document.getElementById('text').value = 'x'.repeat(70000);"
            "document.getElementById('composer').requestSubmit();"
        )
        wait(driver, lambda d: bool(bubbles(d, "error")))
        seen["too_long"] = bubbles(driver, "error")[-1]
    finally:
        driver.quit()
    return seen


async def test_chat_in_a_real_browser(site: Site, tmp_path: Path) -> None:
    site.model.texts = ["Nice to meet you!"]
    screenshot = tmp_path / "web-chat.png"
    runner = asyncio.create_task(asyncio.to_thread(chat_session, site.url, tmp_path, screenshot))

    async def first_reply_asked() -> None:
        while not site.model.calls:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(first_reply_asked(), 120)  # then make the next reply a markup attack
    site.model.texts = [XSS + " and more"]
    seen = await runner
    assert seen["typing_shown"] and not seen["typing_after"]
    assert seen["first"] == (["Hello there, bot!"], ["Nice to meet you!"])
    assert seen["after_reload"] == seen["first"]  # the conversation persists per browser
    assert seen["xss_user"] == XSS  # rendered as text
    assert seen["xss_bot"] == XSS + " and more"
    assert seen["title"] == "blenderd" and seen["injected"] == 0
    assert seen["export_link"] == ("blenderd-export.json", "blob:")
    assert seen["too_long"] == "That message is too long (at most 64 KiB)."
    assert screenshot.stat().st_size > 10_000
    target = os.environ.get("BLENDERD_SCREENSHOT")
    if target:
        shutil.copy(screenshot, target)


async def test_access_token(tmp_path: Path, blenderbot_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = await start_site(tmp_path, blenderbot_dir, monkeypatch, token="let-me-in-please")
    try:
        async with aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True)
        ) as http:  # IP-host cookies
            async with http.get(s.url) as response:
                assert response.status == 401
            async with http.post(s.url + "/api/message", json={"text": "hi"}) as response:
                assert response.status == 401
            async with http.get(s.url + "?token=wrong") as response:
                assert response.status == 401
            async with http.get(s.url + "?token=let-me-in-please") as response:
                assert response.status == 200  # redirected, with the token now in a cookie
                assert "Content-Security-Policy" in response.headers
            async with http.post(s.url + "/api/message", json={"text": "hi"}) as response:
                assert response.status == 200 and (await response.json())["reply"] == "Nice to meet you!"
    finally:
        await s.daemon.stop()


async def raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written: an HTTP client would normalise ``..`` away before sending."""
    parsed = yarl.URL(url)
    reader, writer = await asyncio.open_connection(parsed.host, parsed.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {parsed.host}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


async def test_static_files_cannot_be_left_by_dot_segments(site: Site, tmp_path: Path) -> None:
    status, body = await raw_get(site.url, "/chat/static/app.js")
    assert status == 200 and body  # the route serves files: the refusals below are its own
    outside = tmp_path / "secret.js"  # a name the route would serve, outside its folder
    outside.write_text("blenderd secret")
    escape = os.path.relpath(outside, STATIC).replace("/", "%2F")
    for path in (
        f"/chat/static/{escape}",
        "/chat/static/..%2Fconfig.yaml",
        "/chat/static/..%2F..%2Fconfig.yaml",
        "/chat/static/%2e%2e%2f%2e%2e%2fREADME.md",
        "/chat/static/..%2F..%2Fadapters%2Fweb.py",
    ):
        status, body = await raw_get(site.url, path)
        assert status == 404, path
        assert b"import" not in body and b"blenderd" not in body.lower(), path


async def test_bad_requests_get_clear_answers(site: Site) -> None:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(site.url) as response:
            assert response.status == 200
        async with http.post(site.url + "/api/message", data=b"not json") as response:
            assert response.status == 400 and "JSON" in (await response.json())["error"]

"""Take docs/images/web.png: `spire web` with the built-in spire-tiny restoring a real photo, in headless Chromium.

    python scripts/web_screenshot.py PHOTO -p "a tabby cat looking to the side" -r "Denoise with sigma 0.10" \
        -o docs/images/web.png

Needs the web extra, Playwright and Debian's chromium (`apt-get install chromium`). The server runs on a free local
port and is stopped afterwards; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("photo")
    parser.add_argument("-p", "--prompt", default="")
    parser.add_argument("-r", "--restoration-prompt", default="Denoise with sigma 0.10")
    parser.add_argument("-o", "--output", default="docs/images/web.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import expect, sync_playwright

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "spire_ir", "web", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("spire web did not start") from None
                time.sleep(0.5)
        flags = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True, args=flags)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url)
            page.locator("#restore-input input[type=file]").set_input_files(args.photo)
            page.locator("#semantic-prompt textarea").fill(args.prompt)
            textbox = page.locator("#restoration-prompt textarea")
            textbox.fill(args.restoration_prompt)
            textbox.press("Enter")
            page.locator("#restore-button").click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('#restore-output img')].filter(i => i.complete && "
                "i.naturalWidth > 0).length >= 2",
                timeout=180000,
            )
            expect(page.locator("#command-line textarea")).not_to_have_value("", timeout=30000)
            time.sleep(1)
            Path(args.output).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.output, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"-> {args.output}")


if __name__ == "__main__":
    main()

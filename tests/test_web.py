import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import make_photo
from spire_ir.utils.images import save_image

gr = pytest.importorskip("gradio")

from spire_ir.web import SLIDERS, Studio, build_app, check_upload, controls_to_prompt, prompt_to_controls  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_builder_writes_canonical_prompts():
    controls = [True, 2.04, False, 2.0, True, 0.051, True, 61]
    assert (
        controls_to_prompt(False, True, *controls)
        == "Deblur with sigma 2.0, Denoise with sigma 0.05, Dejpeg with quality 61"
    )
    assert controls_to_prompt(False, False, *controls) == "Deblur, Denoise, Dejpeg"
    assert (
        controls_to_prompt(True, True, *[False, 1, False, 1, False, 0, False, 50]) == "Remove all degradation"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Deblur with sigma 2.5, Upsample to 3.0",
        "Remove all degradation, Denoise with sigma 0.08",
        "Dejpeg with quality 40",
    ],
)
def test_text_and_controls_round_trip(text):
    state, warning = prompt_to_controls(text)
    assert warning == ""
    assert controls_to_prompt(*state) == text


def test_typed_text_with_unknown_words_and_out_of_range_values_warns():
    state, warning = prompt_to_controls("denoise with sigma 0.5, make it pop")
    assert "make it pop" in warning and "beyond the slider" in warning
    assert state[6:8] == [True, SLIDERS["denoise"][1]]  # denoise on, clamped to the slider's maximum
    state, warning = prompt_to_controls("denoise with sigma 3")
    assert "did you mean 0.03" in warning


def test_upload_limits_and_undecodable_files(tmp_path):
    save_image(make_photo(40, 50), tmp_path / "ok.png")
    assert check_upload(str(tmp_path / "ok.png"), 40 * 50).tensor.shape == (1, 3, 40, 50)
    with pytest.raises(ValueError, match=r"50×40 = 0.0 MP, over this server's limit.*--tile 512"):
        check_upload(str(tmp_path / "ok.png"), 1000)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="could not read the upload as an image"):
        check_upload(str(tmp_path / "bad.png"), 10**6)
    with pytest.raises(ValueError, match="upload an image first"):
        check_upload(None, 10**6)


def test_an_oversize_upload_is_refused_from_its_header_without_decoding(tmp_path):
    import tracemalloc

    from PIL import Image

    Image.new("RGB", (3000, 3000), (90, 120, 150)).save(tmp_path / "big.png")  # 27 MB decoded, a few KB on disk
    tracemalloc.start()
    with pytest.raises(ValueError, match=r"3000×3000 = 9.0 MP, over this server's limit of 1.0 MP"):
        check_upload(str(tmp_path / "big.png"), 10**6)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5e6, f"{peak / 1e6:.1f} MB allocated: the image was decoded"


@pytest.fixture(scope="module")
def tiny_pipe():
    from spire_ir.testing import tiny_pipeline

    return tiny_pipeline()


def test_studio_restore_returns_input_size_and_command(tmp_path, tiny_pipe):
    save_image(make_photo(40, 56), tmp_path / "in.png")
    studio = Studio(tiny_pipe, "m", max_pixels=10**6)
    pair, paths, download, settings, command = studio.restore(
        str(tmp_path / "in.png"), "a cat", "denoise σ=.05", 2, 4.0, 3, 2, "wavelet", 512
    )
    assert pair[1].size == (56, 40) and len(paths) == 2 and Path(download).is_file()
    assert json.loads(settings)["restoration_prompt"] == "Denoise with sigma 0.05"  # shown as the model reads it
    assert '"seed": 3' in settings and "-r 'Denoise with sigma 0.05'" in command and "--seed 3" in command
    with pytest.raises(gr.Error, match="could not read"):
        (tmp_path / "bad.png").write_bytes(b"x")
        studio.restore(str(tmp_path / "bad.png"), "", "", 1, 1, 0, 1, "none", 0)


def test_studio_restore_passes_strength_consistency_and_views(tmp_path, tiny_pipe):
    from spire_ir.utils.images import load_image
    from spire_ir.utils.seeding import make_generator

    save_image(make_photo(40, 56), tmp_path / "in.png")
    studio = Studio(tiny_pipe, "m", max_pixels=10**6)
    _, _, download, settings, command = studio.restore(
        str(tmp_path / "in.png"), "a cat", "Deblur with sigma 1.5", 2, 1.0, 3, 1, "none", 0, 0.5, False, 2
    )
    expected = tiny_pipe(
        load_image(tmp_path / "in.png").tensor, prompt="a cat", restoration_prompt="Deblur with sigma 1.5",
        num_inference_steps=2, guidance_scale=1.0, generator=[make_generator(3)], color_fix="none", strength=0.5,
        consistency=False, self_ensemble=2, output_type="pt",
    ).images  # fmt: skip
    restored = load_image(download).tensor
    assert (restored - expected).abs().max() <= 0.5 / 255 + 1e-6  # the same image, up to 8-bit rounding
    one_view = tiny_pipe(
        load_image(tmp_path / "in.png").tensor, prompt="a cat", restoration_prompt="Deblur with sigma 1.5",
        num_inference_steps=2, guidance_scale=1.0, generator=[make_generator(3)], color_fix="none", strength=0.5,
        consistency=False, self_ensemble=1, output_type="pt",
    ).images  # fmt: skip
    assert (restored - one_view).abs().max() > 2 / 255  # the views were used, not the folder's default of 1
    recorded = json.loads(settings)
    assert (recorded["strength"], recorded["consistency"], recorded["self_ensemble"]) == (0.5, False, 2)
    assert "--strength 0.5" in command and "--no-consistency" in command and "--self-ensemble 2" in command
    # left out, each takes the model folder's default, and the record says which value that was
    _, _, _, settings, command = studio.restore(str(tmp_path / "in.png"), "", "", 1, 1.0, 0, 1, "none", 0)
    recorded = json.loads(settings)
    config = tiny_pipe.config
    assert recorded["self_ensemble"] == config.get("default_self_ensemble", 1)
    assert recorded["strength"] == config.get("default_strength", 1.0)


def test_uploads_reach_the_studio_as_sent_and_restored_ones_keep_their_alpha(tmp_path, tiny_pipe):
    import numpy as np
    from gradio.data_classes import ImageData
    from PIL import Image

    from spire_ir.utils.images import load_image

    # a 16-bit grayscale and a transparent PNG: the image inputs pass the file itself, for load_image to convert
    deep = np.linspace(0, 65535, 40 * 56).reshape(40, 56).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "deep.png")
    rgba = np.dstack([(make_photo(40, 56)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                      np.linspace(0, 255, 56).astype(np.uint8)[None].repeat(40, 0)])  # fmt: skip
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    app = build_app(tiny_pipe, "m")
    inputs = [b for b in app.blocks.values() if getattr(b, "elem_id", None) in
              ("restore-input", "degrade-input", "walk-input")]  # fmt: skip
    assert len(inputs) == 3
    for block in inputs:
        for name in ("deep.png", "cut.png"):
            assert block.preprocess(ImageData(path=str(tmp_path / name), orig_name=name)) == str(tmp_path / name)
    assert abs(check_upload(str(tmp_path / "deep.png"), 10**6).tensor.mean() - deep.mean() / 65535) < 0.01
    studio = Studio(tiny_pipe, "m", max_pixels=10**6)
    _, _, download, _, _ = studio.restore(str(tmp_path / "cut.png"), "", "Denoise with sigma 0.05", 1, 1.0, 0, 1,
                                          "none", 0)  # fmt: skip
    assert (load_image(download).alpha == load_image(tmp_path / "cut.png").alpha).all()
    degraded, _, _ = studio.degrade(str(tmp_path / "cut.png"), "Denoise with sigma 0.05", "mixed", 0)
    assert Image.open(degraded).mode == "RGBA"


def test_app_builds_with_named_endpoints(tiny_pipe):
    app = build_app(tiny_pipe, "m")
    names = {fn.api_name for fn in app.fns.values() if fn.api_name}
    assert {"restore", "degrade", "walk", "build_prompt", "parse_prompt"} <= names


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _served_studio(tmp_path, *flags: str):
    """`spire web` with a tiny random model on a free localhost port, running until the block ends; yields
    (url, model folder, a 128 × 96 photo, the playwright module, the Chromium path)."""
    playwright = pytest.importorskip("playwright.sync_api")
    chromium = os.environ.get("SPIRE_CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.skip(f"no Chromium at {chromium} (apt-get install chromium)")
    model = tmp_path / "model"
    subprocess.run(
        [sys.executable, "-m", "spire_ir", "new-model", "--preset", "tiny", "-o", str(model)], check=True
    )
    photo = tmp_path / "photo.png"
    save_image(make_photo(96, 128), photo)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "spire_ir", "web", "--model", str(model), "--port", str(port),
                               *flags], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert time.time() < deadline and server.poll() is None, "spire web did not start"
                time.sleep(0.5)
        yield url, model, photo, playwright, chromium
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.browser
def test_browser_restore_flow(tmp_path):
    """Start `spire web`, drive headless Chromium: upload, set a slider, check the prompt, restore in two tabs."""
    artifacts = Path(os.environ.get("SPIRE_ARTIFACTS", ROOT / "test-artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with _served_studio(tmp_path) as (url, model, photo, playwright, chromium):
        flags = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=flags)
            pages = [browser.new_page(viewport={"width": 1280, "height": 1100}) for _ in range(2)]
            for page in pages:
                page.goto(url)
                page.locator("#restore-input input[type=file]").set_input_files(str(photo))
                page.locator("#semantic-prompt textarea").fill("a cat")
                textbox = page.locator("#restoration-prompt textarea")
                page.locator("#builder-blind input").uncheck()
                playwright.expect(textbox).to_have_value("", timeout=15000)  # blind off, no operation on yet
                page.locator("#builder-denoise-on input").check()
                # let the tick's round trip finish first, or its update can overwrite the value typed below
                playwright.expect(textbox).to_have_value("Denoise with sigma 0.05", timeout=15000)
                number = page.locator("#builder-denoise input[type=number]")
                number.fill("0.08")
                number.press("Enter")
                playwright.expect(textbox).to_have_value("Denoise with sigma 0.08", timeout=15000)
            for page in pages:  # both tabs queue a restoration at once
                page.locator("#restore-button").click()
            for page in pages:
                image = page.locator("#restore-output img").last
                playwright.expect(image).to_be_visible(timeout=120000)
                page.wait_for_function(
                    "() => [...document.querySelectorAll('#restore-output img')].some(i => i.complete && i.naturalWidth > 0)",
                    timeout=120000,
                )
                size = page.evaluate("() => { const i = [...document.querySelectorAll('#restore-output img')].pop();"
                                     " return [i.naturalWidth, i.naturalHeight]; }")  # fmt: skip
                assert size == [128, 96]
            playwright.expect(pages[0].locator("#command-line textarea")).to_have_value(
                "spire restore IMAGE --model "
                + str(model)
                + " -p 'a cat' -r 'Denoise with sigma 0.08' --steps 20 --guidance 4 --strength 1 "
                "--seed 0 --num-samples 1 --color-fix wavelet --tile 512 --no-consistency --self-ensemble 1"
            )
            pages[0].screenshot(path=str(artifacts / "web.png"), full_page=True)
            browser.close()


def _natural_size(page, selector: str) -> list[int]:
    page.wait_for_function(
        f"() => [...document.querySelectorAll('{selector} img')].some(i => i.complete && i.naturalWidth > 0)",
        timeout=120000,
    )
    return page.evaluate(f"() => {{ const i = [...document.querySelectorAll('{selector} img')].pop();"
                         " return [i.naturalWidth, i.naturalHeight]; }")  # fmt: skip


@pytest.mark.browser
def test_browser_degrade_send_to_restore_and_walk_flows(tmp_path):
    """The Degrade tab degrades by prompt and sends the pair to Restore (text and builder); the Walk tab draws a
    grid with one cell per value."""
    with _served_studio(tmp_path) as (url, _, photo, playwright, chromium):
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url)
            page.get_by_role("tab", name="Degrade").click()
            page.locator("#degrade-input input[type=file]").set_input_files(str(photo))
            page.locator("#degrade-prompt textarea").fill("denoise σ=0.1")
            page.locator("#degrade-button").click()
            generated = page.locator("#degrade-generated textarea")
            playwright.expect(generated).to_have_value("Denoise with sigma 0.10", timeout=60000)
            assert _natural_size(page, "#degrade-output") == [128, 96]
            page.locator("#degrade-send").click()
            page.get_by_role("tab", name="Restore").click()
            playwright.expect(page.locator("#restoration-prompt textarea")).to_have_value(
                "Denoise with sigma 0.10", timeout=15000
            )
            playwright.expect(page.locator("#builder-denoise-on input")).to_be_checked(timeout=15000)
            playwright.expect(page.locator("#builder-blind input")).not_to_be_checked()

            page.get_by_role("tab", name="Walk").click()
            page.locator("#walk-input input[type=file]").set_input_files(str(photo))
            page.locator("#walk-values textarea").fill("0.02, 0.12")
            steps = page.locator("#walk-steps input[type=number]")
            steps.fill("2")
            steps.press("Enter")
            page.locator("#walk-button").click()
            width, height = _natural_size(page, "#walk-output")
            assert width >= 2 * 128 and height >= 96  # two cells of the 128 x 96 input, side by side
            text = page.locator("body").inner_text()
            assert "Traceback" not in text
            browser.close()


@pytest.mark.browser
def test_browser_an_oversize_upload_gets_a_readable_error_in_the_page(tmp_path):
    """`spire web --max-pixels 4096`: a 128 × 96 upload is refused with the limit in the page, no traceback."""
    with _served_studio(tmp_path, "--max-pixels", "4096") as (url, _, photo, playwright, chromium):
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1280, "height": 1100})
            page.goto(url)
            page.locator("#restore-input input[type=file]").set_input_files(str(photo))
            page.locator("#restore-button").click()
            message = page.get_by_text("over this server's limit of 0.0 MP", exact=False).first
            playwright.expect(message).to_be_visible(timeout=60000)
            text = page.locator("body").inner_text()
            assert "128×96 = 0.0 MP" in text and "Traceback" not in text
            browser.close()


def test_the_studio_opens_no_outbound_connection_bounds_uploads_and_cleans_up(tiny_pipe):
    import ipaddress

    from spire_ir.web import launch

    attempts: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(self, address):
        attempts.append(str(address[0]) if isinstance(address, tuple) else str(address))
        return real_connect(self, address)

    def getaddrinfo(host, *args, **kwargs):
        attempts.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
    try:
        app = launch(tiny_pipe, "tiny", port=port, max_file_mb=1, block=False)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as response:
                assert response.status == 200
            workspace = app.spire_workspace
            assert workspace.is_dir()
            assert app.max_file_size == 2**20  # gradio reads "1mb" as MiB
            boundary = "spireboundary"
            body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
                    "Content-Type: image/png\r\n\r\n").encode() + b"\0" * (2 * 2**20) + f"\r\n--{boundary}--\r\n".encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/gradio_api/upload", data=body, method="POST",
                                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
            with pytest.raises(urllib.error.HTTPError) as refused:  # a 2 MiB upload against the 1 MiB limit
                urllib.request.urlopen(request, timeout=30)
            assert refused.value.code == 413
            assert not any(p.is_file() and p.stat().st_size > 2**20 for p in workspace.rglob("*"))
            assert app._queue.max_size == 16
        finally:
            app.close()
    finally:
        socket.socket.connect, socket.getaddrinfo = real_connect, real_getaddrinfo

    def local(host: str) -> bool:
        if host in ("localhost", "") or host.startswith("/"):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).is_unspecified
        except ValueError:
            return False

    assert [host for host in attempts if not local(host)] == []
    assert not workspace.exists()

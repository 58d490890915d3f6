"""``spire web``: a Gradio restoration studio (Restore, Degrade and Walk tabs) on a ``SpirePipeline``.

Nothing happens at import: ``build_app(pipe)`` builds the Blocks and ``launch`` serves them. The prompt builder is
two pure functions, ``controls_to_prompt`` and ``prompt_to_controls``, over the project's prompt grammar; the tabs
call the same pipeline and degradation code as the CLI. Every tab is also a named API endpoint (``/restore``,
``/degrade``, ``/walk``, ``/build_prompt``, ``/parse_prompt``) for ``gradio_client``.
"""

from __future__ import annotations

import json
import os
import shlex
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spire_ir import prompts
from spire_ir.app import degrade_image, tile_size_for, walk, walk_pairs, walk_values
from spire_ir.prompts import BLIND_PROMPT, PromptError, PromptWarning, RestorationOp, RestorationPrompt
from spire_ir.utils.images import (
    ImageLoadError,
    ImageTooLargeError,
    LoadedImage,
    load_image,
    save_image,
    tensor_to_pil,
)
from spire_ir.utils.seeding import make_generator

__all__ = ["SLIDERS", "build_app", "check_upload", "controls_to_prompt", "launch", "prompt_to_controls"]

# (minimum, maximum, step, default) of each builder slider, from the op table (``OpSpec.slider``)
SLIDERS: dict[str, tuple[float, float, float, float]] = {
    kind: (spec.slider.minimum, spec.slider.maximum, spec.slider.step, spec.slider.default)
    for kind, spec in prompts.OP_SPECS.items()
}
DEFAULT_MAX_PIXELS = 2048 * 2048
DEFAULT_MAX_FILE_MB = 25  # an upload's byte limit: a 2048² PNG of a photo is 8-12 MB
DEFAULT_QUEUE_SIZE = 16  # requests waiting beyond the one running; more are refused with "queue full"


def controls_to_prompt(blind: bool, with_values: bool, *controls: Any) -> str:
    """Builder state -> canonical restoration prompt.

    Args:
        blind: the "Remove all degradation" switch.
        with_values: write each op's value ("Deblur with sigma 1.5") or only its type ("Deblur").
        controls: (enabled, value) for deblur, upsample, denoise, dejpeg, in that order (8 values).
    """
    if len(controls) != 2 * len(prompts.OP_KINDS):
        raise ValueError(f"expected {2 * len(prompts.OP_KINDS)} control values, got {len(controls)}")
    ops = []
    for index, kind in enumerate(prompts.OP_KINDS):
        enabled, value = controls[2 * index], controls[2 * index + 1]
        if enabled:
            ops.append(RestorationOp(kind, float(value) if with_values else None))
    return prompts.format(RestorationPrompt(ops=tuple(ops), blind=bool(blind)))


def prompt_to_controls(text: str, train_ranges: dict | None = None) -> tuple[list[Any], str]:
    """Restoration prompt text -> builder state [blind, with_values, (enabled, value) × 4] and a warning line.

    Unknown words, values outside the sliders, values outside ``train_ranges`` (the model's, see
    ``prompts.parse``) and invalid values are reported in the warning (Markdown); the controls then show what
    could be understood.
    """
    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PromptWarning)
        try:
            parsed = prompts.parse(text or "", train_ranges=train_ranges)
        except PromptError as error:
            return [False, True, *_defaults()], f"⚠️ {error}"
    notes += [
        str(w.message).split("; the text is passed")[0]
        for w in caught
        if issubclass(w.category, PromptWarning)
    ]
    state: list[Any] = [parsed.blind, all(op.value is not None for op in parsed.ops) if parsed.ops else True]
    by_kind = {op.kind: op for op in parsed.ops}
    for kind in prompts.OP_KINDS:
        low, high, _, default = SLIDERS[kind]
        op = by_kind.get(kind)
        value = default if op is None or op.value is None else op.value
        if not low <= value <= high:
            notes.append(f"{kind} {value:g} is beyond the slider ({low:g}-{high:g}); the text keeps it")
            value = min(max(value, low), high)
        state += [op is not None, value]
    return state, ("⚠️ " + "; ".join(notes)) if notes else ""


def _defaults() -> list[Any]:
    out: list[Any] = []
    for kind in prompts.OP_KINDS:
        out += [False, SLIDERS[kind][3]]
    return out


def check_upload(path: str | None, max_pixels: int) -> LoadedImage:
    """Decode an uploaded file and enforce the size limit, converting as ``load_image`` does (EXIF rotation,
    16-bit, transparency composited onto white). Returns it with ``.tensor`` (1, 3, H, W) in [0, 1] and ``.alpha``.

    Raises:
        ValueError: no file, undecodable file, or more than ``max_pixels`` pixels (the message says what to do).
    """
    if not path:
        raise ValueError("upload an image first")
    try:
        loaded = load_image(path, max_pixels=max_pixels)  # the size is checked from the header, before decoding
    except ImageTooLargeError as error:
        width, height = error.width, error.height
        raise ValueError(
            f"the image is {width}×{height} = {height * width / 1e6:.1f} MP, over this server's limit of "
            f"{max_pixels / 1e6:.1f} MP (--max-pixels). Downscale it, or restore it locally with tiling: "
            f"spire restore IMAGE --tile 512"
        ) from error
    except ImageLoadError as error:
        raise ValueError(f"could not read the upload as an image ({Path(str(error).split(':')[0]).name}); "
                         "use a PNG, JPEG, WebP or TIFF file") from error  # fmt: skip
    return loaded


def _command_line(model: str, semantic: str, restoration: str, steps: int, guidance: float, seed: int,
                  samples: int, color_fix: str, tile: int, strength: float, consistency: bool,
                  self_ensemble: int) -> str:  # fmt: skip
    parts = ["spire", "restore", "IMAGE", "--model", model, "-p", semantic, "-r", restoration, "--steps", str(steps),
             "--guidance", f"{guidance:g}", "--strength", f"{strength:g}", "--seed", str(seed),
             "--num-samples", str(samples), "--color-fix", color_fix, "--tile", str(tile),
             "--consistency" if consistency else "--no-consistency", "--self-ensemble", str(self_ensemble)]  # fmt: skip
    return shlex.join(parts)


class Studio:
    """The callbacks behind the app (plain methods, testable without a browser)."""

    def __init__(self, pipe, model_name: str = "MODEL", max_pixels: int = DEFAULT_MAX_PIXELS,
                 outdir: Path | None = None) -> None:  # fmt: skip
        self.pipe = pipe
        self.model_name = model_name
        self.max_pixels = max_pixels
        self.outdir = outdir or Path(tempfile.mkdtemp(prefix="spire-web-"))
        self.outdir.mkdir(parents=True, exist_ok=True)

    def restore(self, image: str | None, semantic: str, restoration: str, steps: float, guidance: float,
                seed: float, samples: float, color_fix: str, tile: float, strength: float | None = None,
                consistency: bool | None = None, self_ensemble: float | None = None, progress=None):  # fmt: skip
        """Returns (before/after pair, gallery paths, download path, settings JSON, command line).

        ``strength``, ``consistency`` and ``self_ensemble`` (views: 1, 2, 4 or 8) are the pipeline's; None takes
        the model folder's default, and the settings and command line record the value used."""
        import gradio as gr

        try:
            loaded = check_upload(image, self.max_pixels)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PromptWarning)
                # the text the model reads, shown and recorded
                restoration = prompts.canonical(restoration or "", getattr(self.pipe, "train_ranges", None))
            for warning in caught:
                gr.Warning(str(warning.message).split("; the text is passed")[0])
        except (ValueError, PromptError) as error:
            raise gr.Error(str(error)) from error
        steps, seed, samples, tile = int(steps), int(seed), int(samples), int(tile)
        defaults = self.pipe.config
        strength = float(defaults.get("default_strength", 1.0) if strength is None else strength)
        consistency = bool(defaults.get("default_consistency", False) if consistency is None else consistency)
        views = defaults.get("default_self_ensemble", 1) if self_ensemble is None else self_ensemble
        self_ensemble = int(views)

        def report(step: int, total: int) -> None:
            if progress is not None:
                progress((step, total), desc="denoising")

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PromptWarning)  # reported above
            images = self.pipe(
                loaded.tensor, prompt=semantic or "", restoration_prompt=restoration,
                num_inference_steps=steps, guidance_scale=float(guidance),
                generator=[make_generator(seed + k) for k in range(samples)], num_images_per_prompt=samples,
                color_fix=color_fix, tile_size=tile, strength=strength, consistency=consistency,
                self_ensemble=self_ensemble, output_type="pt", callback=report,
            ).images  # fmt: skip
        paths = []
        for k, restored in enumerate(images):
            paths.append(
                str(
                    save_image(restored.unsqueeze(0), self.outdir / f"restored-{seed + k}-{id(restored)}.png",
                               alpha=loaded.alpha)  # as `spire restore` keeps it
                )
            )
        settings = {
            "semantic_prompt": semantic or "", "restoration_prompt": restoration, "steps": steps,
            "guidance": float(guidance), "strength": strength, "seed": seed, "num_samples": samples,
            "color_fix": color_fix, "tile": tile, "consistency": consistency, "self_ensemble": self_ensemble,
        }  # fmt: skip
        command = _command_line(self.model_name, settings["semantic_prompt"], settings["restoration_prompt"], steps,
                                float(guidance), seed, samples, color_fix, tile, strength, consistency,
                                self_ensemble)  # fmt: skip
        return (
            (tensor_to_pil(loaded.tensor), tensor_to_pil(images[0])),
            paths,
            paths[0],
            json.dumps(settings, indent=2),
            command,
        )

    def degrade(self, image: str | None, prompt_text: str, mode: str, seed: float):
        """Returns (degraded image path, canonical restoration prompt, record JSON)."""
        import gradio as gr

        try:
            loaded = check_upload(image, self.max_pixels)
            y, c_r, record = degrade_image(loaded.tensor, prompt_text, mode, make_generator(int(seed)))
        except (ValueError, PromptError) as error:
            raise gr.Error(str(error)) from error
        path = save_image(y, self.outdir / f"degraded-{int(seed)}-{id(y)}.png", alpha=loaded.alpha)
        return str(path), c_r, json.dumps(record, indent=2)

    def walk(self, image: str | None, target: str, template: str, values: str, semantic: str, restoration: str,
             steps: float, guidance: float, seed: float, progress=None):  # fmt: skip
        """Restore with each value put into the template; returns a labelled grid."""
        import gradio as gr

        try:
            tensor = check_upload(image, self.max_pixels).tensor
            if "{}" not in (template or ""):
                raise ValueError('the template needs "{}" where the value goes, e.g. "Denoise with sigma {}"')
            walk_restoration = target == "restoration prompt"
            pairs = walk_pairs(walk_values(values), template if not walk_restoration else semantic or "",
                               template if walk_restoration else restoration or BLIND_PROMPT,
                               getattr(self.pipe, "train_ranges", None))  # fmt: skip
        except (ValueError, PromptError) as error:
            raise gr.Error(str(error)) from error

        def on_value(index: int, total: int) -> None:
            if progress is not None:
                progress((index, total), desc=f"value {index + 1} of {total}")

        return walk(self.pipe, tensor, pairs, int(seed), on_value=on_value, num_inference_steps=int(steps),
                    guidance_scale=float(guidance))  # fmt: skip


def _examples(directory: Path) -> list[list[str]]:
    """Two example inputs made on the spot from procedural scenes (degraded, with their prompts)."""
    from spire_ir.data.scenes import render_scene
    from spire_ir.degradations import degrade

    rows = []
    for index, text in ((1, "Denoise with sigma 0.08"), (2, "Deblur with sigma 2.0, Dejpeg with quality 40")):
        clean, caption = render_scene(7, index, 256)
        degraded, c_r, _ = degrade(clean, text, make_generator(index))
        path = save_image(degraded, directory / f"example-{index}.png")
        rows.append([str(path), caption, c_r])
    return rows


@dataclass
class _RestoreTab:
    """The Restore tab's components that other tabs and helpers use."""

    image: Any
    restoration: Any
    warning: Any
    builder: list  # [blind, with_values, (enabled, value) per op]


def _text_to_builder(text: str, train_ranges: dict | None = None) -> tuple:
    state, note = prompt_to_controls(text, train_ranges)
    return (*state, note)


def _prompt_builder(gr) -> list:
    """The builder's checkboxes and sliders, one pair per op of the table: [blind, with_values, on, value, ...]."""
    blind = gr.Checkbox(label="Remove all degradation (blind)", value=True, elem_id="builder-blind")
    with_values = gr.Checkbox(label="Write values", value=True, elem_id="builder-values")
    controls = [blind, with_values]
    for kind, spec in prompts.OP_SPECS.items():
        slider = spec.slider
        with gr.Row():
            controls.append(gr.Checkbox(label=slider.label, value=False, elem_id=f"builder-{kind}-on", scale=1))
            controls.append(gr.Slider(slider.minimum, slider.maximum, value=slider.default, step=slider.step,
                                      label=f"{kind} value", elem_id=f"builder-{kind}", scale=3))  # fmt: skip
    return controls


def _restore_tab(gr, studio: Studio, config: Any) -> _RestoreTab:
    with gr.Row():
        with gr.Column():
            # image_mode=None hands over the uploaded file itself, which load_image converts as the CLI does;
            # gradio's default "RGB" would convert it first (alpha dropped uncomposited, 16-bit values clipped)
            image = gr.Image(type="filepath", image_mode=None, label="Degraded image", elem_id="restore-input")
            semantic = gr.Textbox(label="Semantic prompt (what the picture shows)", placeholder="a zebra on grass",
                                  elem_id="semantic-prompt")  # fmt: skip
            restoration = gr.Textbox(label="Restoration prompt", value=BLIND_PROMPT, elem_id="restoration-prompt")
            warning = gr.Markdown(elem_id="prompt-warning")
            with gr.Accordion("Prompt builder", open=True):
                builder = _prompt_builder(gr)
            with gr.Accordion("Advanced settings", open=False):
                settings_inputs = [
                    gr.Slider(1, 100, value=int(config.get("default_steps", 20)), step=1, label="Steps"),
                    gr.Slider(1, 12, value=float(config.get("default_guidance", 4.0)), step=0.5,
                              label="Guidance (CFG on the semantic prompt)"),
                    gr.Number(value=0, precision=0, label="Seed"),
                    gr.Slider(1, 4, value=1, step=1, label="Samples"),
                    gr.Radio(["wavelet", "adain", "none"], value=str(config.get("default_color_fix", "wavelet")),
                             label="Colour fix"),
                    gr.Slider(0, 1024, value=tile_size_for(config), step=64, label="Tile size (px, 0 = no tiling)"),
                    gr.Slider(0.05, 1, value=float(config.get("default_strength", 1.0)), step=0.05,
                              label="Strength (the fraction of the restoration applied)"),
                    gr.Checkbox(value=bool(config.get("default_consistency", False)),
                                label="Data consistency (agree with the degradation the prompt states)"),
                    gr.Radio([1, 2, 4, 8], value=int(config.get("default_self_ensemble", 1)),
                             label="Self-ensemble views (flips and turns averaged; each costs one restoration)"),
                ]  # fmt: skip
            run = gr.Button("Restore", variant="primary", elem_id="restore-button")
        with gr.Column():
            outputs = [
                gr.ImageSlider(label="Before / after", type="pil", elem_id="restore-output"),
                gr.Gallery(label="Samples", columns=4, height=160),
                gr.File(label="Download"),
                gr.Code(label="Prompts and settings used", language="json"),
                gr.Textbox(label="As a command line", elem_id="command-line", buttons=["copy"]),
            ]
    gr.Examples(_examples(studio.outdir), inputs=[image, semantic, restoration], label="Examples")
    # one queue for every prompt-builder event, so quick clicks are answered in order and the prompt shown always
    # reflects the last click (separate queues could finish out of order)
    in_order = dict(api_name=False, concurrency_id="prompt-builder", concurrency_limit=1)
    for control in builder:
        control.input(controls_to_prompt, builder, restoration, **in_order)
    ranges = getattr(studio.pipe, "train_ranges", None)
    restoration.input(lambda text: _text_to_builder(text, ranges), restoration, [*builder, warning], **in_order)

    def restore(image, semantic, restoration, steps, guidance, seed, samples, color_fix, tile, strength,
                consistency, self_ensemble, progress=gr.Progress()):  # fmt: skip
        return studio.restore(image, semantic, restoration, steps, guidance, seed, samples, color_fix, tile,
                              strength, consistency, self_ensemble, progress=progress)  # fmt: skip

    run.click(restore, [image, semantic, restoration, *settings_inputs], outputs, api_name="restore")
    return _RestoreTab(image=image, restoration=restoration, warning=warning, builder=builder)


def _degrade_tab(gr, studio: Studio, restore_tab: _RestoreTab) -> None:
    with gr.Row():
        with gr.Column():
            clean = gr.Image(type="filepath", image_mode=None, label="Clean image", elem_id="degrade-input")
            prompt = gr.Textbox(label="Degradation by prompt (empty: random)", elem_id="degrade-prompt",
                                placeholder="Deblur with sigma 2.0, Denoise with sigma 0.05")  # fmt: skip
            mode = gr.Radio(["parameterized", "realesrgan", "mixed"], value="mixed", label="Random pipeline")
            seed = gr.Number(value=0, precision=0, label="Seed")
            run = gr.Button("Degrade", variant="primary", elem_id="degrade-button")
        with gr.Column():
            degraded = gr.Image(type="filepath", label="Degraded", elem_id="degrade-output")
            generated = gr.Textbox(label="Generated restoration prompt", elem_id="degrade-generated")
            record = gr.Code(label="Record", language="json")
            send = gr.Button("Send to Restore", elem_id="degrade-send")
    run.click(studio.degrade, [clean, prompt, mode, seed], [degraded, generated, record], api_name="degrade")
    ranges = getattr(studio.pipe, "train_ranges", None)
    send.click(lambda image, text: (image, text, *_text_to_builder(text, ranges)), [degraded, generated],
               [restore_tab.image, restore_tab.restoration, *restore_tab.builder, restore_tab.warning],
               api_name=False)  # fmt: skip


def _walk_tab(gr, studio: Studio, config: Any) -> None:
    with gr.Row():
        with gr.Column():
            inputs = [
                gr.Image(type="filepath", image_mode=None, label="Image", elem_id="walk-input"),
                gr.Radio(["restoration prompt", "semantic prompt"], value="restoration prompt", label="Walk"),
                gr.Textbox(label="Template ({} marks the value)", value="Denoise with sigma {}"),
                gr.Textbox(label="Values (comma-separated; | if values contain commas)", value="0.02, 0.06, 0.12, 0.24",
                           elem_id="walk-values"),
                gr.Textbox(label="Semantic prompt (when walking the restoration prompt)"),
                gr.Textbox(label="Restoration prompt (when walking the semantic prompt)", value=BLIND_PROMPT),
                gr.Slider(1, 100, value=int(config.get("default_steps", 20)), step=1, label="Steps",
                          elem_id="walk-steps"),
                gr.Slider(1, 12, value=float(config.get("default_guidance", 4.0)), step=0.5, label="Guidance"),
                gr.Number(value=0, precision=0, label="Seed"),
            ]  # fmt: skip
            run = gr.Button("Walk", variant="primary", elem_id="walk-button")
        grid = gr.Image(type="pil", label="Grid", elem_id="walk-output")

    def walk(image, target, template, values, semantic, restoration, steps, guidance, seed, progress=gr.Progress()):
        return studio.walk(image, target, template, values, semantic, restoration, steps, guidance, seed,
                           progress=progress)  # fmt: skip

    run.click(walk, inputs, grid, api_name="walk")


def _api_helpers(gr, builder: list, train_ranges: dict | None) -> None:
    """API-only endpoints of the prompt builder: build_prompt (controls -> text) and parse_prompt (text -> state)."""
    built = gr.Textbox(visible=False)
    gr.Button(visible=False).click(controls_to_prompt, builder, built, api_name="build_prompt")
    text, parsed = gr.Textbox(visible=False), gr.JSON(visible=False)
    gr.Button(visible=False).click(
        lambda t: dict(zip(("state", "warning"), prompt_to_controls(t, train_ranges), strict=True)),
        text, parsed, api_name="parse_prompt",
    )  # fmt: skip


def build_app(
    pipe, model_name: str = "MODEL", max_pixels: int = DEFAULT_MAX_PIXELS, analytics: bool = False,
    queue_size: int = DEFAULT_QUEUE_SIZE, workspace: Path | None = None,
):  # fmt: skip
    """The Gradio Blocks of the studio for ``pipe`` (a ``SpirePipeline``). Nothing is launched.

    Gradio's analytics are off unless ``analytics`` is True; one request runs at a time and ``queue_size`` wait.
    """
    os.environ["GRADIO_ANALYTICS_ENABLED"] = str(bool(analytics))  # read by gradio at import and at launch
    import gradio as gr

    studio = Studio(pipe, model_name, max_pixels, outdir=workspace / "results" if workspace else None)
    config = getattr(pipe, "config", {})
    with gr.Blocks(title="SPIRE restoration studio", analytics_enabled=analytics) as app:
        gr.Markdown(
            "## SPIRE restoration studio\nTell the model **what the picture shows** (semantic prompt) and **what to "
            "fix, how strongly** (restoration prompt)."
        )
        with gr.Tab("Restore", id="restore"):
            restore_tab = _restore_tab(gr, studio, config)
        with gr.Tab("Degrade", id="degrade"):
            _degrade_tab(gr, studio, restore_tab)
        with gr.Tab("Walk", id="walk"):
            _walk_tab(gr, studio, config)
        _api_helpers(gr, restore_tab.builder, getattr(pipe, "train_ranges", None))
    app.queue(default_concurrency_limit=1, max_size=queue_size)
    return app


def launch(
    pipe, model_name: str, host: str = "127.0.0.1", port: int = 7860, max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_mb: float = DEFAULT_MAX_FILE_MB, analytics: bool = False, queue_size: int = DEFAULT_QUEUE_SIZE,
    block: bool = True,
):  # fmt: skip
    """Build and serve the studio; blocks until interrupted (``block=False``: returns the running app, whose
    ``close()`` stops it). Uploads (at most ``max_file_mb`` MB each) and results live in one temporary folder,
    deleted when the server stops."""
    import shutil

    workspace = Path(tempfile.mkdtemp(prefix="spire-web-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workspace / "uploads")
    app = build_app(pipe, model_name=model_name, max_pixels=max_pixels, analytics=analytics, queue_size=queue_size,
                    workspace=workspace)  # fmt: skip
    app.spire_workspace = workspace
    close = app.close

    def close_and_clean(*args: Any, **kwargs: Any) -> None:
        close(*args, **kwargs)
        shutil.rmtree(workspace, ignore_errors=True)

    app.close = close_and_clean
    try:
        app.launch(server_name=host, server_port=port, show_error=True, footer_links=["api"],
                   max_file_size=f"{max_file_mb:g}mb", prevent_thread_lock=not block)  # fmt: skip
    except BaseException:
        close_and_clean()
        raise
    if block:
        close_and_clean()
    return app

"""Semantic prompts from a local image-to-text model (the paper's LLaVA prompts, Table 4).

Any captioner that transformers loads from a folder with ``AutoProcessor`` and ``AutoModelForImageTextToText``
works: BLIP, BLIP-2, Florence-2, LLaVA-style models. A model whose processor has a chat template is asked the
style's instruction; one without (BLIP) captions unconditionally. Decoding is greedy, so a caption is a function of
the image and the model.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["CAPTION_STYLES", "Captioner"]

# style -> (instruction for chat models, most new tokens)
CAPTION_STYLES = {
    "short": ("Write a short caption of this image in one sentence.", 24),
    "full": ("Describe this image in detail.", 77),
}

FOLDER_HELP = (
    "a captioner folder holds what transformers' save_pretrained writes for an image-to-text model and its "
    "processor: config.json, model.safetensors (or its shards), preprocessor_config.json and the tokenizer files"
)


class Captioner:
    """Captions images with a local transformers image-to-text model.

    Args:
        path: the model folder (``FOLDER_HELP``); safetensors weights only.
        style: "short" (one sentence) or "full" (a detailed description), ``CAPTION_STYLES``.
        device: where the model runs.

    Raises:
        FileNotFoundError: no such folder. ValueError: the folder is not a captioner, with what it must hold.
    """

    def __init__(self, path: str | Path, style: str = "short", device: str = "cpu") -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if style not in CAPTION_STYLES:
            raise ValueError(f"caption style must be one of {', '.join(CAPTION_STYLES)}, got {style!r}")
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"--captioner {path}: no such folder; {FOLDER_HELP}")
        try:
            self.processor = AutoProcessor.from_pretrained(path, local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(
                path, local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(
                f"--captioner {path}: cannot load an image-to-text model ({error}); {FOLDER_HELP}"
            ) from error
        self.model = self.model.eval().requires_grad_(False).to(device)
        self.path, self.style, self.device = path, style, device

    def _inputs(self, image) -> dict:
        instruction = CAPTION_STYLES[self.style][0]
        if getattr(self.processor, "chat_template", None):
            messages = [
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]}
            ]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            return self.processor(images=image, text=text, return_tensors="pt")
        return self.processor(images=image, return_tensors="pt")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> list[str]:
        """One caption per image. images: (B, 3, H, W) float RGB in [0, 1]."""
        from spire_ir.utils.images import tensor_to_pil

        captions = []
        for image in images:
            inputs = {
                k: v.to(self.device) for k, v in self._inputs(tensor_to_pil(image.unsqueeze(0))).items()
            }
            out = self.model.generate(**inputs, max_new_tokens=CAPTION_STYLES[self.style][1], do_sample=False)
            prompt = inputs.get("input_ids")
            if (
                prompt is not None
                and out.shape[1] > prompt.shape[1]
                and torch.equal(out[:, : prompt.shape[1]], prompt)
            ):
                out = out[:, prompt.shape[1] :]  # a decoder-only model repeats its prompt
            captions.append(" ".join(self.processor.batch_decode(out, skip_special_tokens=True)[0].split()))
        return captions

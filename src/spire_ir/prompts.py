"""One grammar for restoration prompts (the paper's c_r, Table 2).

A restoration prompt is a comma-separated list of operations, in the order the degradations were applied::

    Deblur with sigma 2.1, Upsample to 3.4, Denoise with sigma 0.05, Dejpeg with quality 61

Each operation may also appear without its parameter ("Deblur"), and ``Remove all degradation`` asks for blind
restoration (the prompt paired with Real-ESRGAN degradations in training).

``parse`` turns text into a :class:`RestorationPrompt`; ``format`` writes the canonical text back, and
``parse(format(p)) == p`` for every valid prompt. The model itself reads the *text*, not the parse, so words the
grammar does not know are kept (``RestorationPrompt.unknown``) and passed on with a warning, or rejected when
``strict=True``. The same grammar drives ``spire_ir.degradations.degrade``, which applies a prompt's operations.

Units: blur sigma in pixels, upsample factor as a ratio, noise sigma on the [0, 1] intensity scale (not 0-255),
JPEG quality as the libjpeg 1-100 integer.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from spire_ir.ops.registry import OP_KINDS, OP_SPECS, OpSpec

__all__ = [
    "BLIND_PROMPT",
    "OP_KINDS",
    "OP_SPECS",
    "OpSpec",
    "PromptError",
    "PromptWarning",
    "RestorationOp",
    "RestorationPrompt",
    "canonical",
    "format",
    "format_prompt",
    "parse",
    "parse_prompt",
    "restoration_prompt_variant",
]

BLIND_PROMPT = "Remove all degradation"


class PromptError(ValueError):
    """A restoration prompt names an operation with an invalid value, or (strict mode) has unknown words."""


class PromptWarning(UserWarning):
    """A restoration prompt has words the grammar does not know, or a value outside the training range."""


# Words that name an operation (after lower-casing and removing punctuation): each op's verb and aliases.
_VERBS: dict[str, str] = {
    word: kind for kind, spec in OP_SPECS.items() for word in (spec.verb.lower(), *spec.aliases)
}
# Words allowed between the verb and the number; they carry no meaning for the parse. Each op's phrase and parameter
# name are among them ("with sigma", "to", "with quality").
_FILLER = {"a", "the", "σ", "s", "by", "of", "factor", "x", "q", "at", "level"} | {
    word for spec in OP_SPECS.values() for word in (*spec.phrase.lower().split(), spec.param)
}
_NUMBER = re.compile(r"^(?:\d+(?:\.\d*)?|\.\d+)$")
_NEGATIVE = re.compile(r"(?:^|[\s=:(])[-−]\s*\.?\d")
_BLIND = re.compile(r"^remove (?:all )?(?:the )?degradations?$")
_SEPARATORS = re.compile(r"[,;\n]+|\s+(?:and then|and|then)\s+|\s*[&+]\s*")


def _round(kind: str, value: float) -> float:
    decimals = OP_SPECS[kind].decimals
    return float(round(value)) if decimals == 0 else round(float(value), decimals)


@dataclass(frozen=True)
class RestorationOp:
    """One operation of a restoration prompt.

    The value is rounded to the precision of the canonical text on construction (1 decimal for blur sigma and
    the upsample factor, 2 for noise sigma, an integer for JPEG quality), so an op always round-trips through
    text.

    Args:
        kind: one of ``OP_KINDS``: "deblur", "upsample", "denoise", "dejpeg".
        value: the operation's parameter, or None when the prompt names only the type.

    Raises:
        PromptError: unknown kind, or a value outside ``OP_SPECS[kind].valid``.
    """

    kind: str
    value: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OP_SPECS:
            raise PromptError(f"unknown restoration op {self.kind!r}; expected one of {', '.join(OP_KINDS)}")
        if self.value is None:
            return
        value = _round(self.kind, float(self.value))
        low, high = OP_SPECS[self.kind].valid
        if not low <= value <= high:
            raise PromptError(_range_message(self.kind, float(self.value)))
        object.__setattr__(self, "value", value)

    @property
    def spec(self) -> OpSpec:
        return OP_SPECS[self.kind]

    def text(self) -> str:
        """Canonical text, e.g. "Denoise with sigma 0.05" or "Denoise"."""
        spec = self.spec
        if self.value is None:
            return spec.verb
        number = f"{int(self.value)}" if spec.decimals == 0 else f"{self.value:.{spec.decimals}f}"
        return f"{spec.verb} {spec.phrase} {number}"


@dataclass(frozen=True)
class RestorationPrompt:
    """A parsed restoration prompt.

    Attributes:
        ops: the operations in the order written (the order the degradations were applied).
        blind: True for "Remove all degradation" (blind restoration).
        unknown: fragments the grammar did not understand, kept verbatim; the model still reads them.
    """

    ops: tuple[RestorationOp, ...] = ()
    blind: bool = False
    unknown: tuple[str, ...] = field(default=())

    @property
    def text(self) -> str:
        return format(self)

    def kinds(self) -> list[str]:
        return [op.kind for op in self.ops]


def _range_message(kind: str, value: float, fragment: str | None = None) -> str:
    spec = OP_SPECS[kind]
    low, high = spec.valid
    where = f"{fragment!r}: " if fragment else ""
    message = (
        f"{where}{kind} {spec.param} {value:g} is outside the valid range [{low:g}, {high:g}] "
        f"({spec.unit_hint}; {spec.train[0]:g}-{spec.train[1]:g} were seen in training)"
    )
    hint = spec.suggest(value)
    return f"{message}; {hint}" if hint else message


def _normalise(fragment: str) -> str:
    text = fragment.lower().replace("-", "").replace("σ", " sigma ")
    text = re.sub(r"[^a-z0-9.\s]", " ", text)
    return " ".join(text.split())


def _parse_fragment(
    fragment: str, train_ranges: Mapping[str, Sequence[float]] | None = None
) -> RestorationOp | str | None:
    """Return an op, the string "blind", or None when the fragment is not understood."""
    text = _normalise(fragment)
    if not text:
        return None
    if _BLIND.match(text):
        return "blind"
    tokens = text.split()
    if tokens[0] not in _VERBS:
        return None
    kind = _VERBS[tokens[0]]
    numbers: list[float] = []
    for token in tokens[1:]:
        token = token.rstrip(".")
        # "4x" / "x4" for the upsample factor
        bare = token.removeprefix("x").removesuffix("x") if kind == "upsample" else token
        if _NUMBER.match(bare):
            numbers.append(float(bare))
        elif token not in _FILLER:
            return None
    if len(numbers) > 1:
        return None
    if not numbers:
        return RestorationOp(kind)
    value = numbers[0]
    if _NEGATIVE.search(fragment):  # "sigma -1": the minus sign is dropped with the hyphens of "de-blur" above
        value = -value
    spec = OP_SPECS[kind]
    low, high = spec.valid
    if not low <= _round(kind, value) <= high:
        raise PromptError(_range_message(kind, value, fragment.strip()))
    if spec.decimals == 0 and value != int(value):
        raise PromptError(f"{fragment.strip()!r}: {kind} {spec.param} must be a whole number, got {value:g}")
    low, high = (train_ranges or {}).get(kind, spec.train)
    if not low <= value <= high:
        warnings.warn(
            f"{fragment.strip()!r}: {kind} {spec.param} {value:g} is outside the training range "
            f"{low:g}-{high:g}; the model may not follow it",
            PromptWarning,
            stacklevel=4,
        )
    return RestorationOp(kind, value)


def parse(
    text: str, strict: bool = False, train_ranges: Mapping[str, Sequence[float]] | None = None
) -> RestorationPrompt:
    """Parse a restoration prompt.

    Case, extra spaces and punctuation are ignored; fragments are separated by commas, semicolons, "and" or
    "then". "remove all degradation(s)" means blind restoration.

    Args:
        text: the prompt, e.g. "Deblur with sigma 2.0, Denoise with sigma 0.05".
        strict: raise instead of warning when a fragment is not understood.
        train_ranges: each op's range in the model's training ({"deblur": [0.2, 4.0]}, what ``spire train``
            writes into the adaptor's config); values outside it are warned about. Ops left out, or None: the
            paper's Table 2 ranges.

    Returns:
        The parsed prompt. Unknown fragments are kept in ``unknown``.

    Raises:
        PromptError: a value is out of range (always), or an unknown fragment under ``strict``.
    """
    if not isinstance(text, str):
        raise TypeError(f"a restoration prompt must be a string, got {type(text).__name__}")
    ops: list[RestorationOp] = []
    unknown: list[str] = []
    blind = False
    for fragment in _SEPARATORS.split(text):
        if not fragment.strip(" .\t"):
            continue
        parsed = _parse_fragment(fragment, train_ranges)
        if parsed == "blind":
            blind = True
        elif isinstance(parsed, RestorationOp):
            ops.append(parsed)
        else:
            unknown.append(fragment.strip())
    if unknown:
        known = ", ".join(f"'{spec.verb} {spec.phrase} {spec.placeholder}'" for spec in OP_SPECS.values())
        message = (
            f"restoration prompt {text!r}: not understood: {', '.join(repr(u) for u in unknown)}. Known ops: "
            f"{known}, '{BLIND_PROMPT}'"
        )
        if strict:
            raise PromptError(message)
        warnings.warn(message + "; the text is passed to the model as written", PromptWarning, stacklevel=2)
    return RestorationPrompt(ops=tuple(ops), blind=blind, unknown=tuple(unknown))


def format(prompt: RestorationPrompt | list[RestorationOp] | tuple[RestorationOp, ...]) -> str:
    """Write the canonical text of a prompt (ops joined by ", "; blind first; unknown fragments last)."""
    if not isinstance(prompt, RestorationPrompt):
        prompt = RestorationPrompt(ops=tuple(prompt))
    parts = ([BLIND_PROMPT] if prompt.blind else []) + [op.text() for op in prompt.ops] + list(prompt.unknown)
    return ", ".join(parts)


def canonical(text: str, train_ranges: Mapping[str, Sequence[float]] | None = None) -> str:
    """The canonical text of a restoration prompt: the form the synthesiser writes and models are trained on.

    >>> canonical("deblur σ=2 and upscale 4x")
    'Deblur with sigma 2.0, Upsample to 4.0'

    Empty text is the blind prompt. Fragments the grammar cannot read are kept after the ops and warned about
    (``PromptWarning``), as are values outside ``train_ranges`` (see ``parse``); text with nothing the grammar
    reads is returned as written. Raises ``PromptError`` for a value out of range.
    """
    if not text.strip():
        return BLIND_PROMPT
    parsed = parse(text, train_ranges=train_ranges)
    return format(parsed) if parsed.ops or parsed.blind else text.strip()


def restoration_prompt_variant(c_r: str, variant: str) -> str:
    """c_r as a model was trained on it: "with_params" (as written), "without_params" (op types only, "Deblur")
    or "none" ("", the ablation without a restoration prompt)."""
    if variant == "with_params":
        return c_r
    if variant == "none":
        return ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptWarning)
        parsed = parse(c_r)
    return format(RestorationPrompt(ops=tuple(RestorationOp(op.kind) for op in parsed.ops), blind=parsed.blind))


# Names that do not shadow builtins, for callers that prefer them.
parse_prompt = parse
format_prompt = format

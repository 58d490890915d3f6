import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spire_ir import prompts
from spire_ir.prompts import BLIND_PROMPT, PromptError, PromptWarning, RestorationOp, RestorationPrompt


def test_canonical_formatting():
    ops = [
        RestorationOp("deblur", 2.13),
        RestorationOp("upsample", 3.44),
        RestorationOp("denoise", 0.0512),
        RestorationOp("dejpeg", 61),
    ]
    assert prompts.format(ops) == (
        "Deblur with sigma 2.1, Upsample to 3.4, Denoise with sigma 0.05, Dejpeg with quality 61"
    )
    assert prompts.format([RestorationOp("deblur"), RestorationOp("dejpeg")]) == "Deblur, Dejpeg"
    assert prompts.format(RestorationPrompt(blind=True)) == BLIND_PROMPT
    assert prompts.format([]) == ""


def test_parse_ignores_case_spaces_and_punctuation():
    parsed = prompts.parse("  DEBLUR   with Sigma 2.0 ;denoise WITH sigma=0.05. ")
    assert parsed.ops == (RestorationOp("deblur", 2.0), RestorationOp("denoise", 0.05))
    assert not parsed.unknown
    assert prompts.parse("upsample x4").ops == (RestorationOp("upsample", 4.0),)
    assert prompts.parse("Deblur and then dejpeg").kinds() == ["deblur", "dejpeg"]


@pytest.mark.parametrize(
    "text", ["Remove all degradation", "remove all degradations", "REMOVE ALL DEGRADATION!"]
)
def test_blind(text):
    parsed = prompts.parse(text)
    assert parsed.blind and parsed.ops == () and parsed.unknown == ()


def test_out_of_range_noise_names_fragment_range_and_suggestion():
    with pytest.raises(PromptError) as info:
        prompts.parse("Deblur, denoise with sigma 3")
    message = str(info.value)
    assert "'denoise with sigma 3'" in message
    assert "[0, 1]" in message and "0-0.12" in message
    assert "did you mean 0.03" in message


def test_quality_must_be_integer_in_range():
    with pytest.raises(PromptError, match="whole number"):
        prompts.parse("Dejpeg with quality 61.5")
    with pytest.raises(PromptError, match=r"\[1, 100\]"):
        prompts.parse("Dejpeg with quality 300")


def test_unknown_text_is_kept_with_warning_or_error_when_strict():
    with pytest.warns(PromptWarning, match="make it pop"):
        parsed = prompts.parse("Deblur with sigma 1.0, make it pop")
    assert parsed.unknown == ("make it pop",)
    assert parsed.ops == (RestorationOp("deblur", 1.0),)
    assert prompts.format(parsed) == "Deblur with sigma 1.0, make it pop"
    with pytest.raises(PromptError, match="not understood"):
        prompts.parse("Deblur with sigma 1.0, make it pop", strict=True)


def test_outside_training_range_warns_but_parses():
    with pytest.warns(PromptWarning, match="training range"):
        parsed = prompts.parse("Denoise with sigma 0.24")
    assert parsed.ops[0].value == 0.24


def test_a_model_s_own_training_ranges_replace_table_2_s():
    trained = {"deblur": [0.2, 4.0]}  # as spire train records it in the adaptor's config
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prompts.parse("Deblur with sigma 4.0", train_ranges=trained)
        prompts.canonical("Deblur with sigma 4.0, Denoise with sigma 0.1", train_ranges=trained)
    with pytest.warns(PromptWarning, match="training range 0.2-3"):  # Table 2's, for a model that records none
        prompts.parse("Deblur with sigma 4.0")
    with pytest.warns(PromptWarning, match="training range 0.2-4;"):
        prompts.parse("Deblur with sigma 4.5", train_ranges=trained)
    with pytest.warns(PromptWarning, match="training range 0-0.12"):  # ops left out keep Table 2's
        prompts.parse("Denoise with sigma 0.2", train_ranges=trained)


def test_in_range_prompt_is_silent():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prompts.parse(
            "Deblur with sigma 2.1, Upsample to 3.4, Denoise with sigma 0.05, Dejpeg with quality 61"
        )


_op = st.one_of(
    st.builds(RestorationOp, st.just("deblur"), st.one_of(st.none(), st.floats(0.2, 3.0))),
    st.builds(RestorationOp, st.just("upsample"), st.one_of(st.none(), st.floats(1.0, 7.0))),
    st.builds(RestorationOp, st.just("denoise"), st.one_of(st.none(), st.floats(0.0, 0.12))),
    st.builds(RestorationOp, st.just("dejpeg"), st.one_of(st.none(), st.integers(30, 92).map(float))),
)


@given(st.lists(_op, max_size=6), st.booleans())
def test_parse_format_round_trip(ops, blind):
    prompt = RestorationPrompt(ops=tuple(ops), blind=blind)
    assert prompts.parse(prompts.format(prompt)) == prompt


def test_canonical_encodes_loose_text_as_the_synthesiser_writes_it():
    assert prompts.canonical("deblur σ=2 and upscale 4x") == "Deblur with sigma 2.0, Upsample to 4.0"
    assert prompts.canonical("  remove all degradations ") == BLIND_PROMPT
    assert prompts.canonical("") == BLIND_PROMPT  # no op named: blind restoration
    written = "Deblur with sigma 2.1, Upsample to 3.4, Denoise with sigma 0.05, Dejpeg with quality 61"
    assert prompts.canonical(written) == written
    with pytest.warns(PromptWarning, match="not understood: 'make it pretty'"):
        assert prompts.canonical("make it pretty") == "make it pretty"  # nothing readable: as written
    with pytest.raises(PromptError):
        prompts.canonical("denoise with sigma 7")

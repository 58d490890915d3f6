import pytest
import torch

from helpers import make_photo
from spire_ir.models.loading import shipped_config_dir
from spire_ir.models.text import clip_tokenizer_from_bpe
from spire_ir.pipeline import SpirePipeline


def test_shipped_clip_tokenizer_gives_the_sd_ids(tmp_path):
    tokenizer = clip_tokenizer_from_bpe(shipped_config_dir("clip") / "bpe_simple_vocab_16e6.txt.gz", tmp_path)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    # CLIP splits every digit into its own token (degradations.md A.11)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("Deblur with sigma 2.1").input_ids)
    assert tokens[-4:-1] == ["2</w>", ".</w>", "1</w>"]


def test_single_file_rejects_pickle_and_unknown_files(tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"only \.safetensors"):
        SpirePipeline.from_base(tmp_path / "model.ckpt")
    with pytest.raises(FileNotFoundError, match="no such base model"):
        SpirePipeline.from_base(tmp_path / "missing.safetensors")


@pytest.mark.slow
def test_single_file_sd15_checkpoint_loads_offline(tmp_path):
    """A full-size SD-1.5-shaped random checkpoint in the original layout (2 GB, fp16) loads with shipped configs."""
    from sd_checkpoint import write_random_sd15_checkpoint

    path = tmp_path / "sd15.safetensors"
    written = write_random_sd15_checkpoint(path)
    pipe = SpirePipeline.from_base(path)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.unet.config.cross_attention_dim == 768
    assert len(pipe.adaptor.fusion_convs) == 13  # 12 skips + mid, derived from the config
    assert sum(p.numel() for p in pipe.unet.parameters()) == 859_520_964
    expected = written["model.diffusion_model.input_blocks.0.0.weight"].float()
    assert torch.equal(pipe.unet.conv_in.weight.float(), expected)
    assert torch.equal(pipe.adaptor.controlnet.conv_in.weight.float(), expected)
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    out = pipe(
        make_photo(64, 64), prompt="a cat", num_inference_steps=1, guidance_scale=2.0, output_type="pt"
    )
    assert out.images.shape == (1, 3, 64, 64) and torch.isfinite(out.images).all()

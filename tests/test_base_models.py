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


@pytest.mark.parametrize("form", ["folder", "single-file"])
@pytest.mark.parametrize("kind", ["sd15", "sd21", "sd21-base"])
def test_sd_layouts_train_a_step_and_restore(kind, form, tmp_path):
    """SD 1.5, 2.1 (768, v-prediction) and 2.1-base (512, ε) layouts at test width: `spire train` one step from a
    diffusers folder or an original-layout .safetensors file, then `spire restore` with the exported pipeline."""
    from sd_checkpoint import scaled_config, write_random_base_folder, write_random_sd_checkpoint
    from spire_ir.cli import main
    from spire_ir.utils.images import load_image, save_image

    config = scaled_config(kind, tmp_path / "config")
    if form == "folder":
        base, extra = write_random_base_folder(config, tmp_path / "base"), []
    else:
        base = tmp_path / "base.safetensors"
        write_random_sd_checkpoint(base, config)
        extra = ["--set", f"model.base_config={config}"]
    recipe = "configs/sd15.yaml" if kind == "sd15" else "configs/sd21.yaml"
    prediction = "epsilon" if kind == "sd21-base" else ("v_prediction" if kind == "sd21" else "null")
    run = tmp_path / "run"
    args = ["train", recipe, "--output-dir", str(run), "--set", f"model.base={base}", *extra,
            "--set", f"model.prediction_type={prediction}", "--set", "data.source=scenes",
            "--set", "data.num_scenes=4", "--set", "data.resolution=64", "--set", "data.num_workers=0",
            "--set", "batch_size=1", "--set", "max_steps=1", "--set", "mixed_precision=no",
            "--set", "gradient_checkpointing=false", "--set", "num_validation=1", "--set", "validation_steps=1",
            "--set", "progress=false"]  # fmt: skip
    assert main(args) == 0
    pipe = SpirePipeline.from_pretrained(run / "pipeline")
    expected = {"sd15": ("epsilon", 64, 2), "sd21": ("v_prediction", 96, [1, 2, 4, 4]),
                "sd21-base": ("epsilon", 64, [1, 2, 4, 4])}[kind]  # fmt: skip
    got = (
        pipe.scheduler.config.prediction_type,
        pipe.unet.config.sample_size,
        pipe.unet.config.attention_head_dim,
    )
    assert got == (expected[0], expected[1], expected[2])
    assert pipe.unet.config.use_linear_projection == (kind != "sd15")
    if form == "single-file":  # the frozen weights are the checkpoint's, text encoder included
        from safetensors.torch import load_file

        ldm = load_file(str(base))
        assert torch.equal(
            pipe.unet.conv_in.weight.half(), ldm["model.diffusion_model.input_blocks.0.0.weight"]
        )
        layer = pipe.text_encoder.get_encoder().layers[0].self_attn if kind != "sd15" else None
        if layer is not None:  # OpenCLIP's fused in_proj split into q, k, v
            fused = ldm["cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"]
            assert torch.equal(layer.v_proj.weight.half(), fused[128:])
    save_image(make_photo(48, 40), tmp_path / "photo.png")
    restore = ["restore", str(tmp_path / "photo.png"), "--model", str(run / "pipeline"), "-o", str(tmp_path / "out"),
               "--steps", "1", "--prompt", "a photo", "-r", "Denoise with sigma 0.05"]  # fmt: skip
    assert main(restore) == 0
    restored = load_image(tmp_path / "out" / "photo.png").tensor
    assert restored.shape == (1, 3, 48, 40) and torch.isfinite(restored).all()

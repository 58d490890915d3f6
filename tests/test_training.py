import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from spire_ir.cli import main
from spire_ir.data import fixed_samples
from spire_ir.models.autoencoder import to_model_latents
from spire_ir.training.base import BaseTask, BaseTrainConfig
from spire_ir.training.loop import run_loop
from spire_ir.training.spire import SpireTask, TrainConfig, sample_timesteps, spire_loss
from spire_ir.training.vae import VaeTask, VaeTrainConfig
from spire_ir.utils.config import load_config
from spire_ir.utils.seeding import SampleRandom

SMALL = [
    "max_steps=4", "batch_size=2", "checkpoint_every=0", "validate_every=0", "num_validation=0", "progress=false",
    "data.source=scenes", "data.num_scenes=8", "data.resolution=64", "optim.lr=1e-3", "optim.max_grad_norm=0",
]  # fmt: skip


def _snapshot(module):
    return {name: p.detach().clone() for name, p in module.named_parameters()}


def _changed(before, module):
    return {name for name, p in module.named_parameters() if not torch.equal(p.detach(), before[name])}


def test_train_changes_every_adaptor_parameter_and_no_frozen_one(tmp_path):
    config = load_config(TrainConfig, "configs/tiny-smoke.yaml", [*SMALL, f"output_dir={tmp_path}"])
    task = SpireTask(config)
    trainable, frozen = (
        _snapshot(task.trainable),
        {k: _snapshot(getattr(task.frozen, k)) for k in ("vae", "unet", "text_encoder")},
    )
    run_loop(config, task)
    assert _changed(trainable, task.trainable) == set(trainable)
    for name, before in frozen.items():
        assert _changed(before, getattr(task.frozen, name)) == set(), name


def test_a_base_that_loads_trainable_is_frozen_by_the_task(tmp_path):
    from diffusers import UNet2DConditionModel

    from spire_ir.data import build_dataloader
    from spire_ir.models.tiny import tiny_components

    parts = tiny_components(seed=0, tokenizer_dir=tmp_path / "tok")
    for name in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        parts[name].save_pretrained(tmp_path / "base" / name)
    # from_pretrained gives trainable parameters: freezing is the task's job
    assert all(p.requires_grad for p in UNet2DConditionModel.from_pretrained(tmp_path / "base" / "unet").parameters())
    overrides = [*SMALL, f"output_dir={tmp_path / 'run'}", f"model.base={tmp_path / 'base'}"]
    task = SpireTask(load_config(TrainConfig, "configs/tiny-smoke.yaml", overrides))
    batch = next(iter(build_dataloader(task.config.data, 2)[0]))
    task.loss(task.trainable, batch, SampleRandom(0, batch["key"])).backward()
    for name in ("vae", "unet", "text_encoder"):
        module = getattr(task.frozen, name)
        assert not any(p.requires_grad or p.grad is not None for p in module.parameters()), name
    assert all(p.grad is not None for p in task.trainable.parameters() if p.requires_grad)


def test_train_vae_changes_every_parameter(tmp_path):
    config = load_config(
        VaeTrainConfig, "configs/tiny-vae.yaml", [*SMALL, f"output_dir={tmp_path}", "data.degrade=false"]
    )
    task = VaeTask(config)
    before = _snapshot(task.trainable)
    out = run_loop(config, task)
    assert _changed(before, task.trainable) == set(before)
    assert (out / "config.json").is_file()


def test_train_base_changes_the_unet_only_and_exports_a_base_folder(tmp_path):
    config = load_config(
        BaseTrainConfig, "configs/tiny-base.yaml", [*SMALL, f"output_dir={tmp_path}", "data.degrade=false"]
    )
    task = BaseTask(config)
    unet, vae, text = _snapshot(task.trainable), _snapshot(task.vae), _snapshot(task.text_encoder)
    out = run_loop(config, task)
    assert _changed(unet, task.trainable) == set(unet)
    assert _changed(vae, task.vae) == set() and _changed(text, task.text_encoder) == set()
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline.from_base(out)
    assert torch.equal(pipe.unet.conv_in.weight, task.trainable.conv_in.weight)


def test_spire_tiny_style_vae_and_v_prediction_prior_train_and_chain(tmp_path):
    """The spire-tiny recipe at smoke size: shortcut VAE (PCA start) -> v-prediction prior on it -> pipeline."""
    vae_config = load_config(VaeTrainConfig, "configs/tiny-vae.yaml", [
        *SMALL, f"output_dir={tmp_path / 'vae'}", "model.shortcut=true", "model.mid_attention=false",
        "model.latent_channels=12", "model.scaling_factor=1.0", "model.pca_images=8", "model.recon=mse",
        "model.latent_power=1.0",
    ])  # fmt: skip
    vae_task = VaeTask(vae_config)
    with torch.no_grad():  # the PCA start already reconstructs the training scenes well
        x = torch.stack([s["x"] for s in fixed_samples(vae_config.data, 4)])
        recon = (
            vae_task.trainable.decode(vae_task.trainable.encode(x * 2 - 1).latent_dist.mode()).sample + 1
        ) / 2
    assert float(10 * torch.log10(1 / (recon.clamp(0, 1) - x).pow(2).mean())) > 25
    vae_dir = run_loop(vae_config, vae_task)
    base_config = load_config(BaseTrainConfig, "configs/tiny-base.yaml", [
        *SMALL, f"output_dir={tmp_path / 'base'}", f"model.vae={vae_dir}", "model.prediction_type=v_prediction",
        "model.attention_levels=[1]", "model.max_text_length=16",
    ])  # fmt: skip
    task = BaseTask(base_config)
    assert [type(b).__name__ for b in task.trainable.down_blocks] == ["DownBlock2D", "CrossAttnDownBlock2D"]
    base = run_loop(base_config, task)
    from spire_ir.pipeline import SpirePipeline

    pipe = SpirePipeline.from_base(base)
    assert type(pipe.vae).__name__ == "SpireAutoencoderKL"
    assert len(pipe.vae.config.latents_std) == 12  # latent_power: natural channel proportions, set at export
    stds = torch.tensor(pipe.vae.config.latents_std)
    assert float(stds.max() / stds.min()) > 2
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.tokenizer.model_max_length == 16
    lines = [json.loads(line) for line in (tmp_path / "base" / "metrics.jsonl").read_text().splitlines()]
    assert lines and all("loss" in line for line in lines if "val/psnr" not in line)
    # stage 3 on it: the space-to-depth E' starts as the VAE's patch encoder; the loss weights follow pixel energy
    spire_config = load_config(TrainConfig, "configs/tiny-smoke.yaml", [
        *SMALL, f"output_dir={tmp_path / 'adaptor'}", f"model.base={base}", "model.condition_stem=unshuffle",
        "model.loss_weighting=pixel",
    ])  # fmt: skip
    spire_task = SpireTask(spire_config)
    weights = spire_task.loss_weights
    assert weights.shape == (12,)
    # natural proportions (latent_power 1.0): the model-space MSE is already a pixel-space MSE
    assert torch.allclose(weights, torch.ones(12), rtol=1e-3)
    vae = spire_task.frozen.vae
    y = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        stem = spire_task.trainable.controlnet.controlnet_cond_embedding
        h = stem.proj(torch.nn.functional.pixel_unshuffle(y, 8))[:, :12]
        linear = to_model_latents(vae, vae.encoder.proj(torch.nn.functional.pixel_unshuffle(y * 2 - 1, 8)))
    assert torch.allclose(h, linear, atol=1e-4)
    restorer = SpirePipeline.from_pretrained(run_loop(spire_config, spire_task))
    assert restorer.adaptor.config.condition_stem == "unshuffle"
    out = restorer(y[:1], num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.shape == (1, 3, 64, 64) and bool(torch.isfinite(out.images).all())


def test_pixel_loss_weighting_needs_a_shortcut_vae(tmp_path):
    overrides = [*SMALL, f"output_dir={tmp_path}", "model.loss_weighting=pixel"]
    config = load_config(TrainConfig, "configs/tiny-smoke.yaml", overrides)
    with pytest.raises(ValueError, match="loss_weighting: pixel needs a VAE with the linear shortcut"):
        SpireTask(config)


def test_max_timestep_limits_the_training_timesteps():
    config = load_config(TrainConfig, "configs/tiny-smoke.yaml", [*SMALL, "model.max_timestep=150"])
    task = SpireTask(config)
    assert task.max_timestep == 150
    scheduler = task.frozen.scheduler
    t = sample_timesteps(SampleRandom(0, range(20000)), scheduler, task.max_timestep)
    assert int(t.min()) == 0 and int(t.max()) == 149
    assert abs(float(t.float().mean()) - 74.5) < 0.02 * 74.5  # uniform on [0, 150)
    full = sample_timesteps(SampleRandom(0, range(20000)), scheduler)
    assert int(full.max()) == scheduler.config.num_train_timesteps - 1
    for bad in ("0", "1001"):
        bad_config = load_config(
            TrainConfig, "configs/tiny-smoke.yaml", [*SMALL, f"model.max_timestep={bad}"]
        )
        with pytest.raises(ValueError, match=r"model.max_timestep must be in \[1, 1000\]"):
            SpireTask(bad_config)


def test_overfitting_a_fixed_batch_halves_the_loss():
    config = load_config(TrainConfig, "configs/tiny-smoke.yaml", SMALL)
    task = SpireTask(config)
    from spire_ir.data import fixed_samples

    samples = fixed_samples(config.data, 2)
    batch = {
        k: (torch.stack([s[k] for s in samples]) if k in ("x", "y") else [s[k] for s in samples])
        for k in ("x", "y", "c_s", "c_r")
    }
    optimiser = torch.optim.AdamW(task.trainable.parameters(), lr=1e-3)
    losses = []
    for _ in range(100):
        loss = spire_loss(task.frozen, task.trainable, batch, SampleRandom(0, range(2)))  # same noise and t
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] <= 0.5 * losses[0], (losses[0], losses[-1])


def _spire(args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "spire_ir", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs
    )


def _kill_after_checkpoint_and_resume(common: list[str], run, checkpoint: str, env: dict) -> None:
    """Start `spire train` into ``run``, SIGKILL it once ``checkpoint`` is written, then resume it to the end."""
    victim = _spire([*common, "--output-dir", str(run)], env=env)
    deadline = time.time() + 240
    while not (run / checkpoint).exists():
        assert time.time() < deadline and victim.poll() is None, "no checkpoint before the run ended"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not (run / "pipeline").exists()  # it really died mid-run
    resumed = _spire([*common, "--output-dir", str(run), "--resume", "latest"], env=env)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    common = ["train", "configs/tiny-smoke.yaml", "--set", "max_steps=40", "--set", "checkpoint_every=4",
              "--set", "ema_decay=0.9",
              "--set", "keep_checkpoints=2", "--set", "validate_every=0", "--set", "num_validation=0",
              "--set", "progress=false", "--set", "batch_size=2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = _spire([*common, "--output-dir", str(tmp_path / "a")], env=env)
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()

    _kill_after_checkpoint_and_resume(common, tmp_path / "b", "checkpoint-0000008", env)

    final_a = load_file(str(tmp_path / "a" / "adaptor" / "diffusion_pytorch_model.safetensors"))
    final_b = load_file(str(tmp_path / "b" / "adaptor" / "diffusion_pytorch_model.safetensors"))
    assert final_a.keys() == final_b.keys()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["steps"] == 40


def test_cli_train_writes_checkpoints_grid_and_a_restorable_pipeline(tmp_path):
    run = tmp_path / "run"
    args = ["train", "configs/tiny-smoke.yaml", "--output-dir", str(run), "--set", "max_steps=6",
            "--set", "checkpoint_every=3", "--set", "validate_every=3", "--set", "progress=false"]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-0000003", "checkpoint-0000006"]
    assert (run / "validation" / "step-0000003.png").is_file() and (run / "config.yaml").is_file()
    assert (run / "argv.txt").read_text().startswith("spire train") and (run / "git.txt").is_file()
    assert list((run / "logs").rglob("events.out.tfevents.*"))
    assert main([*args[:-2], "--set", "max_steps=8", "--resume", "latest"]) == 0
    assert (run / "checkpoint-0000006").is_dir() and json.loads((run / "summary.json").read_text())[
        "steps"
    ] == 8
    from helpers import make_photo
    from spire_ir.utils.images import save_image

    save_image(make_photo(40, 40), tmp_path / "photo.png")
    assert (
        main(
            [
                "restore",
                str(tmp_path / "photo.png"),
                "--model",
                str(run / "pipeline"),
                "-o",
                str(tmp_path / "out"),
                "--steps",
                "2",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / "photo.png").is_file()


def test_unknown_config_key_is_a_cli_error(capsys):
    assert main(["train", "configs/tiny-smoke.yaml", "--set", "optim.learning_rate=1"]) == 2
    assert "valid keys here" in capsys.readouterr().err


@pytest.mark.parametrize(
    "path", ["configs/ablations/controlnet-sr.yaml", "configs/ablations/controlnet-sr-prompts.yaml",
             "configs/ablations/ours-wo-param.yaml"],
)
def test_ablation_configs_are_configuration_only(path):
    config = load_config(TrainConfig, path)
    reference = load_config(TrainConfig, "configs/ablations/ours.yaml")
    differing = {k for k in ("fusion",) if getattr(config.model, k) != getattr(reference.model, k)}
    differing |= {
        k
        for k in ("restoration_prompt", "semantic_prompt")
        if getattr(config.data, k) != getattr(reference.data, k)
    }
    assert differing  # something differs...
    assert (
        config.max_steps == reference.max_steps and config.optim == reference.optim
    )  # ...at the same budget


# ------------------------------------------------------------------ spire-tiny's design: denoise prior + bridge

BRIDGE_SMALL = [s for s in SMALL if not s.startswith("data.resolution")] + ["data.resolution=32"]


@pytest.fixture(scope="module")
def bridge_base(tmp_path_factory):
    out = tmp_path_factory.mktemp("bridge-base")
    config = load_config(BaseTrainConfig, "configs/tiny-bridge-base.yaml", [*BRIDGE_SMALL, f"output_dir={out}"])
    return run_loop(config, BaseTask(config))


def test_denoise_prior_draws_sigmas_from_the_stated_mixture(tmp_path):
    def draws(p):
        overrides = [f"output_dir={tmp_path}", f"model.p_sigma_uniform={p}"]
        task = BaseTask(load_config(BaseTrainConfig, "configs/tiny-bridge-base.yaml", overrides))
        return task.sample_sigmas(SampleRandom(0, range(40000)))

    uniform, log_uniform, mixed = draws(1.0), draws(0.0), draws(0.5)
    assert float(uniform.max()) <= 0.05 and abs(float(uniform.mean()) - 0.025) < 0.0005
    low, high = 1 / 255, 0.5
    assert float(log_uniform.min()) >= low and float(log_uniform.max()) <= high
    expected = (torch.log(torch.tensor(low)) + torch.log(torch.tensor(high))) / 2
    # log σ is uniform over a width of 6.23: the mean of 40000 has a standard error of 0.009; allow 4 of them
    assert abs(float(log_uniform.log().mean() - expected)) < 0.036
    # half the mixture is U[0, 0.05]; of the log-uniform half, log(0.05·255)/log(0.5·255) lies below 0.05
    share = 0.5 + 0.5 * float(torch.log(torch.tensor(0.05 * 255)) / torch.log(torch.tensor(0.5 * 255)))
    assert abs(float((mixed <= 0.05).float().mean()) - share) < 0.01


def test_denoise_prior_starts_as_the_identity_and_exports_a_resshift_base(bridge_base):
    from diffusers import UNet2DConditionModel

    from spire_ir.schedulers import ResShiftScheduler

    assert json.loads((bridge_base / "scheduler" / "scheduler_config.json").read_text())["_class_name"] == (
        "ResShiftScheduler"
    )
    config = load_config(BaseTrainConfig, "configs/tiny-bridge-base.yaml", ["output_dir=unused"])
    fresh = BaseTask(config).trainable
    x = torch.rand(2, 12, 16, 16)
    out = fresh(x, torch.tensor([10.0, 40.0]), encoder_hidden_states=torch.randn(2, 77, 32)).sample
    assert torch.equal(out, torch.zeros_like(out))  # x̂ = x_σ + 0
    trained = UNet2DConditionModel.from_pretrained(bridge_base / "unet")
    assert trained.conv_out.weight.abs().sum() > 0
    assert isinstance(ResShiftScheduler.from_pretrained(bridge_base / "scheduler"), ResShiftScheduler)


def test_bridge_mixture_puts_the_stated_share_at_eta_one():
    from spire_ir.training.spire import sample_etas

    etas = sample_etas(SampleRandom(0, range(40000)), 0.3)
    ones = etas == 1
    assert abs(float(ones.float().mean()) - 0.3 - 0.7 / 40000) < 0.01
    rest = etas[~ones]
    assert float(rest.min()) > 0 and abs(float(rest.mean()) - 0.5) < 0.01


def test_bridge_training_moves_the_adaptor_only_and_exports_its_ema(bridge_base, tmp_path):
    from spire_ir.models.adaptor import SpireAdaptor

    overrides = [*BRIDGE_SMALL, f"output_dir={tmp_path}", f"model.base={bridge_base}", "ema_decay=0.5",
                 "data.degradation.parameterized.ranges={deblur: [0.5, 4.0]}",
                 "data.degradation.parameterized.noise_high_prob=0.1"]  # fmt: skip
    config = load_config(TrainConfig, "configs/tiny-bridge.yaml", overrides)
    task = SpireTask(config)
    trainable = _snapshot(task.trainable)
    frozen = {k: _snapshot(getattr(task.frozen, k)) for k in ("unet", "text_encoder")}
    run_loop(config, task)
    assert _changed(trainable, task.trainable) == set(trainable)
    for name, before in frozen.items():
        assert _changed(before, getattr(task.frozen, name)) == set(), name
    exported = SpireAdaptor.from_pretrained(tmp_path / "adaptor")
    raw = dict(task.trainable.named_parameters())
    differs = [n for n, p in exported.named_parameters() if not torch.allclose(p, raw[n])]
    assert differs  # the export is the moving average, not the last weights
    assert exported.config.numeric_channel
    # the ranges it saw, for the pipeline's prompt warnings: the configured deblur range, Table 2's others,
    # denoise widened by the high-noise draws
    assert exported.config.train_ranges == {
        "deblur": [0.5, 4.0], "upsample": [1.0, 7.0], "denoise": [0.0, 0.3], "dejpeg": [30.0, 92.0]
    }  # fmt: skip


def test_bridge_objective_needs_a_bridge_base(bridge_base, tmp_path):
    with pytest.raises(ValueError, match="objective"):
        SpireTask(load_config(TrainConfig, "configs/tiny-smoke.yaml", [f"output_dir={tmp_path}",
                                                                       "model.objective=bridge"]))  # fmt: skip
    with pytest.raises(ValueError, match="objective"):
        SpireTask(load_config(TrainConfig, "configs/tiny-bridge.yaml", [f"output_dir={tmp_path}",
                                                                        f"model.base={bridge_base}",
                                                                        "model.objective=diffusion"]))  # fmt: skip


def test_stop_after_ends_early_on_the_full_schedule(tmp_path):
    def lrs(overrides, out):
        config = load_config(TrainConfig, "configs/tiny-smoke.yaml", [*SMALL, f"output_dir={out}", "max_steps=8",
                                                                      "optim.schedule=cosine", *overrides])  # fmt: skip
        run_loop(config, SpireTask(config))
        return [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines() if "lr" in line]

    full = lrs(["log_every=1"], tmp_path / "full")
    early = lrs(["log_every=1", "stop_after=4"], tmp_path / "early")
    assert len(full) == 8 and early == full[:4]  # the same schedule, cut at step 4
    assert json.loads((tmp_path / "early" / "summary.json").read_text())["steps"] == 4


@pytest.mark.parametrize("prior", ["joint", "none"])
def test_prior_ablation_trains_the_prior_with_the_adaptor(bridge_base, tmp_path, prior):
    from diffusers import UNet2DConditionModel

    overrides = [*BRIDGE_SMALL, f"output_dir={tmp_path}", f"model.base={bridge_base}", f"model.prior={prior}"]
    config = load_config(TrainConfig, "configs/tiny-bridge.yaml", overrides)
    task = SpireTask(config)
    pretrained = UNet2DConditionModel.from_pretrained(bridge_base / "unet")
    start = dict(task.trainable.unet.named_parameters())
    same = all(torch.equal(p, start[n]) for n, p in pretrained.named_parameters())
    assert same == (prior == "joint")  # "none" starts afresh, "joint" from the pretrained prior
    before = _snapshot(task.trainable.unet)
    run_loop(config, task)
    assert _changed(before, task.trainable.unet) == set(before)
    exported = UNet2DConditionModel.from_pretrained(tmp_path / "pipeline" / "unet")
    trained = dict(task.trainable.unet.named_parameters())
    assert not all(torch.equal(p, pretrained.state_dict()[n]) for n, p in exported.named_parameters())
    assert exported.conv_out.weight.shape == trained["conv_out.weight"].shape


def test_train_only_trains_the_matching_parameters_and_exports_the_rest_as_loaded(bridge_base, tmp_path):
    from diffusers import UNet2DConditionModel

    overrides = [*BRIDGE_SMALL, f"output_dir={tmp_path}", f"model.base={bridge_base}", "model.prior=joint",
                 "ema_decay=0.9"]  # fmt: skip
    config = load_config(TrainConfig, "configs/tiny-bridge.yaml", overrides)
    config.model.train_only = ["unet.*.attn2.*"]  # the prior's cross-attention: what reads the semantic prompt
    task = SpireTask(config)
    before = _snapshot(task.trainable)
    attn2 = {name for name in before if name.startswith("unet.") and ".attn2." in name}
    assert attn2 and {n for n, p in task.trainable.named_parameters() if p.requires_grad} == attn2
    run_loop(config, task)
    assert _changed(before, task.trainable) == attn2
    pretrained = UNet2DConditionModel.from_pretrained(bridge_base / "unet").state_dict()
    exported = UNet2DConditionModel.from_pretrained(tmp_path / "pipeline" / "unet").state_dict()
    differ = {name for name in pretrained if not torch.equal(pretrained[name], exported[name])}
    assert differ == {name.removeprefix("unet.") for name in attn2}  # the EMA export keeps the frozen rest too

    for patterns, match in ((["unet.*"], "prior: joint or none"), (["unet.*.attn3.*"], "matches no parameter"),
                            ([], "train nothing")):  # fmt: skip
        config = load_config(TrainConfig, "configs/tiny-bridge.yaml", overrides)
        config.model.prior = "frozen" if patterns == ["unet.*"] else "joint"
        config.model.train_only = patterns
        with pytest.raises(ValueError, match=match):
            SpireTask(config)


def _adaptor_weights(run) -> torch.Tensor:
    weights = load_file(str(run / "adaptor" / "diffusion_pytorch_model.safetensors"))
    return torch.cat([weights[k].flatten() for k in sorted(weights)])


@pytest.mark.slow
def test_two_processes_with_batch_b_train_as_one_process_with_batch_2b(tmp_path):
    common = ["train", "configs/tiny-smoke.yaml", "--set", "max_steps=4", "--set", "checkpoint_every=0",
              "--set", "validate_every=0", "--set", "num_validation=0", "--set", "progress=false",
              "--set", "optim.lr=1e-3"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the 8-GPU accelerate config with two processes: on a machine without CUDA they join over gloo
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "configs/accelerate/8gpu.yaml",
              "--num_processes", "2", "-m", "spire_ir"]  # fmt: skip
    runs = {
        "one, batch 4": [sys.executable, "-m", "spire_ir", *common, "--set", "batch_size=4"],
        "two, batch 2 each": [*launch, *common, "--set", "batch_size=2"],
        "one, batch 2": [sys.executable, "-m", "spire_ir", *common, "--set", "batch_size=2"],
    }
    weights = {}
    for index, (name, command) in enumerate(runs.items()):
        done = subprocess.run([*command, "--output-dir", str(tmp_path / str(index))], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        weights[name] = _adaptor_weights(tmp_path / str(index))
    same = (weights["one, batch 4"] - weights["two, batch 2 each"]).abs()
    other = (weights["one, batch 4"] - weights["one, batch 2"]).abs()
    # measured: max 4e-5, RMS 2e-7 (the all-reduce sums in another order; Adam scales that up where gradients are
    # tiny); a run on other data differs by max 3e-3, RMS 8e-4
    assert float(same.max()) < 2e-4 and float(same.pow(2).mean().sqrt()) < 1e-5
    assert float(other.max()) > 10 * float(same.max()) and float(other.pow(2).mean().sqrt()) > 1e-4


def _close(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    difference = (a - b).abs()
    return float(difference.max()), float(difference.pow(2).mean().sqrt())


@pytest.mark.slow
def test_fsdp_shards_trains_as_ddp_and_writes_checkpoints_any_run_resumes(tmp_path):
    import re
    import shutil

    common = ["train", "configs/tiny-smoke.yaml", "--set", "max_steps=4", "--set", "checkpoint_every=2",
              "--set", "keep_checkpoints=2", "--set", "validate_every=2", "--set", "num_validation=1",
              "--set", "validation_steps=2", "--set", "ema_decay=0.9", "--set", "progress=false",
              "--set", "optim.lr=1e-3"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
              "spire_ir", "-v"]  # fmt: skip
    runs = {
        "ddp": [*launch, *common, "--set", "batch_size=2"],
        "fsdp": [*launch, *common, "--set", "batch_size=2", "--set", "sharding=fsdp"],
    }
    logs = {}
    for name, command in runs.items():
        done = subprocess.run([*command, "--output-dir", str(tmp_path / name)], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        logs[name] = done.stderr
    # each process stores about half of the adaptor (dim-0 shards; the first takes the odd rows)
    shares = {int(rank): (int(local), int(total)) for rank, local, total in
              re.findall(r"process (\d) stores (\d+) of (\d+) parameter elements", logs["fsdp"])}  # fmt: skip
    assert sorted(shares) == [0, 1] and "stores" not in logs["ddp"]
    total = shares[0][1]
    assert shares[0][0] + shares[1][0] == total and max(shares[0][0], shares[1][0]) < 0.52 * total
    assert (tmp_path / "fsdp" / "validation" / "step-0000002.png").is_file()

    # FSDP reduce-scatters where DDP all-reduces: the same training up to the float rounding of the sums (measured
    # on CPU with two processes: equal bit for bit; the DDP test's bound is kept for other counts and backends)
    biggest, rms = _close(_adaptor_weights(tmp_path / "ddp"), _adaptor_weights(tmp_path / "fsdp"))
    assert biggest < 2e-4 and rms < 1e-5
    for part in ("model", "optimizer", "ema"):  # the checkpoints are full tensors in the same layout
        ddp = load_file(str(tmp_path / "ddp" / "checkpoint-0000002" / f"{part}.safetensors"))
        fsdp = load_file(str(tmp_path / "fsdp" / "checkpoint-0000002" / f"{part}.safetensors"))
        assert ddp.keys() == fsdp.keys() and all(ddp[k].shape == fsdp[k].shape for k in ddp)
        assert max(_close(ddp[k].float(), fsdp[k].float())[0] for k in ddp) < 2e-4

    # the FSDP checkpoint resumes sharded (bit-exactly) and in one process with the same global batch
    for name, command in {"fsdp-resumed": runs["fsdp"],
                          "one-process": [sys.executable, "-m", "spire_ir", *common, "--set", "batch_size=4"]}.items():  # fmt: skip
        run = tmp_path / name
        shutil.copytree(tmp_path / "fsdp" / "checkpoint-0000002", run / "checkpoint-0000002")
        done = subprocess.run([*command, "--output-dir", str(run), "--resume", "latest"], env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert json.loads((run / "summary.json").read_text())["steps"] == 4
    assert torch.equal(_adaptor_weights(tmp_path / "fsdp"), _adaptor_weights(tmp_path / "fsdp-resumed"))
    biggest, rms = _close(_adaptor_weights(tmp_path / "fsdp"), _adaptor_weights(tmp_path / "one-process"))
    assert biggest < 2e-4 and rms < 1e-5  # measured: max 6e-8, RMS 7e-10


def _exported(run, part: str) -> torch.Tensor:
    weights = load_file(str(run / "pipeline" / part / "diffusion_pytorch_model.safetensors"))
    return torch.cat([weights[k].float().flatten() for k in sorted(weights)])


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["frozen", "joint"])
def test_the_bridge_objective_trains_in_two_processes_as_in_one(bridge_base, tmp_path, prior):
    # spire-tiny's recipe: the adaptor alone (frozen prior), or the adaptor and the prior (joint), under DDP and
    # under sharding: fsdp
    common = ["train", "configs/tiny-bridge.yaml", "--set", f"model.base={bridge_base}", "--set", f"model.prior={prior}",
              "--set", "max_steps=3", "--set", "progress=false"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "spire_ir"]
    runs = {
        "one, batch 4": [sys.executable, "-m", "spire_ir", *common, "--set", "batch_size=4"],
        "ddp, batch 2 each": [*two, *common, "--set", "batch_size=2"],
        "fsdp, batch 2 each": [*two, *common, "--set", "batch_size=2", "--set", "sharding=fsdp"],
        "one, batch 2": [sys.executable, "-m", "spire_ir", *common, "--set", "batch_size=2"],
    }
    for index, (name, command) in enumerate(runs.items()):
        done = subprocess.run([*command, "--output-dir", str(tmp_path / str(index))], env=env, capture_output=True,
                              text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, f"{name}: {done.stderr[-3000:]}"
    for part in ["adaptor", "unet"] if prior == "joint" else ["adaptor"]:
        one, other = _exported(tmp_path / "0", part), _exported(tmp_path / "3", part)
        for index in (1, 2):
            # measured: max 3e-6, RMS 2e-8 for both; unsynced gradients would leave process 0 at "one, batch 2",
            # max 5e-3 and RMS 7e-4 to 1.4e-3 away
            biggest, rms = _close(one, _exported(tmp_path / str(index), part))
            assert biggest < 5e-5 and rms < 1e-6, (part, index, biggest, rms)
        assert _close(one, other)[1] > 1e-4


@pytest.mark.slow
def test_webdataset_run_with_two_workers_repeats_validates_and_resumes_bit_exactly(tmp_path):
    from helpers import write_shards

    pattern = write_shards(tmp_path / "shards", shards=3, per_shard=6, corrupt={(2, 4)}, size=48)
    # 18 samples, 8 held out for validation: 16 steps of 2 take three passes over the other 10
    common = ["train", "configs/tiny-smoke.yaml", "--set", "data.source=webdataset", "--set", f"data.path={pattern}",
              "--set", "data.num_workers=2", "--set", "data.shuffle_buffer=4", "--set", "batch_size=2",
              "--set", "max_steps=16", "--set", "checkpoint_every=4", "--set", "validate_every=8",
              "--set", "num_validation=2", "--set", "validation_steps=2", "--set", "progress=false"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    straight = _spire([*common, "--output-dir", str(tmp_path / "a")], env=env)
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["steps"] == 16 and summary["samples_seen"] >= 16 * 2 - summary["skipped_files"]
    assert summary["skipped_files"] >= 2  # the corrupt member, once in each of its passes
    assert (tmp_path / "a" / "validation" / "step-0000008.png").is_file()
    logged = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in logged if "val/psnr" in entry] == [8, 16]

    _kill_after_checkpoint_and_resume(common, tmp_path / "b", "checkpoint-0000008", env)
    assert torch.equal(_adaptor_weights(tmp_path / "a"), _adaptor_weights(tmp_path / "b"))
    assert json.loads((tmp_path / "b" / "summary.json").read_text()) == summary


@pytest.mark.parametrize("path", sorted(Path("configs/accelerate").glob("*.yaml")), ids=lambda p: p.name)
def test_accelerate_configs_are_valid_for_the_installed_accelerate(path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    config = ClusterConfig.from_yaml_file(str(path))  # refuses keys this accelerate does not know
    args = launch_command_parser().parse_args(["--config_file", str(path), "-m", "spire_ir", "train"])
    args, _, _ = _validate_launch_command(args)
    per_machine = args.num_processes // args.num_machines
    assert per_machine * args.num_machines == args.num_processes
    expected = {"1gpu.yaml": (1, 1), "8gpu.yaml": (8, 1), "2x8gpu.yaml": (16, 2)}[path.name]
    assert (args.num_processes, args.num_machines) == expected
    assert args.multi_gpu == (config.num_processes > 1)

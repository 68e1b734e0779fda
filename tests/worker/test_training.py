"""Training end to end on tiny synthetic data: run, checkpoint, resume, extend, export, load."""

import csv
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from worker.engine.base import Condition
from worker.engine.network import NetworkConfig
from worker.engine.network_engine import NetworkEngine
from worker.training.degradation import DegradationConfig
from worker.training.export import export_weights
from worker.training.trainer import RestartedCosine, TrainConfig, Trainer


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    for folder, count in (("train/a", 3), ("benchmark/set5", 2)):
        (tmp_path / folder).mkdir(parents=True)
        for i in range(count):
            yy, xx = np.mgrid[0:96, 0:120]
            arr = np.stack([xx * 2, yy * 2, (xx * yy) % 256], -1) + rng.normal(0, 10, (96, 120, 3))
            Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(tmp_path / folder / f"{i}.png")
    return tmp_path


SMALL = NetworkConfig(blocks=1, channels=8)


def trainer(data, run_dir, steps, network=SMALL, **options):
    config = TrainConfig(network=network, steps=steps, batch=2, lr_patch=12,
                         **{"warmup_steps": 2, "validate_every": 2, "checkpoint_minutes": 0, "precision": "float32",
                            **options})
    return Trainer(run_dir, config, [data / "train"], data / "benchmark" / "set5")


def test_train_resume_extend_and_export(data, tmp_path):
    run_dir = tmp_path / "run"
    assert trainer(data, run_dir, 4).run()["step"] == 4
    iterations = json.loads((run_dir / "state.json").read_text())["step"]
    assert iterations == 4 and (run_dir / "checkpoint.keras").exists() and (run_dir / "psnr.png").exists()

    assert trainer(data, run_dir, 6).run()["step"] == 6  # resumes from step 4, extends the schedule
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4, 6]
    assert all(float(r["set5_x2"]) > 10 for r in rows)
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["steps"] == 6 and saved["restarts"][0]["at_step"] == 4

    weights = export_weights(run_dir, tmp_path / "models", name="tiny")
    record = json.loads((tmp_path / "models" / "tiny.json").read_text())
    from worker.engine.archs import get_arch
    from worker.engine.network import scale_model

    assert record["training"]["steps_done"] == 6
    assert record["parameters"]["x4"] == scale_model(get_arch("residual_sr").build(SMALL), 4).count_params()
    assert (record["arch"], record["conditioned"], record["degradation"]) == ("residual_sr", False, None)
    assert record["training"]["data"]["folders"] == {"a": 3} and record["training"]["data"]["images"] == 3
    engine = NetworkEngine(weights)
    out = engine.upscale(np.zeros((20, 30, 3), np.uint8), 3)
    assert out.size == (90, 60)


def test_conditioned_network_fine_tunes_from_a_shipped_one_on_degraded_patches(data, tmp_path):
    """Warm start (the head grows strength and JPEG grid channels), degradation-labelled batches with their
    grids, JPEG validation, export, and an engine that runs the result."""
    first = trainer(data, tmp_path / "plain", 2)
    first.run()
    export_weights(tmp_path / "plain", tmp_path / "models", name="plain")
    run_dir = tmp_path / "cond"
    state = trainer(data, run_dir, 2, NetworkConfig(blocks=1, channels=8, jpeg_grid=8), arch="residual_sr_cond",
                    degradation=DegradationConfig(), init_from=str(tmp_path / "models" / "plain.weights.h5")).run()
    assert {"set5_x2", "set5_q75_x2"} <= set(state["last_psnr"])
    weights = export_weights(run_dir, tmp_path / "models")
    record = json.loads((tmp_path / "models" / "residual_sr_cond.json").read_text())
    assert record["arch"] == "residual_sr_cond" and record["conditioned"] is True
    assert record["network"]["jpeg_grid"] == 8
    assert record["degradation"]["jpeg_quality"] == [30, 95]
    assert record["training"]["data"]["started_from"]["name"] == "plain"
    engine = NetworkEngine(weights)
    image = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    assert engine.conditioned and engine.upscale(image, 2, condition=Condition(0.5, (2, 7))).size == (48, 40)


def shipped_like(tmp_path, arch: str, config: NetworkConfig, seed: int):
    """A network of random (non-zero) weights saved as ``src.weights.h5`` + ``src.json``, like a shipped one."""
    from worker.engine.archs import get_arch

    source = get_arch(arch).build(config)
    rng = np.random.default_rng(seed)
    for weight in source.weights:
        weight.assign(rng.normal(0, 0.1, weight.shape).astype("float32"))
    source.save_weights(tmp_path / "src.weights.h5")
    (tmp_path / "src.json").write_text(json.dumps({"name": "src", "arch": arch, "network": config.to_dict()}))
    return source, rng


def test_warm_start_reproduces_the_source_network_at_strength_zero(tmp_path):
    import keras

    from worker.engine.archs import get_arch
    from worker.engine.network import scale_model
    from worker.training.warm_start import warm_start

    config = NetworkConfig(blocks=1, channels=8)
    source, rng = shipped_like(tmp_path, "residual_sr", config, seed=1)
    target = get_arch("residual_sr_cond").build(config)
    assert "head_x2" in warm_start(target, tmp_path / "src.weights.h5")
    x = rng.random((1, 10, 10, 3)).astype("float32")
    expected = np.asarray(scale_model(source, 2)(x))
    got = np.asarray(scale_model(target, 2)([x, np.zeros((1, 1), "float32")]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # and a network told the JPEG grid starts as the one it grows from, whatever the grid
    told = get_arch("residual_sr_cond").build(replace(config, jpeg_grid=8))
    warm_start(told, tmp_path / "src.weights.h5")
    grid = np.array([[1.0, 3.0, 6.0]], "float32")
    got = np.asarray(scale_model(told, 2)([x, np.zeros((1, 1), "float32"), grid]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_warm_start_into_a_deeper_network_starts_as_the_shallower_one(tmp_path):
    from worker.engine.archs import get_arch
    from worker.engine.network import scale_model
    from worker.training.warm_start import warm_start

    shallow, deep = NetworkConfig(blocks=1, channels=8), NetworkConfig(blocks=3, channels=8)
    source, rng = shipped_like(tmp_path, "residual_sr_cond", shallow, seed=2)
    target = get_arch("residual_sr_cond").build(deep)
    copied = warm_start(target, tmp_path / "src.weights.h5")
    assert "trunk_b0_conv2" in copied and "trunk_b2_conv2" not in copied
    x, strength = rng.random((1, 12, 12, 3)).astype("float32"), np.full((1, 1), 0.4, "float32")
    expected = np.asarray(scale_model(source, 3)([x, strength]))
    got = np.asarray(scale_model(target, 3)([x, strength]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the new blocks' first convs keep their random start, so training can move them
    assert np.abs(target.get_layer("trunk_b2_conv1").get_weights()[0]).max() > 0


def test_warm_start_into_a_network_with_a_half_resolution_branch_starts_as_the_one_without(tmp_path):
    from worker.engine.archs import get_arch
    from worker.engine.network import scale_model
    from worker.training.warm_start import warm_start

    plain = NetworkConfig(blocks=1, channels=8, jpeg_grid=8)
    source, rng = shipped_like(tmp_path, "residual_sr_cond", plain, seed=3)
    target = get_arch("residual_sr_cond").build(replace(plain, half_res_blocks=2, half_res_channels=16))
    assert "branch_in" not in warm_start(target, tmp_path / "src.weights.h5")
    x, strength = rng.random((1, 13, 11, 3)).astype("float32"), np.full((1, 1), 0.4, "float32")  # odd sides
    grid = np.array([[1.0, 2.0, 5.0]], "float32")
    expected = np.asarray(scale_model(source, 4)([x, strength, grid]))
    got = np.asarray(scale_model(target, 4)([x, strength, grid]))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the branch's inner convs start random; only its closing conv is zero (so its gradient reaches them)
    assert np.abs(target.get_layer("branch_b1_conv1").get_weights()[0]).max() > 0
    assert np.abs(target.get_layer("branch_out").get_weights()[0]).max() == 0


def test_precision_follows_the_cpu_flags():
    from worker.engine.precision import choose_precision

    assert choose_precision("auto", {"avx2", "fma"}, backend="tensorflow", gpu=False) == "float32"
    assert choose_precision("auto", {"avx2", "avx512_bf16"}, backend="tensorflow", gpu=False) == "bfloat16"
    assert choose_precision("auto", {"amx_bf16"}, backend="tensorflow", gpu=False) == "bfloat16"
    assert choose_precision("float32", {"avx512_bf16"}, backend="tensorflow", gpu=False) == "float32"
    assert choose_precision("auto", {"amx_bf16"}, backend="tensorflow", gpu=True) == "float32"  # ask for bf16 there
    assert choose_precision("auto", {"avx2"}, backend="jax", gpu=True) == "bfloat16"
    with pytest.raises(ValueError, match="unknown precision"):
        choose_precision("float16")


def test_a_run_resumed_with_the_luma_loss_keeps_its_optimizer_and_records_the_change(data, tmp_path):
    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    state = trainer(data, run_dir, 2, loss="luma_l1").run()  # not extended: the same schedule goes on
    assert state["step"] == 2
    state = trainer(data, run_dir, 4, loss="luma_l1").run()
    saved = json.loads((run_dir / "config.json").read_text())
    assert state["step"] == 4 and saved["loss"] == "luma_l1" and saved["restarts"][0]["loss_before"] == "l1"


def test_the_luma_loss_weighs_luma_errors_four_times_colour_errors():
    from worker.training.trainer import luma_weighted_l1

    target = np.full((1, 2, 2, 3), 0.5, np.float32)
    grey_error = np.asarray(luma_weighted_l1(target, target + 0.1)).mean()  # all of it in luma
    colour = np.array([0.1, -0.1 * 0.299 / 0.587, 0.0], np.float32)  # zero luma: all of it in colour
    colour_error = np.asarray(luma_weighted_l1(target, target + colour)).mean()
    assert grey_error == pytest.approx(0.1, rel=1e-5)
    assert colour_error == pytest.approx(0.25 * 0.5 * (abs(-0.0) + 0.1), rel=1e-4)


def test_resuming_a_run_unchanged_records_no_restart_and_keeps_its_loss(data, tmp_path):
    from worker.training.trainer import config_for

    run_dir = tmp_path / "run"
    assert config_for(run_dir).loss == "l1"  # a new run
    options = {"arch": "residual_sr_cond", "degradation": DegradationConfig(), "loss": "luma_l1"}
    trainer(data, run_dir, 2, **options).run()
    trainer(data, run_dir, 2, **options).run()
    saved = json.loads((run_dir / "config.json").read_text())
    assert "restarts" not in saved  # the same mix and loss: nothing to record
    assert config_for(run_dir).loss == "luma_l1"  # what `upscaler train` resumes with when --loss is not given


def test_a_time_limited_run_fits_its_cosine_to_the_measured_step_rate(data, tmp_path):
    import keras

    run_dir = tmp_path / "timed"
    config = TrainConfig(network=SMALL, steps=100_000, batch=2, lr_patch=12, warmup_steps=5, validate_every=10_000,
                         checkpoint_minutes=0, precision="float32", time_limit_minutes=0.25)
    state = Trainer(run_dir, config, [data / "train"], data / "benchmark" / "set5").run()
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["fitted_at_step"] == 20 and saved["seconds_per_step"] > 0  # warm-up end, at least step 20
    assert 20 < saved["steps"] < 100_000  # the plan gave way to what fits in the time
    assert state["step"] == saved["steps"] or state["seconds"] >= 15  # annealed to the end, or stopped at the limit
    optimizer = keras.models.load_model(run_dir / "checkpoint.keras").optimizer
    schedule = RestartedCosine(**optimizer.get_config()["learning_rate"]["config"])  # what the checkpoint resumes with
    assert schedule.total_steps == saved["steps"]
    assert float(schedule(saved["steps"])) == pytest.approx(0.01 * config.learning_rate)  # fully annealed there
    assert float(schedule(5)) == pytest.approx(config.learning_rate)  # the warm-up's end, as planned
    (session,) = saved["trained_on"]
    assert session["from_step"] == 0 and session["backend"] == keras.backend.backend() and session["device"]

    Trainer(run_dir, config, [data / "train"], data / "benchmark" / "set5").run()  # the same command again
    again = json.loads((run_dir / "config.json").read_text())
    assert again["steps"] == saved["steps"] and "restarts" not in again  # resumed its fitted schedule, no new plan


def test_patch_worker_processes_send_float_batches_from_independent_streams(data):
    from worker.training.patches import SamplerSpec, batch_stream, find_images

    spec = SamplerSpec(tuple(find_images([data / "train"])), (2, 3), 12, 2, seed=5, degradation=DegradationConfig())
    stream = batch_stream(spec, workers=2)
    try:
        first, second = next(stream), next(stream)
    finally:
        stream.close()
    for batch in (first, second):
        assert [a.shape for a in batch.lrs] == [(2, 12, 12, 3)] * 2
        assert [a.shape for a in batch.hrs] == [(2, 24, 24, 3), (2, 36, 36, 3)]
        assert all(a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 for a in batch.lrs + batch.hrs)
        assert [a.shape for a in batch.strengths] == [(2, 1)] * 2 and [a.shape for a in batch.grids] == [(2, 3)] * 2
    assert not np.array_equal(first.hrs[0], second.hrs[0])  # two streams (or two draws), not one repeated


@pytest.mark.parametrize("workers", [0, 1])
def test_a_failing_patch_worker_stops_training_with_its_error_instead_of_hanging(data, tmp_path, workers):
    from worker.training.patches import SamplerSpec, WorkerFailed, batch_stream

    spec = SamplerSpec((tmp_path / "missing.png",), (2,), 12, 2, seed=5)
    stream = batch_stream(spec, workers=workers)
    with pytest.raises(WorkerFailed, match=r"missing\.png"):
        next(stream)


def test_export_writes_a_finished_runs_weights_without_training_it(data, tmp_path):
    import argparse

    from cli.train import export

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    state = (run_dir / "state.json").read_text()
    assert export(argparse.Namespace(run_dir=run_dir, to=tmp_path / "models", name="tiny")) == 0
    record = json.loads((tmp_path / "models" / "tiny.json").read_text())
    assert record["training"]["steps_done"] == 2 and (tmp_path / "models" / "tiny.weights.h5").exists()
    assert (run_dir / "state.json").read_text() == state  # nothing trained
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        export(argparse.Namespace(run_dir=tmp_path, to=tmp_path / "models", name=None))


def test_data_provenance_names_images_not_their_file_format(tmp_path):
    from worker.training.trainer import data_provenance

    png = data_provenance([tmp_path / "bsd200" / "1.png", tmp_path / "t91" / "2.bmp"])
    webp = data_provenance([tmp_path / "bsd200" / "1.webp", tmp_path / "t91" / "2.webp"])
    other = data_provenance([tmp_path / "bsd200" / "1.png", tmp_path / "t91" / "3.bmp"])
    assert png == webp and png["folders"] == {"bsd200": 1, "t91": 1} and png["digest_of"] == "folder/stem"
    assert other["file_list_sha256"] != png["file_list_sha256"]


def test_a_records_shape_words_name_the_grid_and_a_half_resolution_branch():
    assert NetworkConfig().shape_words == "6 blocks x 48 ch, trunk shared by x2/x3/x4"
    assert NetworkConfig(jpeg_grid=8, half_res_blocks=2, half_res_channels=96).shape_words == (
        "6 blocks x 48 ch, trunk shared by x2/x3/x4, told the JPEG block grid, "
        "a half-resolution branch of 2 blocks x 96 ch")
    old_record = {"blocks": 6, "channels": 48, "scales": [2, 3, 4], "jpeg_grid": 8}  # written before the branch
    assert NetworkConfig.from_dict(old_record) == NetworkConfig(jpeg_grid=8)


def test_an_over_parameterised_conv_computes_one_plain_conv_and_each_branch_learns():
    import keras

    from worker.training.reparam import RepConv2D

    rng = np.random.default_rng(5)
    x = rng.random((2, 9, 7, 6)).astype("float32")
    rep = RepConv2D(6, activation="relu")
    rep(x)
    for weight in (rep.center, rep.spread, rep.bias):  # as if trained: every branch carries something
        weight.assign(rng.normal(0, 0.1, weight.shape).astype("float32"))
    plain = keras.layers.Conv2D(6, 3, padding="same", activation="relu")
    plain(x)
    plain.set_weights(rep.fused_weights())
    np.testing.assert_allclose(np.asarray(rep(x)), np.asarray(plain(x)), atol=1e-5)  # borders included

    fresh = RepConv2D(6)
    model = keras.Sequential([keras.Input((9, 7, 6)), fresh])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mae")
    before = {w.name: np.asarray(w).copy() for w in fresh.weights}
    for _ in range(2):  # the 1x1 -> 3x3 path starts at zero: its widening conv moves from the second step
        model.train_on_batch(x, rng.random((2, 9, 7, 6)).astype("float32"))
    assert all(np.abs(np.asarray(w) - before[w.name]).max() > 0 for w in fresh.weights)


def test_warm_start_into_over_parameterised_convs_starts_as_the_shipped_network(tmp_path):
    from worker.engine.archs import get_arch
    from worker.engine.network import scale_model
    from worker.training.reparam import RepConv2D, rep_conv
    from worker.training.warm_start import warm_start

    shallow = NetworkConfig(blocks=1, channels=8, jpeg_grid=8)
    source, rng = shipped_like(tmp_path, "residual_sr_cond", shallow, seed=4)
    x, strength = rng.random((1, 11, 13, 3)).astype("float32"), np.full((1, 1), 0.4, "float32")
    grid = np.array([[1.0, 2.0, 5.0]], "float32")
    expected = np.asarray(scale_model(source, 2)([x, strength, grid]))
    for config in (shallow, replace(shallow, blocks=3)):  # the same depth, and new blocks starting as identities
        target = get_arch("residual_sr_cond").build(config, conv=rep_conv)
        assert isinstance(target.get_layer("trunk_b0_conv1"), RepConv2D)
        warm_start(target, tmp_path / "src.weights.h5")
        np.testing.assert_allclose(np.asarray(scale_model(target, 2)([x, strength, grid])), expected, atol=1e-5)


def test_a_run_with_over_parameterised_convs_resumes_and_exports_the_plain_network_it_computes(data, tmp_path):
    import keras

    from worker.engine.archs import get_arch
    from worker.engine.network import scale_model

    run_dir = tmp_path / "rep"
    trainer(data, run_dir, 2, convs="rep").run()
    assert trainer(data, run_dir, 4, convs="rep").run()["step"] == 4  # the checkpoint loads its custom layers
    trained = keras.models.load_model(run_dir / "checkpoint.keras", compile=False)
    weights = export_weights(run_dir, tmp_path / "models", name="rep")
    record = json.loads((tmp_path / "models" / "rep.json").read_text())
    assert record["training"]["convs"] == "rep"
    shipped = get_arch("residual_sr").build(SMALL)  # the plain architecture: what the engine builds
    shipped.load_weights(weights)
    assert shipped.count_params() < trained.count_params()
    x = np.random.default_rng(6).random((1, 10, 12, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(scale_model(shipped, 3)(x)), np.asarray(scale_model(trained, 3)(x)),
                               atol=1e-5)
    engine = NetworkEngine(weights)
    assert engine.upscale(np.zeros((10, 12, 3), np.uint8), 3).size == (36, 30)


def test_an_unknown_conv_kind_is_refused_before_a_run_starts():
    with pytest.raises(ValueError, match="known: plain, rep"):
        TrainConfig(convs="fancy")


def test_a_run_killed_after_fitting_its_schedule_resumes_the_fitted_schedule(data, tmp_path):
    """The fit is written to config.json at once, the checkpoint only at its next save: a session killed between
    them resumed with the fitted step count but the planned schedule, and ended at its peak learning rate."""
    import keras

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 4).run()
    saved = json.loads((run_dir / "config.json").read_text())
    fitted = RestartedCosine(saved["learning_rate"], 0, 12, saved["warmup_steps"])
    saved.update(steps=12, fitted_at_step=4, seconds_per_step=0.1, schedule=fitted.get_config())
    (run_dir / "config.json").write_text(json.dumps(saved))  # what the killed session left
    config = replace(trainer(data, run_dir, 100_000).config, time_limit_minutes=5)
    assert Trainer(run_dir, config, [data / "train"], data / "benchmark" / "set5").run()["step"] == 12
    optimizer = keras.models.load_model(run_dir / "checkpoint.keras").optimizer
    resumed = RestartedCosine(**optimizer.get_config()["learning_rate"]["config"])
    assert resumed.get_config() == fitted.get_config()
    assert float(resumed(12)) == pytest.approx(0.01 * saved["learning_rate"])  # annealed at its end


def test_a_resume_may_not_change_the_network_but_inherits_what_it_does_not_say(data, tmp_path):
    from worker.training.trainer import RunMismatch, config_for

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2, learning_rate=2e-4, loss="luma_l1").run()
    with pytest.raises(RunMismatch, match="network: the run's"):
        trainer(data, run_dir, 4, network=NetworkConfig(blocks=2, channels=8)).run()
    with pytest.raises(RunMismatch, match="arch: the run's 'residual_sr', asked 'residual_sr_cond'"):
        trainer(data, run_dir, 4, arch="residual_sr_cond").run()
    resumed = config_for(run_dir, steps=6)  # `upscaler train --run-dir run --steps 6`
    assert (resumed.network, resumed.learning_rate, resumed.warmup_steps, resumed.loss, resumed.batch) == \
        (SMALL, 2e-4, 2, "luma_l1", 2)
    assert config_for(tmp_path / "new", steps=6).learning_rate == TrainConfig().learning_rate  # a new run: defaults
    Trainer(run_dir, replace(resumed, checkpoint_minutes=0), [data / "train"], data / "benchmark" / "set5").run()
    restart = json.loads((run_dir / "config.json").read_text())["restarts"][-1]
    assert (restart["peak"], restart["warmup_steps"], restart["until"]) == (2e-4, 2, 6)  # its own, not 1e-3 and 200


def test_a_bf16_run_resumes_in_float32_with_its_weights_and_optimizer_state(data, tmp_path):
    """A bf16 step is 15x slower on a CPU without native bf16: the resumed run is converted, not kept in bf16."""
    import keras

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2, precision="bfloat16").run()
    before = keras.models.load_model(run_dir / "checkpoint.keras")
    config = replace(trainer(data, run_dir, 2).config, precision="float32")
    converted = Trainer(run_dir, config, [data / "train"], data / "benchmark" / "set5")._in_precision(before)
    assert {layer.dtype_policy.name for layer in converted.layers if layer.weights} == {"float32"}
    for ours, theirs in zip(converted.get_weights(), before.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)
    for ours, theirs in zip(converted.optimizer.variables, before.optimizer.variables, strict=True):
        np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(theirs, np.float32))
    assert int(converted.optimizer.iterations) == 2
    trainer(data, run_dir, 4).run()  # float32 (the helper's default)
    after = keras.models.load_model(run_dir / "checkpoint.keras")
    saved = json.loads((run_dir / "config.json").read_text())
    assert {layer.dtype_policy.name for layer in after.layers if layer.weights} == {"float32"}
    assert saved["precision"] == "float32" and saved["restarts"][0]["precision_before"] == "bfloat16"
    assert int(after.optimizer.iterations) == 4


def test_metrics_stay_in_line_when_a_resume_adds_columns_and_rows_after_the_checkpoint_go(data, tmp_path):
    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    with (run_dir / "metrics.csv").open("a") as fh:
        fh.write("3,9.9,0.5,20.0\n")  # logged after the last checkpoint by a session that was then killed
    trainer(data, run_dir, 4, degradation=DegradationConfig()).run()  # adds the q75 columns
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [2, 4]
    assert rows[0]["set5_q75_x2"] == "" and float(rows[1]["set5_q75_x2"]) > 10 and float(rows[1]["set5_x2"]) > 10
    assert (run_dir / "psnr.png").exists()


def test_training_refuses_benchmark_images_and_follows_linked_folders(data, tmp_path):
    import shutil

    from worker.training.patches import BenchmarkImageInTraining, find_images, refuse_benchmark_images

    linked = tmp_path / "linked"
    (linked / "train").mkdir(parents=True)
    (linked / "train" / "a").symlink_to(data / "train" / "a", target_is_directory=True)
    assert len(find_images([linked / "train"])) == 3  # the linked folder's images are found
    refuse_benchmark_images(find_images([linked / "train"]), data / "benchmark")  # none is a benchmark image
    (data / "train" / "b").mkdir()
    shutil.copy(data / "benchmark" / "set5" / "0.png", data / "train" / "b" / "renamed.png")
    with pytest.raises(BenchmarkImageInTraining, match=r"renamed\.png is the benchmark image"):
        trainer(data, tmp_path / "run", 2).run()
    (data / "train" / "b" / "renamed.png").unlink()
    (data / "train" / "b" / "set5").symlink_to(data / "benchmark" / "set5", target_is_directory=True)
    with pytest.raises(BenchmarkImageInTraining):
        refuse_benchmark_images(find_images([data / "train"]), data / "benchmark")


def test_exporting_over_the_network_a_run_started_from_keeps_its_parents_data(data, tmp_path):
    """The docs' commands export into the folder ``--init-from`` points at: the parent's record was read at export
    time, so a second export named the run's own first export as its parent, nesting deeper with each."""
    trainer(data, tmp_path / "parent", 2).run()
    export_weights(tmp_path / "parent", tmp_path / "models", name="net")
    parent = json.loads((tmp_path / "models" / "net.json").read_text())["training"]["data"]
    run_dir = tmp_path / "child"
    trainer(data, run_dir, 2, init_from=str(tmp_path / "models" / "net.weights.h5")).run()
    for _ in range(2):
        export_weights(run_dir, tmp_path / "models", name="net")
        started = json.loads((tmp_path / "models" / "net.json").read_text())["training"]["data"]["started_from"]
        assert started == {"name": "net", "data": parent}


def test_an_export_stopped_while_writing_the_record_leaves_the_served_pair_as_it_was(data, tmp_path, monkeypatch):
    """The export replaced the weights, then wrote the record: stopped between them (or a worker starting then),
    the folder paired the new weights with the old record (its shape, its benchmark tables for other weights)."""
    from shared import catalog

    trainer(data, tmp_path / "run", 2).run()
    models = tmp_path / "models"
    export_weights(tmp_path / "run", models, name="net")
    catalog.write_record(models, "net", {"benchmark": {"clean": {"set5": {"x2": 30.0}}}})
    served = {path.name: path.read_bytes() for path in models.iterdir()}
    trainer(data, tmp_path / "run", 4).run()  # trained on: other weights

    def stopped(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(catalog.json, "dumps", stopped)  # while the record is written, after the weights are
    with pytest.raises(KeyboardInterrupt):
        export_weights(tmp_path / "run", models, name="net")
    assert {path.name: path.read_bytes() for path in models.iterdir()} == served  # no partial file either


def test_training_refusals_are_one_line_errors_that_name_their_cause(data, tmp_path, capsys):
    """A resume asking for another network, an unreadable training file (which of 570?) and a patch no image
    holds were tracebacks ending in RunMismatch, OSError and numpy's 'a must be a positive integer'."""
    from cli.__main__ import main
    from worker.training.patches import SamplerSpec, batch_stream

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    common = ["--data", str(data), "--batch", "2", "--lr-patch", "12", "--precision", "float32"]
    capsys.readouterr()
    assert main(["train", "--run-dir", str(run_dir), "--blocks", "2", *common]) == 1
    err = capsys.readouterr().err
    refusal = [line for line in err.splitlines() if line.startswith("upscaler train: ")]
    assert len(refusal) == 1 and "trains another network" in refusal[0] and "Traceback" not in err

    broken = data / "train" / "a" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nno more")
    with pytest.raises(Exception, match=r"cannot read the training image .*broken\.png") as caught:
        next(batch_stream(SamplerSpec((broken,), (2,), 12, 2, seed=5)))
    broken.unlink()
    with pytest.raises(Exception, match="no training image is at least 600 px a side") as too_big:
        next(batch_stream(SamplerSpec(tuple(sorted((data / "train" / "a").iterdir())), (4,), 150, 2, seed=5)))
    from cli.__main__ import _user_facing

    assert _user_facing(caught.value) and _user_facing(too_big.value)


def test_a_run_killed_before_its_first_checkpoint_starts_over_with_fresh_metrics(data, tmp_path):
    """Its rows stayed and the next run appended its own after them (1..29 then 1, 2, 3), plotted together."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.csv").write_text("step,loss\n1,0.5\n2,0.4\n29,0.1\n")
    (run_dir / "data.json").write_text('{"history": [{"file_list_sha256": "old", "from_step": 0}]}')
    trainer(data, run_dir, 2).run()
    assert [int(r["step"]) for r in csv.DictReader((run_dir / "metrics.csv").open())] == [2]
    assert [h["file_list_sha256"] for h in json.loads((run_dir / "data.json").read_text())["history"]] != ["old"]


def test_export_goes_where_the_platform_looks_and_never_names_a_network_auto_or_bicubic(data, tmp_path,
                                                                                      monkeypatch):
    """``--to`` defaulted to shared/weights under the working directory (the platform never saw the network);
    ``--name bicubic`` made the catalog call the network bicubic while workers ran Pillow."""
    import argparse

    from cli.train import export
    from worker.training.export import BadModelName

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    monkeypatch.setenv("UPSCALER_MODELS_DIR", str(tmp_path / "served"))
    monkeypatch.chdir(tmp_path)
    assert export(argparse.Namespace(run_dir=run_dir, to=None, name="tiny")) == 0
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == ["tiny.json", "tiny.weights.h5"]
    assert not (tmp_path / "shared").exists()
    for name in ("auto", "bicubic", "../escape", "a b"):
        with pytest.raises(BadModelName):
            export(argparse.Namespace(run_dir=run_dir, to=tmp_path / "served", name=name))
    assert sorted(p.name for p in (tmp_path / "served").iterdir()) == ["tiny.json", "tiny.weights.h5"]


def test_a_session_killed_between_its_checkpoint_and_its_state_resumes_at_the_checkpoints_step(data, tmp_path):
    """The checkpoint is replaced before state.json is written: killed between the two, state.json said step 3 for
    a step-4 checkpoint, and the resume trained 3 more steps, ending at Adam's step 7 with state.json saying 6."""
    import keras

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 4).run()
    state = json.loads((run_dir / "state.json").read_text())
    (run_dir / "state.json").write_text(json.dumps({**state, "step": 3}))  # the previous save's, as a kill leaves it
    assert trainer(data, run_dir, 6).run()["step"] == 6
    optimizer = keras.models.load_model(run_dir / "checkpoint.keras").optimizer
    assert int(optimizer.iterations.numpy()) == 6 == json.loads((run_dir / "state.json").read_text())["step"]
    assert json.loads((run_dir / "config.json").read_text())["restarts"][0]["at_step"] == 4


def test_a_session_killed_while_writing_its_state_leaves_a_resumable_run(data, tmp_path, monkeypatch):
    """state.json was written in place: a kill mid-write left half a file, and the run could not be resumed."""
    from pathlib import Path

    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    write_text = Path.write_text

    def killed_mid_write(self, text, *args, **kwargs):
        if self.name.startswith("state.json"):
            write_text(self, text[: len(text) // 2])
            raise KeyboardInterrupt
        return write_text(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        trainer(data, run_dir, 3).run()
    monkeypatch.undo()
    assert trainer(data, run_dir, 4).run()["step"] == 4


def test_the_record_says_which_images_were_large_enough_to_be_sampled(data, tmp_path):
    """An image too small for an HR patch at every scale (and its 0.6x copy) is never sampled, yet the record
    counted it: the shipped records said t91: 91 where 64-px patches at x4 can use 19 of them."""
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(data / "train" / "a" / "small.png")  # under 12 x 2
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(data / "train" / "a" / "x2_only.png")  # under 12 x 4
    run_dir = tmp_path / "run"
    trainer(data, run_dir, 2).run()
    export_weights(run_dir, tmp_path / "models", name="tiny")
    recorded = json.loads((tmp_path / "models" / "tiny.json").read_text())["training"]["data"]
    assert (recorded["folders"], recorded["images"]) == ({"a": 5}, 5)  # found
    assert recorded["used"] == {"folders": {"a": 4}, "images": 4, "min_side": 24,  # sampled
                                "images_per_scale": {"x2": 4, "x3": 4, "x4": 3}}


def test_an_image_too_small_for_the_largest_scale_trains_the_smaller_ones():
    """A source had to hold the largest scale's HR patch to be sampled at all: with 64-px LR patches, 72 of T91's
    91 images trained no scale, though most hold x2's 128-px patch. Each scale now samples every source holding
    its own patch, and only those."""
    from worker.training.patches import NoImageLargeEnough, PatchSampler

    small, large = np.full((30, 30, 3), 10, np.uint8), np.full((60, 60, 3), 200, np.uint8)
    sampler = PatchSampler([small, large], scales=(2, 4), lr_patch=12, batch=64, seed=0)
    x2, x4 = sampler.batch_for_all_scales().hrs
    assert {round(float(p.mean() * 255)) for p in x2} == {10, 200}  # both at x2 (24-px HR patches)
    assert {round(float(p.mean() * 255)) for p in x4} == {200}  # only the large one holds a 48-px patch
    with pytest.raises(NoImageLargeEnough, match="at least 48 px"):
        PatchSampler([small], scales=(2, 4), lr_patch=12, batch=2, seed=0)


def test_a_benchmark_image_re_saved_losslessly_is_refused_too(data, tmp_path):
    """Only a byte-identical copy was refused: the same pixels re-encoded as PNG or saved as BMP trained."""
    from worker.training.patches import BenchmarkImageInTraining, find_images, refuse_benchmark_images

    with Image.open(data / "benchmark" / "set5" / "1.png") as image:
        image.save(data / "train" / "a" / "holiday.bmp")
    with pytest.raises(BenchmarkImageInTraining, match=r"holiday\.bmp is the benchmark image .*1\.png"):
        refuse_benchmark_images(find_images([data / "train"]), data / "benchmark")


def test_packing_the_data_for_a_device_refuses_a_benchmark_image_it_could_no_longer_tell(data, tmp_path):
    """The device's copy holds Set5 only and re-encodes PNGs: a Set14 image in train/ passed the check there."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    (data / "benchmark" / "set14").mkdir()
    shutil.copy(data / "train" / "a" / "0.png", data / "benchmark" / "set14" / "lenna.png")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "scripts/device/pack_data.py", "--data", str(data), "--out",
                           str(tmp_path / "gpu_data")], cwd=root, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(root)})
    assert done.returncode != 0 and "is the benchmark image" in done.stderr
    assert not (tmp_path / "gpu_data").exists()


def test_a_run_on_packed_copies_records_how_they_were_carried_from_the_packing_itself(data, tmp_path):
    """The records' ``carried_as`` was a line typed by hand into data.json after the run: the packing now writes
    what it did and measured beside the copies, and a run on them records it."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from worker.training.trainer import CARRIED_NOTE

    Image.open(data / "train" / "a" / "2.png").save(data / "train" / "a" / "2.bmp")
    (data / "train" / "a" / "2.png").unlink()
    (data / "train" / "b").mkdir()
    Image.open(data / "train" / "a" / "1.png").convert("RGB").save(data / "train" / "b" / "1.jpg", quality=95)
    root = Path(__file__).resolve().parents[2]
    packed = tmp_path / "gpu_data"
    done = subprocess.run([sys.executable, "scripts/device/pack_data.py", "--data", str(data), "--out", str(packed)],
                          cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 0, done.stderr
    note = json.loads((packed / CARRIED_NOTE).read_text())["carried_as"]
    assert note.startswith("copies made to fit the GPU machine's 64 MiB transfer: b: JPEGs as they are; "
                           "a: BMPs as lossless WebP (bit-exact); a: PNGs as JPEG quality 95 4:4:4 (Y-PSNR >= ")
    trainer(packed, tmp_path / "run", 2).run()
    assert json.loads((tmp_path / "run" / "data.json").read_text())["carried_as"] == note
    trainer(data, tmp_path / "originals", 2).run()  # the originals carry no note
    assert "carried_as" not in json.loads((tmp_path / "originals" / "data.json").read_text())

"""The training degradation model: seeded, right shapes, labels within their ranges."""

import numpy as np
import pytest

from worker.engine.strength import jpeg_strength, noise_strength, strength_of
from worker.training.degradation import DegradationConfig, Degrader, convolve, gaussian_kernel, jpeg_roundtrip
from worker.training.patches import PatchSampler


def _hr(size=96, seed=0):
    yy, xx = np.mgrid[0:size, 0:size]
    base = np.stack([xx * 2, yy * 2, (xx * yy) % 256], -1) + np.random.default_rng(seed).normal(0, 8, (size, size, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def test_same_seed_same_patches_other_seed_other_patches():
    hr = _hr()
    run = lambda seed: [Degrader(DegradationConfig(), np.random.default_rng(seed))(hr, 4) for _ in range(8)]  # noqa: E731
    a, b, c = run(1), run(1), run(2)
    assert all(np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shapes_types_and_strength_range(scale):
    degrade = Degrader(DegradationConfig(), np.random.default_rng(scale))
    hr = _hr(24 * scale)
    strengths = []
    for _ in range(60):
        lr, strength, _grid = degrade(hr, scale)
        assert lr.shape == (24, 24, 3) and lr.dtype == np.uint8
        strengths.append(strength)
    strengths = np.array(strengths)
    assert ((strengths >= 0) & (strengths <= 1)).all()
    assert (strengths == 0).mean() > 0.1  # a clean share stays clean
    assert (strengths > 0.3).any()  # and heavy damage happens


def test_clean_share_one_is_exactly_the_benchmark_degradation():
    from worker.quality import bicubic_downscale

    hr = _hr(96)
    lr, strength, grid = Degrader(DegradationConfig(clean_share=1.0), np.random.default_rng(0))(hr, 4)
    assert strength == 0.0 and grid is None and np.array_equal(lr, bicubic_downscale(hr, 4))


def test_jpeg_only_degradation_is_a_real_jpeg_roundtrip_with_its_label():
    config = DegradationConfig(clean_share=0, blur_share=0, noise_share=0, jpeg_share=1, second_jpeg_share=0,
                               resamplers=(("bicubic", 1.0),), jpeg_quality=(40, 40), chroma_444_share=0)
    hr = _hr(96)
    lr, strength, grid = Degrader(config, np.random.default_rng(0))(hr, 2)
    assert grid is not None and all(0 <= g < 8 for g in grid)
    assert strength == pytest.approx(jpeg_strength(40))
    from worker.quality import bicubic_downscale

    clean = bicubic_downscale(hr, 2)
    assert 0 < np.abs(lr.astype(int) - clean).mean() < 12  # damaged, but the same picture


def test_strength_scale_is_monotonic_and_clipped():
    assert jpeg_strength(100) == 0 and jpeg_strength(30) == 1 and jpeg_strength(10) == 1
    assert jpeg_strength(50) > jpeg_strength(75) > jpeg_strength(90) > 0
    assert noise_strength(0) == 0 and noise_strength(40) == 1
    assert strength_of(90, 20.0) == 1 and strength_of(None, 0.0) == 0


def test_anisotropic_kernel_is_normalised_and_rotated():
    k = gaussian_kernel(2.0, 0.5, 0.0)
    assert k.sum() == pytest.approx(1.0) and k.shape[0] == k.shape[1]
    assert k[k.shape[0] // 2].sum() > k[:, k.shape[1] // 2].sum()  # wide along x, narrow along y
    rotated = gaussian_kernel(2.0, 0.5, np.pi / 2)
    np.testing.assert_allclose(rotated, k.T, atol=1e-9)


def test_fft_blur_equals_the_direct_sum_over_taps_with_reflected_borders():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (23, 31, 3))
    kernel = gaussian_kernel(1.7, 0.6, 0.9) * rng.uniform(0.5, 1.5, (13, 13))  # not symmetric: any kernel
    r = kernel.shape[0] // 2
    padded = np.pad(image, ((r, r), (r, r), (0, 0)), mode="reflect")
    direct = sum(kernel[i, j] * padded[i : i + 23, j : j + 31] for i in range(2 * r + 1) for j in range(2 * r + 1))
    assert np.allclose(convolve(image, kernel), direct, atol=1e-9)


def test_the_grid_label_says_where_the_jpeg_block_edges_are():
    """The label the network is told matches the blocks the real encoder made: strongest jumps at its edges."""
    config = DegradationConfig(clean_share=0, blur_share=0, noise_share=0, jpeg_share=1, second_jpeg_share=0,
                               resamplers=(("bicubic", 1.0),), jpeg_quality=(10, 10), chroma_444_share=0)
    degrade = Degrader(config, np.random.default_rng(5))
    hr = np.clip(_hr(192).astype(int) + np.random.default_rng(6).normal(0, 25, (192, 192, 1)), 0, 255).astype(np.uint8)
    seen = set()
    for _ in range(6):
        lr, _strength, (row, col) = degrade(hr, 2)
        luma = lr @ np.array([0.299, 0.587, 0.114])
        for axis, position in ((0, row), (1, col)):
            jumps = np.abs(np.diff(luma, axis=axis)).mean(axis=1 - axis)  # jump between pixel i and i + 1
            strongest = int(np.argmax([jumps[p::8].mean() for p in range(8)]))
            assert (position + strongest + 1) % 8 == 0  # pixel strongest + 1 starts a block
        seen.add((row, col))
    assert len(seen) > 1  # the grid moves from patch to patch, as crops of larger photos do


def test_jpeg_phase_shifts_the_block_grid():
    image = _hr(48)
    a = jpeg_roundtrip(image, 30, 2, (0, 0))
    b = jpeg_roundtrip(image, 30, 2, (3, 5))
    assert a.shape == b.shape == image.shape and not np.array_equal(a, b)


def test_config_round_trips_through_the_record():
    config = DegradationConfig()
    assert DegradationConfig.from_dict(config.to_dict()) == config


def test_sampler_gives_strength_columns_per_scale():
    sampler = PatchSampler([_hr(200)], (2, 4), 12, 3, seed=0, degradation=DegradationConfig())
    lrs, strengths, grids, hrs = sampler.batch_for_all_scales()
    assert [x.shape for x in lrs] == [(3, 12, 12, 3)] * 2
    assert [s.shape for s in strengths] == [(3, 1)] * 2 and [h.shape[1] for h in hrs] == [24, 48]
    assert [g.shape for g in grids] == [(3, 3)] * 2 and set(np.concatenate(grids)[:, 0]) <= {0.0, 1.0}
    clean = PatchSampler([_hr(200)], (2,), 12, 3, seed=0).batch_for_all_scales()
    assert (clean.strengths[0] == 0).all() and (clean.grids[0] == 0).all()

import pytest

from shared.sizing import SizeError, SizeRequest, plan, requested_size


@pytest.mark.parametrize("request_,size,chain", [
    (SizeRequest(scale=4), (400, 300), (4,)),
    (SizeRequest(scale=1.5), (150, 113), (2,)),  # 112.5: halves round up
    (SizeRequest(scale=3), (300, 225), (3,)),
    (SizeRequest(scale=6), (600, 450), (4, 2)),
    (SizeRequest(scale=8), (800, 600), (4, 2)),
    (SizeRequest(width=250), (250, 188), (3,)),
    (SizeRequest(height=150), (200, 150), (2,)),
    (SizeRequest(width=400, height=400, fit="contain"), (400, 300), (4,)),
    (SizeRequest(width=400, height=400, fit="cover"), (400, 400), (4, 2)),
    (SizeRequest(width=400, height=100, fit="fill"), (400, 100), (4,)),
    (SizeRequest(width=90), (90, 68), ()),
])
def test_plans_reach_the_exact_size_with_the_smallest_network_scale(request_, size, chain):
    made = plan(100, 75, request_)
    assert (made.width, made.height) == size and made.chain == chain


def test_cover_crops_the_overflow_evenly():
    made = plan(100, 75, SizeRequest(width=400, height=400, fit="cover"))
    assert made.resize_to == (533, 400) and made.crop == (66, 0, 466, 400)


def test_more_than_eight_times_is_refused():
    with pytest.raises(SizeError, match="x8"):
        plan(100, 75, SizeRequest(width=1000))


@pytest.mark.parametrize("size,scale,expected", [((1, 1), 2.5, (3, 3)), ((5, 3), 1.5, (8, 5)), ((3, 3), 2.5, (8, 8))])
def test_half_pixels_round_up_on_both_sides(size, scale, expected):
    """Python's round() rounds halves to even: 5x3 at x1.5 gave 8x4 (7.5 up, 4.5 down) and 1x1 at x2.5 gave 2x2."""
    made = plan(*size, SizeRequest(scale=scale))
    assert (made.width, made.height) == expected


def test_a_resampled_size_is_limited_by_what_it_holds_in_memory_not_only_by_its_result():
    """x5 runs the network x8 and resamples: the 8x image is held whole, so it counts against the whole-image
    limit (it once passed because only the x5 result was checked)."""
    from shared.limits import check_output
    from shared.settings import Settings

    settings = Settings(max_whole_output_pixels=400_000_000, max_output_pixels=1_000_000_000)
    made = plan(4000, 4000, SizeRequest(scale=5))
    assert made.width * made.height == 400_000_000 and made.network_scale == 8
    violation = check_output(made, 4000, 4000, False, "png", settings, tiled=True)
    assert violation is not None and "1024000000-pixel image in memory" in violation.message
    assert check_output(plan(2000, 2000, SizeRequest(scale=5)), 2000, 2000, False, "png", settings, tiled=True) is None


@pytest.mark.parametrize("width,height,tiled,alpha", [(6000, 6000, False, False), (5_000_000, 7, True, False),
                                                      (6000, 6000, True, True)])
def test_an_output_made_whole_is_held_to_the_whole_image_limit(width, height, tiled, alpha):
    """Bicubic (no tiles), an input under the tiles' smallest side and alpha are made whole in memory: a bicubic x4
    of 576 MP passed as streamable and took 3.2 GB."""
    from shared.limits import check_output
    from shared.settings import Settings

    settings = Settings(max_whole_output_pixels=400_000_000, max_output_pixels=1_000_000_000)
    made = plan(width, height, SizeRequest(scale=4))
    violation = check_output(made, width, height, alpha, "tiff", settings, tiled=tiled)
    assert violation is not None and "more than the limit of 400000000" in violation.message
    streamed = plan(6000, 6000, SizeRequest(scale=4))  # 576 MP by a network, without alpha: made in bands
    assert check_output(streamed, 6000, 6000, False, "tiff", settings, tiled=True) is None


def test_size_fields_are_read_once_for_the_api_and_the_local_cli():
    """``upscaler upscale`` and the API's form read scale, pixels and print sizes through ``requested_size``."""
    assert requested_size() == SizeRequest(4.0, None, None, "contain")  # nothing asked: x4
    assert requested_size(2.0) == SizeRequest(2.0, None, None, "contain")
    assert requested_size(print_width=10, print_height=5, print_unit="cm", dpi=254, fit="cover") == SizeRequest(
        None, 1000, 500, "cover")
    assert requested_size(scale=3.0, dpi=300) == SizeRequest(3.0, None, None, "contain")  # dpi only stamps the file
    with pytest.raises(SizeError, match="give one of scale"):
        requested_size(2.0, width=100)
    with pytest.raises(SizeError, match="need dpi"):
        requested_size(print_width=4)

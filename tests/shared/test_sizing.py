import pytest

from shared.sizing import SizeError, SizeRequest, plan


@pytest.mark.parametrize("request_,size,chain", [
    (SizeRequest(scale=4), (400, 300), (4,)),
    (SizeRequest(scale=1.5), (150, 112), (2,)),
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

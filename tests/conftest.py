import pytest

from mmdiff.core import EDMSchedule, FlowSchedule, vp_cosine, vp_linear

SCHEDULES = {
    "vp_linear": vp_linear,
    "vp_cosine": vp_cosine,
    "edm": lambda: EDMSchedule(sigma_data=1.0),
    "flow": FlowSchedule,
}


@pytest.fixture(params=sorted(SCHEDULES))
def schedule(request):
    return SCHEDULES[request.param]()

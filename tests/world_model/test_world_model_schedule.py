import pytest

from psi_gym.world_model.schedule import warmup_cosine_learning_rate


def test_warmup_then_cosine_to_the_floor():
    rate = lambda step: warmup_cosine_learning_rate(step, peak=1e-3, minimum=1e-4, warmup_steps=10, total_steps=110)
    assert rate(0) == pytest.approx(1e-4) and rate(9) == pytest.approx(1e-3)  # linear warmup to the peak
    assert rate(10) == pytest.approx(1e-3) and rate(60) == pytest.approx(5.5e-4)  # half way down the cosine
    assert rate(110) == pytest.approx(1e-4) and rate(500) == pytest.approx(1e-4)  # held at the floor

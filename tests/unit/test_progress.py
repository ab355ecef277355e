"""StagedProgress: one monotonic fraction, and an ETA from the measured pace of the stage that
runs (a quick first stage says nothing about how long training takes)."""
from annotator.core.progress import StagedProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_eta_follows_the_running_stage_not_the_average():
    clock = Clock()
    p = StagedProgress({"dataset": 0.1, "train": 0.8, "score": 0.1}, clock=clock)
    clock.t = 2.0
    p.update(100, 100, "dataset")  # 10% of the job in 2 s
    clock.t = 3.0
    p.update(0, 100, "train")
    clock.t = 63.0
    p.update(25, 100, "train")  # a quarter of training took 60 s: 180 s of it left
    eta = p.eta_s()
    # The average pace (30% in 63 s) would say 147 s; the stage's own pace says 180 s + score.
    assert 180 <= eta <= 180 + 0.1 * 63 / p.fraction + 1e-6
    assert p.fraction == 0.1 + 0.8 * 0.25


def test_fraction_never_goes_back_and_eta_waits_for_a_measurable_step():
    clock = Clock()
    p = StagedProgress({"a": 0.5, "b": 0.5}, clock=clock)
    assert p.eta_s() is None
    clock.t = 5.0
    assert p.update(50, 100, "a") == 0.25
    assert p.update(10, 100, "a") == 0.25
    assert p.eta_s() is None  # half the job is stage b, not begun: its pace is unknown
    clock.t = 10.0
    assert p.update(100, 100, "a") == 0.5
    assert p.eta_s() == 10.0 * 0.5 / 0.5  # as much measured as is left: the average pace


def test_a_quick_first_stage_promises_nothing_about_a_long_training():
    clock = Clock()
    p = StagedProgress({"dataset": 0.1, "train": 0.75, "promote": 0.1, "score": 0.05},
                       clock=clock)
    clock.t = 1.5
    p.update(119, 119, "dataset")  # 10% of the job in 1.5 s; 500 epochs to come
    assert p.eta_s() is None
    clock.t = 2.0
    p.update(0, 1000, "train")
    clock.t = 62.0
    p.update(100, 1000, "train")  # a tenth of training in 60 s: 540 s of it left
    assert p.eta_s() >= 540

"""Event augmentations (spike.events.augment): counts, no mutation, seeded determinism, tonic Compose."""

import numpy as np
import pytest

from spike.core.events import EventError, make_events
from spike.events import augment as A

SENSOR = (34, 30, 2)


def _events(n=4000, seed=0, sensor=SENSOR, duration=100_000):
    r = np.random.default_rng(seed)
    w, h, p = sensor
    t = np.sort(r.integers(0, duration, n))
    return make_events(r.integers(0, w, n), r.integers(0, h, n), t, r.integers(0, p, n))


def _rng(s=0):
    return np.random.default_rng(s)


# every random function, called the same way: f(events, rng) -> events
RANDOM = {
    "flip_x": lambda e, r: A.random_flip_x(e, SENSOR, r, 0.5),
    "flip_y": lambda e, r: A.random_flip_y(e, SENSOR, r, 0.5),
    "polarity": lambda e, r: A.random_polarity_flip(e, SENSOR, r, 0.5),
    "translate": lambda e, r: A.random_translate(e, SENSOR, r, 5),
    "crop": lambda e, r: A.random_crop(e, SENSOR, (20, 20), r),
    "jitter": lambda e, r: A.time_jitter(e, r, 500.0),
    "stretch": lambda e, r: A.time_stretch(e, r, (0.5, 2.0)),
    "drop": lambda e, r: A.drop_random(e, r, 0.3),
    "drop_time": lambda e, r: A.drop_by_time(e, r, 0.3),
    "drop_area": lambda e, r: A.drop_by_area(e, SENSOR, r, 0.3),
}


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_input_is_never_modified(name):
    ev = _events()
    before = ev.copy()
    for s in range(4):
        out = RANDOM[name](ev, _rng(s))
        assert out is not ev and not np.shares_memory(out, ev)
    assert ev.tobytes() == before.tobytes()


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_same_seed_same_result_different_seeds_differ(name):
    ev = _events()
    a, b = RANDOM[name](ev, _rng(7)), RANDOM[name](ev, _rng(7))
    assert a.tobytes() == b.tobytes()
    results = {RANDOM[name](ev, _rng(s)).tobytes() for s in range(8)}
    assert len(results) > 1  # the seed matters


def test_flips_keep_every_event_and_map_coordinates():
    ev = _events()
    w, h, p = SENSOR
    fx = A.flip_x(ev, SENSOR)
    assert len(fx) == len(ev)
    assert np.array_equal(fx["x"], w - 1 - ev["x"]) and np.array_equal(fx["y"], ev["y"])
    assert np.array_equal(fx["t"], ev["t"]) and np.array_equal(fx["p"], ev["p"])
    fy = A.flip_y(ev, SENSOR)
    assert np.array_equal(fy["y"], h - 1 - ev["y"]) and np.array_equal(fy["x"], ev["x"])
    fp = A.flip_polarity(ev, SENSOR)
    assert np.array_equal(fp["p"], 1 - ev["p"])
    assert np.array_equal(A.flip_x(fx, SENSOR), ev)  # an involution


def test_polarity_flip_of_plus_minus_one_encoding():
    ev = make_events([0, 1], [0, 0], [0, 1], [-1, 1])
    assert A.flip_polarity(ev, (2, 1, 2))["p"].tolist() == [1, -1]


def test_random_flip_probability_is_respected():
    ev = _events(50)
    flipped = sum(not np.array_equal(A.random_flip_x(ev, SENSOR, _rng(s), 0.3)["x"], ev["x"]) for s in range(400))
    assert 0.22 < flipped / 400 < 0.38
    assert all(np.array_equal(A.random_flip_x(ev, SENSOR, _rng(s), 0.0), ev) for s in range(20))


def test_translate_within_bounds_keeps_count_and_outside_drops_exactly_those():
    w, h, _ = SENSOR
    r = np.random.default_rng(1)
    n = 500
    inner = make_events(r.integers(5, w - 5, n), r.integers(5, h - 5, n), np.arange(n), r.integers(0, 2, n))
    for s in range(10):
        out = A.random_translate(inner, SENSOR, _rng(s), 5)
        assert len(out) == n  # every shift of at most 5 keeps them on the sensor
    ev = _events()
    out = A.translate(ev, SENSOR, 7, -3)
    kept = (ev["x"] + 7 < w) & (ev["y"] - 3 >= 0)
    assert len(out) == int(kept.sum()) < len(ev)
    assert np.array_equal(out["x"], ev["x"][kept] + 7) and np.array_equal(out["t"], ev["t"][kept])
    assert out["x"].max() < w and out["y"].min() >= 0


def test_translate_draws_are_uniform_and_one_row_sensor_only_moves_x():
    ev = make_events([10] * 3, [0] * 3, [0, 1, 2], [0, 0, 0])
    shifts = {int(A.random_translate(ev, (21, 1, 1), _rng(s), 3)["x"][0]) - 10 for s in range(200)}
    assert shifts == set(range(-3, 4))  # y never moves (one row), x takes every shift


def test_crop_moves_events_to_the_box_origin():
    ev = _events()
    out = A.crop(ev, SENSOR, 4, 6, 10, 12)
    inside = (ev["x"] >= 4) & (ev["x"] < 14) & (ev["y"] >= 6) & (ev["y"] < 18)
    assert len(out) == int(inside.sum())
    assert out["x"].max() < 10 and out["y"].max() < 12 and out["x"].min() >= 0
    with pytest.raises(ValueError, match="does not fit"):
        A.crop(ev, SENSOR, 30, 0, 10, 10)


def test_drop_random_removes_the_stated_count_keeping_order():
    ev = _events()
    out = A.drop_random(ev, _rng(3), 0.25)
    assert len(out) == len(ev) - int(0.25 * len(ev) + 0.5)
    assert np.all(np.diff(out["t"]) >= 0)
    assert len(A.drop_random(ev, _rng(3), 0.0)) == len(ev)


@pytest.mark.parametrize("ratio", [0.1, 0.3])
def test_drop_by_time_and_area_remove_the_fraction_within_tolerance(ratio):
    ev = _events(40_000)
    for s in range(5):
        kept_t = len(A.drop_by_time(ev, _rng(s), ratio)) / len(ev)
        kept_a = len(A.drop_by_area(ev, SENSOR, _rng(s), ratio)) / len(ev)
        assert abs((1 - kept_t) - ratio) < 0.02, kept_t
        assert abs((1 - kept_a) - ratio) < 0.03, kept_a  # box sides are whole pixels


def test_drop_by_area_removes_a_box_and_only_it():
    ev = _events(20_000)
    out = A.drop_by_area(ev, SENSOR, _rng(5), 0.2)
    x0, y0, bw, bh = A.area_box(SENSOR[0], SENSOR[1], _rng(5), 0.2)
    assert bw > 0 and bh > 0
    inside = lambda e: (e["x"] >= x0) & (e["x"] < x0 + bw) & (e["y"] >= y0) & (e["y"] < y0 + bh)  # noqa: E731
    assert not inside(out).any() and len(out) == int((~inside(ev)).sum())


def test_time_jitter_sorted_clipped_and_integer():
    ev = _events(2000, duration=5000)
    out = A.time_jitter(ev, _rng(0), 300.0)
    assert out.dtype == ev.dtype and np.all(np.diff(out["t"]) >= 0) and out["t"].min() >= 0
    assert len(out) < len(ev)  # some early events went negative and were clipped
    kept = A.time_jitter(ev, _rng(0), 300.0, clip_negative=False, sort=False)
    assert len(kept) == len(ev) and np.array_equal(kept["x"], ev["x"])
    assert 200 < np.std(kept["t"] - ev["t"]) < 400


def test_time_stretch_scales_times_within_range():
    ev = _events()
    for s in range(10):
        out = A.time_stretch(ev, _rng(s), (0.5, 2.0))
        f = out["t"][-1] / ev["t"][-1]
        assert 0.5 - 1e-3 <= f <= 2.0 + 1e-3 and len(out) == len(ev)
        assert np.all(np.diff(out["t"]) >= 0)


def test_bad_inputs_raise_one_clear_error():
    ev = _events(10)
    with pytest.raises(ValueError, match="probability"):
        A.random_flip_x(ev, SENSOR, _rng(), 1.5)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        A.drop_random(ev, _rng(), 1.0)
    with pytest.raises(EventError, match="outside the sensor"):
        A.flip_x(ev, (4, 4, 2))
    with pytest.raises(EventError, match="sensor_size"):
        A.flip_x(ev, (4, 4))
    with pytest.raises(EventError, match="structured"):
        A.drop_random(np.zeros(4), _rng(), 0.1)


def test_wrappers_in_tonic_compose_are_seeded():
    tonic = pytest.importorskip("tonic")
    ev = _events()

    def pipeline(seed):
        return tonic.transforms.Compose([A.RandomFlipX(SENSOR, p=0.5, seed=seed),
                                         A.RandomTranslate(SENSOR, max_shift=3, seed=seed + 1),
                                         A.DropEventByArea(SENSOR, area=0.2, seed=seed + 2),
                                         A.TimeJitter(std=100.0, seed=seed + 3)])

    a, b = pipeline(0), pipeline(0)
    outs_a = [a(ev).tobytes() for _ in range(4)]
    outs_b = [b(ev).tobytes() for _ in range(4)]
    assert outs_a == outs_b  # the same seed replays the same sequence
    assert len(set(outs_a)) > 1  # successive calls draw new augmentations
    assert pipeline(5)(ev).tobytes() != outs_a[0]
    t = A.RandomFlipX(SENSOR, seed=0)
    assert t(ev, rng=_rng(1)).tobytes() == A.random_flip_x(ev, SENSOR, _rng(1)).tobytes()  # rng= overrides
    with pytest.raises(Exception):
        t.p = 0.1  # frozen
    assert A.RandomCrop(SENSOR, (20, 10), seed=0).out_sensor_size == (20, 10, 2)

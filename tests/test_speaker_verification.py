"""Speaker verification scoring (ddtse/speaker_verification.py): EER of known score lists, trial lists."""
import numpy as np
import pytest

from ddtse.errors import DdtseError
from ddtse.speaker_verification import (
    cosine_scores,
    equal_error_rate,
    make_trials,
    read_trials,
    score_trials,
    write_trials,
)


def eer_of(target, nontarget):
    scores = list(target) + list(nontarget)
    labels = [1] * len(target) + [0] * len(nontarget)
    return equal_error_rate(scores, labels)[0]


def test_eer_hand_computed_cases():
    # accept when score >= t; at t = 0.7 one target of 3 is rejected and one non-target of 3 accepted
    assert eer_of([0.9, 0.8, 0.3], [0.7, 0.2, 0.1]) == pytest.approx(1 / 3)
    assert eer_of([0.9, 0.8], [0.2, 0.1]) == pytest.approx(0.0)  # separable
    assert eer_of([0.1, 0.2], [0.8, 0.9]) == pytest.approx(1.0)  # every target below every non-target
    assert eer_of([0.5, 0.5], [0.5, 0.5, 0.5]) == pytest.approx(0.5)  # ties: chance
    # FAR stays 1/4 while FRR jumps 0 -> 1/2 between t = 0.4 and 0.5: they cross at 1/4
    assert eer_of([0.9, 0.4], [0.5, 0.3, 0.2, 0.1]) == pytest.approx(0.25)
    # shifting or scaling every score changes nothing
    assert eer_of([9.0, 4.0], [5.0, 3.0, 2.0, 1.0]) == pytest.approx(0.25)


def test_eer_matches_a_brute_force_sweep(rng):
    target, nontarget = rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 700)
    grid = np.sort(np.concatenate([target, nontarget]))
    far = np.array([(nontarget >= t).mean() for t in grid])
    frr = np.array([(target < t).mean() for t in grid])
    best = np.argmin(np.abs(far - frr))
    eer = eer_of(target, nontarget)
    assert abs(eer - (far[best] + frr[best]) / 2) < 2e-3
    assert 0.25 < eer < 0.35  # two unit Gaussians one std apart: Phi(-0.5) = 0.31


def test_eer_refuses_bad_input():
    with pytest.raises(DdtseError, match="target and non-target"):
        equal_error_rate([0.1, 0.2], [1, 1])
    with pytest.raises(DdtseError, match="labels"):
        equal_error_rate([0.1, 0.2], [1, 2])
    with pytest.raises(DdtseError, match="scores but"):
        equal_error_rate([0.1], [1, 0])


def test_trials_are_seeded_labelled_and_round_trip(tmp_path):
    speakers = {f"{s}-0-{u}": s for s in ("a", "b", "c") for u in range(4)}
    trials = make_trials(speakers, num_trials=20, seed=3)
    assert trials == make_trials(speakers, num_trials=20, seed=3)
    assert trials != make_trials(speakers, num_trials=20, seed=4)
    assert len(trials) == 20 and sum(t[0] for t in trials) == 10
    assert all(label == int(speakers[a] == speakers[b]) and a != b for label, a, b in trials)
    assert len({(a, b) for _, a, b in trials}) == 20
    # all 18 same-speaker pairs, then the rest different-speaker pairs
    many = make_trials(speakers, num_trials=1000, seed=0)
    assert sum(t[0] for t in many) == 18 and len(many) == 66
    path = write_trials(tmp_path / "trials.txt", trials)
    assert path.read_text().splitlines()[0].count(" ") == 2
    assert read_trials(path) == trials


def test_read_trials_refuses_a_bad_line(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("1 a b\nmaybe a b\n")
    with pytest.raises(DdtseError, match="t.txt:2"):
        read_trials(path)


def test_score_trials_cosine():
    emb = {"a1": np.array([1.0, 0.0]), "a2": np.array([2.0, 0.1]), "b1": np.array([0.0, 1.0]),
           "b2": np.array([-0.1, 3.0])}
    trials = [(1, "a1", "a2"), (1, "b1", "b2"), (0, "a1", "b1"), (0, "a2", "b2")]
    assert cosine_scores(emb, trials)[2] == pytest.approx(0.0)
    result = score_trials(emb, trials)
    assert result["eer"] == pytest.approx(0.0) and result["trials"] == 4 and result["target_trials"] == 2
    with pytest.raises(DdtseError, match="no embedding for utterance zz"):
        score_trials(emb, [(1, "a1", "zz")])

"""speaker_utterances (ddtse/data/speakers.py): speaker-labelled utterances from Libri2Mix sources,
speaker folders and extraction lists, with training crops and augmentation."""
import numpy as np
import pytest

from data_helpers import RATE, dominant_frequency, SPEAKER_FREQ
from ddtse.data.datamodule import build_dataset, collate_batch
from ddtse.data.lists import make_extr_lines, write_extr_list
from ddtse.errors import DdtseError


def test_librimix_sources_carry_their_speakers(librimix_root):
    ds = build_dataset({"name": "speaker_utterances", "root": str(librimix_root), "split": "dev"}, RATE)
    assert ds.speakers == sorted(SPEAKER_FREQ)
    assert len(set(ds.ids)) == len(ds)
    for i in range(len(ds)):
        item = ds[i]
        speaker = ds.speakers[item["speaker_index"]]
        assert item["id"].split("-")[0] == speaker == item["speaker"]
        assert dominant_frequency(item["mixture"]) == pytest.approx(SPEAKER_FREQ[speaker], abs=5)
    assert set(ds.utterance_speakers().values()) == set(SPEAKER_FREQ)


def test_training_crops_are_augmented_and_seeded(librimix_root):
    cfg = {"name": "speaker_utterances", "sources": [{"type": "librimix", "root": str(librimix_root), "split": "dev"}],
           "segment_seconds": 1.0, "noise_prob": 1.0, "snr_range": [10, 10], "gain_db": [0, 0]}
    ds = build_dataset(cfg, RATE, seed=1, train=True)
    a, b = ds[(0, 0)], ds[(0, 1)]
    assert a["mixture"].shape == (RATE,)  # 0.4-0.7 s utterances are repeated to fill 1 s
    np.testing.assert_array_equal(a["mixture"], ds[(0, 0)]["mixture"])
    assert not np.array_equal(a["mixture"], b["mixture"])
    clean = build_dataset({**cfg, "noise_prob": 0.0}, RATE, seed=1, train=True)[(0, 0)]["mixture"]
    snr = 10 * np.log10(np.mean(clean**2) / np.mean((a["mixture"] - clean) ** 2))
    assert snr == pytest.approx(10.0, abs=0.5)
    batch = collate_batch([ds[(i, 0)] for i in range(3)])
    assert batch["mixture"].shape == (3, 1, RATE) and batch["speaker_index"].shape == (3,)


def test_folders_and_extraction_lists(speaker_folder, tmp_path):
    folder = build_dataset({"name": "speaker_utterances", "sources": str(speaker_folder), "max_seconds": 0.3}, RATE)
    assert folder.speakers == ["1272", "2035", "6313"] and len(folder) == 9
    assert folder[0]["mixture"].shape == (int(0.3 * RATE),)
    lst = write_extr_list(tmp_path / "list.txt", make_extr_lines(str(speaker_folder), 6, speaker_folder, seed=0))
    ds = build_dataset({"name": "speaker_utterances",
                        "sources": [{"type": "extr_list", "list": str(lst), "root": str(speaker_folder)}]}, RATE)
    assert set(ds.speakers) <= {"100", "101", "102"} and len(ds) <= 9  # speaker = the file's folder
    both = build_dataset({"name": "speaker_utterances", "sources": [str(speaker_folder),
                          {"type": "extr_list", "list": str(lst), "root": str(speaker_folder)}]}, RATE)
    assert len(both) == 9  # an utterance listed by two sources is read once


def test_errors(speaker_folder):
    with pytest.raises(DdtseError, match="needs 'sources'"):
        build_dataset({"name": "speaker_utterances"}, RATE)
    with pytest.raises(DdtseError, match="segment_seconds"):
        build_dataset({"name": "speaker_utterances", "sources": str(speaker_folder), "segment_seconds": None},
                      RATE, train=True)
    with pytest.raises(DdtseError, match="snr_range"):
        build_dataset({"name": "speaker_utterances", "sources": str(speaker_folder), "snr_range": [20, 5]}, RATE)

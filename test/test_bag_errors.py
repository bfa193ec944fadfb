"""Bad input to ``bag make`` / ``bag evaluate``: one clear error, exit 1, and no output left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from fusion_perception.bag.cli import main
from fusion_perception.bag.make import MakeOptions, make_bag
from fusion_perception.bag.messages import IMAGE, header_msg, typestore

NAMES = ("00032N", "00404D")  # two of the shipped sample pairs (conftest.sample_pairs_msrs)


@pytest.fixture(scope="module")
def good_bag(tmp_path_factory: pytest.TempPathFactory, sample_pairs_msrs: Path) -> Path:
    path = tmp_path_factory.mktemp("good") / "bag"
    make_bag(sample_pairs_msrs, path, MakeOptions(names=NAMES, rate_hz=10.0))
    return path


def copy_bag(src: Path, dst_dir: Path) -> Path:
    dst = dst_dir / "bag"
    shutil.copytree(src, dst)
    return dst


def evaluate_fails(bag: Path, out: Path, model: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
    """Run evaluate expecting exit 1; check nothing was written to ``out``; return stderr."""
    out.mkdir(exist_ok=True)
    before = sorted(out.iterdir())
    code = main(
        [
            "evaluate",
            str(bag),
            "--json",
            str(out / "e.json"),
            "--report",
            str(out / "report"),
            "--model",
            str(model),
            "--no-progress",
            *extra,
        ]
    )
    err = capsys.readouterr().err
    assert code == 1, err
    assert "error:" in err
    assert sorted(out.iterdir()) == before, "a failed run must leave no (partial) output"
    return err


def test_missing_topic_names_it_and_lists_the_bag_topics(
    good_bag: Path, tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    err = evaluate_fails(good_bag, tmp_path / "out", model_path, capsys, "--visible-topic", "/cam/visible")
    assert "'/cam/visible'" in err and "/visible/image" in err


def test_truncated_mcap_is_reported_as_corrupt(
    good_bag: Path, tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = copy_bag(good_bag, tmp_path)
    mcap = bag / "bag.mcap"
    data = mcap.read_bytes()
    mcap.write_bytes(data[: len(data) * 6 // 10])
    err = evaluate_fails(bag, tmp_path / "out", model_path, capsys)
    assert "truncated or corrupt" in err or "cannot open bag" in err


def test_corrupt_metadata_and_missing_bag(
    good_bag: Path, tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = copy_bag(good_bag, tmp_path)
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, bag\n")
    assert "cannot open bag" in evaluate_fails(bag, tmp_path / "out", model_path, capsys)
    assert "does not exist" in evaluate_fails(tmp_path / "nope", tmp_path / "out", model_path, capsys)


def test_unknown_encoding_names_encoding_and_topic(
    tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store, bag = typestore(), tmp_path / "yuv"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for topic in ("/ir/image", "/visible/image"):
            conn = writer.add_connection(topic, IMAGE, typestore=store)
            encoding, step = ("mono8", 8) if topic == "/ir/image" else ("yuv422", 16)
            msg = store.types[IMAGE](
                header=header_msg(10**9, "cam"),
                height=4,
                width=8,
                encoding=encoding,
                is_bigendian=0,
                step=step,
                data=np.zeros(4 * step, np.uint8),
            )
            writer.write(conn, 10**9, store.serialize_cdr(msg, IMAGE))
    err = evaluate_fails(bag, tmp_path / "out", model_path, capsys)
    assert "yuv422" in err and "/visible/image" in err


def test_unreadable_label_file_at_evaluate(
    good_bag: Path, tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = copy_bag(good_bag, tmp_path)
    bad = bag / "labels" / f"{NAMES[1]}.txt"
    bad.write_text("0 0.5 0.5 0.1\nnot a label line\n")
    err = evaluate_fails(bag, tmp_path / "out", model_path, capsys)
    assert str(bad) in err


def test_malformed_label_index(
    good_bag: Path, tmp_path: Path, model_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bag = copy_bag(good_bag, tmp_path)
    (bag / "labels.json").write_text('{"version": 1, "format": "yolo"')
    assert "labels.json" in evaluate_fails(bag, tmp_path / "out", model_path, capsys)


def test_unreadable_label_file_at_make_leaves_no_bag(
    tmp_path: Path, sample_pairs_msrs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = tmp_path / "data"
    for folder in ("ir", "vi", "labels_det_fusion"):
        (dataset / folder).mkdir(parents=True)
    for name in NAMES:
        for folder in ("ir", "vi"):
            (dataset / folder / f"{name}.png").symlink_to(sample_pairs_msrs / folder / f"{name}.png")
        shutil.copyfile(
            sample_pairs_msrs / "labels_det_fusion" / f"{name}.txt",
            dataset / "labels_det_fusion" / f"{name}.txt",
        )
    (dataset / "labels_det_fusion" / f"{NAMES[1]}.txt").write_bytes(b"\xff\xfe\x00garbage")
    out = tmp_path / "out"
    out.mkdir()
    code = main(["make", str(dataset), str(out / "bag")])
    err = capsys.readouterr().err
    assert code == 1 and f"{NAMES[1]}.txt" in err
    assert list(out.iterdir()) == []


def test_existing_output_is_never_overwritten(
    good_bag: Path,
    tmp_path: Path,
    model_path: Path,
    sample_pairs_msrs: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "e.json").write_text("{}")
    code = main(["evaluate", str(good_bag), "--json", str(tmp_path / "e.json"), "--model", str(model_path)])
    assert code == 1 and "exists already" in capsys.readouterr().err
    assert (tmp_path / "e.json").read_text() == "{}"
    assert main(["make", str(sample_pairs_msrs), str(good_bag), "--limit", "1"]) == 1
    assert "exists already" in capsys.readouterr().err

"""``bag make`` on real MSRS pairs: what the bag holds must be exactly the dataset, stamped as asked."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from fusion_perception.bag.cli import main
from fusion_perception.bag.make import MakeOptions, make_bag
from fusion_perception.bag.messages import image_from_msg, stamp_ns, typestore

NAMES = ("00008N", "00032N", "00081D", "00107D")  # val split; 00107D has an empty label file


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time, deserialized message)] in log order."""
    out: dict[str, list[tuple[int, object]]] = {}
    with Reader(path) as reader:
        for conn, log_ns, raw in reader.messages():
            out.setdefault(conn.topic, []).append((log_ns, typestore().deserialize_cdr(raw, conn.msgtype)))
    return out


def test_mcap_bag_holds_the_pairs_stamps_jitter_and_labels(tmp_path: Path, msrs_root: Path) -> None:
    opts = MakeOptions(names=NAMES, rate_hz=10.0, jitter_ms=5.0, seed=3)
    summary = make_bag(msrs_root, tmp_path / "bag", opts)
    assert summary.pairs == 4 and summary.labelled == 4
    assert (tmp_path / "bag" / "bag.mcap").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bag"], "no temporary left behind"
    topics = read_bag(tmp_path / "bag")
    assert set(topics) == {"/ir/image", "/ir/camera_info", "/visible/image", "/visible/camera_info"}
    vis_stamps = [stamp_ns(m.header) for _, m in topics["/visible/image"]]
    ir_stamps = [stamp_ns(m.header) for _, m in topics["/ir/image"]]
    assert vis_stamps == [opts.start_ns + i * 100_000_000 for i in range(4)]
    offsets = np.array(ir_stamps) - np.array(vis_stamps)
    assert np.all(np.abs(offsets) <= 5_000_000) and np.any(offsets != 0)
    assert [log for log, _ in topics["/visible/image"]] == vis_stamps  # recorded when stamped
    for name, (_, ir_msg), (_, vis_msg) in zip(
        NAMES, topics["/ir/image"], topics["/visible/image"], strict=True
    ):
        assert ir_msg.encoding == "mono8" and vis_msg.encoding == "bgr8"
        ir_png = cv2.imread(str(msrs_root / "ir" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        ir_png = ir_png if ir_png.ndim == 2 else ir_png[:, :, 0]
        np.testing.assert_array_equal(image_from_msg(ir_msg), ir_png)
        vis_png = cv2.imread(str(msrs_root / "vi" / f"{name}.png"))
        np.testing.assert_array_equal(image_from_msg(vis_msg), vis_png)
        assert ir_msg.header.frame_id == "ir_camera" and vis_msg.header.frame_id == "visible_camera"
    for _, info in topics["/visible/camera_info"]:
        assert (info.width, info.height) == (640, 480) and info.k[8] == 1.0
    index = json.loads((tmp_path / "bag" / "labels.json").read_text())
    assert index["classes"] == ["person", "bicycle", "car"]
    assert [f["stamp_ns"] for f in index["frames"]] == vis_stamps
    for name, frame in zip(NAMES, index["frames"], strict=True):
        copied = (tmp_path / "bag" / frame["file"]).read_text()
        assert copied == (msrs_root / "labels_det_fusion" / f"{name}.txt").read_text()


def test_sqlite3_bag_with_16bit_ir_and_rgb8_visible(tmp_path: Path, msrs_root: Path) -> None:
    opts = MakeOptions(
        storage="sqlite3", names=NAMES[:2], ir_16bit=True, visible_encoding="rgb8", labels_dir=""
    )
    make_bag(msrs_root, tmp_path / "bag", opts)
    assert (tmp_path / "bag" / "bag.db3").is_file()
    assert not (tmp_path / "bag" / "labels.json").exists()
    topics = read_bag(tmp_path / "bag")
    (_, ir_msg), (_, vis_msg) = topics["/ir/image"][0], topics["/visible/image"][0]
    assert ir_msg.encoding == "mono16" and vis_msg.encoding == "rgb8"
    ir8 = cv2.imread(str(msrs_root / "ir" / f"{NAMES[0]}.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(image_from_msg(ir_msg), ir8.astype(np.uint16) * 257)
    vis_png = cv2.imread(str(msrs_root / "vi" / f"{NAMES[0]}.png"))
    np.testing.assert_array_equal(image_from_msg(vis_msg), vis_png)


def test_cli_make_with_split_file(
    tmp_path: Path, msrs_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    split = tmp_path / "split.txt"
    split.write_text("\n".join(NAMES[:3]) + "\n")
    code = main(["make", str(msrs_root), str(tmp_path / "bag"), "--split", str(split), "--rate", "15"])
    assert code == 0, capsys.readouterr().err
    assert "3 pairs, 3 labelled" in capsys.readouterr().out
    stamps = [stamp_ns(m.header) for _, m in read_bag(tmp_path / "bag")["/visible/image"]]
    assert np.diff(stamps).tolist() == [66_666_667, 66_666_666]

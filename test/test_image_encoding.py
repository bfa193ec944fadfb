"""decode_image / encode_image on every accepted encoding, with padding, byte order and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fusion_perception.errors import EncodingError
from fusion_perception.image_encoding import ACCEPTED_ENCODINGS, decode_image, encode_image

RNG = np.random.default_rng(0)
H, W = 5, 7
GREY8 = RNG.integers(0, 256, (H, W), dtype=np.uint8)
GREY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
BGR = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)

# encoding -> (raw pixels in the encoding's channel order, expected decoded array)
CASES = {
    "mono8": (GREY8, GREY8),
    "8UC1": (GREY8, GREY8),
    "mono16": (GREY16, GREY16),
    "16UC1": (GREY16, GREY16),
    "bgr8": (BGR, BGR),
    "8UC3": (BGR, BGR),
    "rgb8": (BGR[:, :, ::-1], BGR),
    "bgra8": (np.concatenate((BGR, ALPHA), axis=2), BGR),
    "rgba8": (np.concatenate((BGR[:, :, ::-1], ALPHA), axis=2), BGR),
}


def _fields(raw: np.ndarray, encoding: str, pad: int = 0, big_endian: bool = False) -> dict:
    dtype = raw.dtype.newbyteorder(">" if big_endian else "<")
    rows = np.ascontiguousarray(raw, dtype=dtype).reshape(raw.shape[0], -1).view(np.uint8)
    padded = np.concatenate((rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)), axis=1)
    return dict(encoding=encoding, height=raw.shape[0], width=raw.shape[1], step=padded.shape[1],
                is_bigendian=big_endian, data=padded.tobytes())


def test_cases_cover_every_accepted_encoding() -> None:
    assert set(CASES) == set(ACCEPTED_ENCODINGS)


@pytest.mark.parametrize("encoding", sorted(CASES))
@pytest.mark.parametrize("pad", [0, 3, 64])
def test_decode_every_encoding_with_step_padding(encoding: str, pad: int) -> None:
    raw, expected = CASES[encoding]
    out = decode_image(**_fields(raw, encoding, pad))
    assert out.dtype == expected.dtype and out.shape == expected.shape
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_big_endian_mono16_decodes_to_native_values(encoding: str) -> None:
    out = decode_image(**_fields(GREY16, encoding, pad=2, big_endian=True))
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, GREY16)


def test_big_endian_flag_changes_16bit_values() -> None:
    fields = _fields(GREY16, "mono16")
    swapped = decode_image(**{**fields, "is_bigendian": True})
    np.testing.assert_array_equal(swapped, GREY16.byteswap())


@pytest.mark.parametrize(("array", "encoding"), [(GREY8, "mono8"), (GREY16, "mono16"), (BGR, "bgr8"),
                                                 (BGR, "rgb8")])
def test_encode_decode_round_trip(array: np.ndarray, encoding: str) -> None:
    enc, h, w, step, data = encode_image(array, encoding if encoding == "rgb8" else None)
    assert (enc, h, w) == (encoding, H, W)
    out = decode_image(encoding=enc, height=h, width=w, step=step, is_bigendian=False, data=data)
    np.testing.assert_array_equal(out, array)


@pytest.mark.parametrize(("change", "message"), [
    ({"encoding": "yuv422"}, "unsupported image encoding 'yuv422'"),
    ({"step": 3 * W - 1}, "shorter than one bgr8 row"),
    ({"step": 3 * W + 4}, "needs"),
    ({"data": b"\x00" * 10}, "got 10"),
    ({"height": 0}, "must be positive"),
])
def test_bad_layouts_raise_encoding_error_naming_the_problem(change: dict, message: str) -> None:
    fields = {**_fields(BGR, "bgr8"), **change}
    with pytest.raises(EncodingError, match=message):
        decode_image(**fields)


def test_encode_rejects_arrays_it_cannot_represent() -> None:
    with pytest.raises(EncodingError):
        encode_image(np.zeros((2, 2), np.float32))
    with pytest.raises(EncodingError):
        encode_image(GREY8, "bgr8")


def test_ros_message_round_trip_keeps_header_and_pixels() -> None:
    from std_msgs.msg import Header

    from fusion_perception.ros.messages import array_to_image, image_to_array

    header = Header(frame_id="cam")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    for array in (GREY8, GREY16, BGR):
        msg = array_to_image(array, header)
        assert msg.header.frame_id == "cam" and msg.header.stamp.nanosec == 345
        np.testing.assert_array_equal(image_to_array(msg), array)

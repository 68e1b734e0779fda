"""How coarsely a HEIC was quantized, read from its own headers: its first slice's quantization parameter.

A HEIC's primary image (an iPhone's is a grid: its first tile) is an HEVC intra picture. Its QP, 0 finest .. 51
coarsest, is 26 + the picture parameter set's ``init_qp_minus26`` + the slice header's ``slice_qp_delta`` (ITU-T
H.265, sections 7.3.2.3.1 and 7.3.6.1); adaptive quantization moves each block's QP around it. The parameter sets
travel in the item's ``hvcC`` property (``worker.heif_container``); reaching ``slice_qp_delta`` takes the sequence
parameter set's fields that decide which slice header fields exist. Only IDR pictures are read (what libheif's
x265 writes; any other picture type reads as unknown, None, and the caller falls back to a prior). A sequence
parameter set whose chroma format or bit depth disagrees with what the ``hvcC`` record states itself was misread,
and is not used. No pixels are decoded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from worker.bitstream import BitReader, HeaderTruncated
from worker.heif_container import read_primary_item

QP_MAX = 51
_QP_MIN = -6 * 8  # -QpBdOffsetY at the deepest bit depth (16)
_SLICE_HEADER_BYTES = 512  # the slice header opens its NAL unit; the coded blocks follow
_HVCC_CHROMA = 16  # hvcC's chromaFormat byte; bitDepthLumaMinus8 follows
_IDR_W_RADL, _IDR_N_LP, _BLA_W_LP, _RSV_IRAP_23 = 19, 20, 16, 23
_SPS, _PPS = 33, 34
_SLICE_I = 2
_HVCC_ARRAYS = 22  # the byte of hvcC holding numOfArrays; lengthSizeMinusOne is in the byte before


@dataclass(frozen=True)
class _SequenceParameters:
    """The sequence parameter set's fields the slice header's layout depends on."""

    sps_id: int
    separate_colour_plane: bool
    chroma_format_idc: int
    bit_depth_luma_minus8: int
    sample_adaptive_offset: bool


@dataclass(frozen=True)
class _PictureParameters:
    pps_id: int
    sps_id: int
    output_flag_present: bool
    extra_slice_header_bits: int
    init_qp: int


_Parameters = TypeVar("_Parameters", _SequenceParameters, _PictureParameters)


def heif_slice_qp(path: Path) -> int | None:
    """The primary image's HEVC slice QP (0..51) of a HEIC file; None where it cannot be read."""
    with open(path, "rb") as fh:
        item = read_primary_item(fh, b"hvc1")
    if item is None or b"hvcC" not in item.properties:
        return None
    try:
        return hevc_slice_qp(item.properties[b"hvcC"], item.head)
    except (HeaderTruncated, IndexError):
        return None


def hevc_slice_qp(hvcc: bytes, data: bytes) -> int | None:
    """The QP of the first slice in ``data`` (length-prefixed NAL units) with the parameter sets of ``hvcc`` (an
    HEVCDecoderConfigurationRecord)."""
    length_size = (hvcc[_HVCC_ARRAYS - 1] & 3) + 1
    parameter_sets = _parameter_sets(hvcc)
    # a set that cannot be read is left out (the slice may not use it); one that disagrees with the record's own
    # chroma format and bit depth (hvcC bytes 16 and 17) was misread, and is left out too
    declared = (hvcc[_HVCC_CHROMA] & 3, hvcc[_HVCC_CHROMA + 1] & 7)
    sequences = {s.sps_id: s for s in _each(_sequence_parameters, parameter_sets.get(_SPS, []))
                 if (s.chroma_format_idc, s.bit_depth_luma_minus8) == declared}
    pictures = {p.pps_id: p for p in _each(_picture_parameters, parameter_sets.get(_PPS, []))}
    position = 0
    while position + length_size <= len(data):
        size = int.from_bytes(data[position:position + length_size], "big")
        nal = data[position + length_size:position + length_size + size]
        position += length_size + size
        nal_type = (nal[0] >> 1) & 0x3F
        if nal_type < 32:  # the first coded slice: its header opens it
            return _slice_qp(_rbsp(nal[:_SLICE_HEADER_BYTES]), nal_type, sequences, pictures)
    return None


def _each(parse: Callable[[bytes], _Parameters], units: list[bytes]) -> Iterator[_Parameters]:
    """``parse`` of each unit that can be read."""
    for unit in units:
        try:
            yield parse(unit)
        except HeaderTruncated:
            continue


def _parameter_sets(hvcc: bytes) -> dict[int, list[bytes]]:
    """hvcC's NAL unit arrays: {NAL unit type: [RBSP of each unit, its 2-byte header removed]}."""
    position, found = _HVCC_ARRAYS + 1, {}
    for _ in range(hvcc[_HVCC_ARRAYS]):
        nal_type, count = hvcc[position] & 0x3F, int.from_bytes(hvcc[position + 1:position + 3], "big")
        position += 3
        for _ in range(count):
            size = int.from_bytes(hvcc[position:position + 2], "big")
            if nal_type in (_SPS, _PPS):  # the video parameter set and SEI are not needed
                found.setdefault(nal_type, []).append(_rbsp(hvcc[position + 2:position + 2 + size]))
            position += 2 + size
    return found


def _rbsp(nal: bytes) -> bytes:
    """A NAL unit's payload without its 2-byte header and its emulation prevention bytes (00 00 03 -> 00 00)."""
    out, zeros = bytearray(), 0
    for byte in nal[2:]:
        if zeros >= 2 and byte == 3:
            zeros = 0
            continue
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out)


def _profile_tier_level(bits: BitReader, max_sub_layers_minus1: int) -> None:
    bits.f(96)  # general profile space, tier, profile, 32 compatibility flags, 48 constraint bits, level
    present = [(bits.f(1), bits.f(1)) for _ in range(max_sub_layers_minus1)]
    if max_sub_layers_minus1 > 0:
        bits.f(2 * (8 - max_sub_layers_minus1))  # reserved_zero_2bits
    for profile, level in present:
        bits.f(88 * profile + 8 * level)


def _scaling_list_data(bits: BitReader) -> None:
    for size_id in range(4):
        for _matrix_id in range(0, 6, 3 if size_id == 3 else 1):
            if not bits.f(1):  # scaling_list_pred_mode_flag
                bits.ue()  # scaling_list_pred_matrix_id_delta
                continue
            if size_id > 1:
                bits.se()  # scaling_list_dc_coef_minus8
            for _ in range(min(64, 1 << (4 + (size_id << 1)))):
                bits.se()  # scaling_list_delta_coef


def _sequence_parameters(rbsp: bytes) -> _SequenceParameters:
    bits = BitReader(rbsp)
    bits.f(4)  # sps_video_parameter_set_id
    max_sub_layers_minus1 = bits.f(3)
    bits.f(1)  # sps_temporal_id_nesting_flag
    _profile_tier_level(bits, max_sub_layers_minus1)
    sps_id = bits.ue()
    chroma_format_idc = bits.ue()
    separate = bool(bits.f(1)) if chroma_format_idc == 3 else False
    bits.ue()  # pic_width_in_luma_samples
    bits.ue()  # pic_height_in_luma_samples
    if bits.f(1):  # conformance_window_flag
        for _ in range(4):
            bits.ue()
    bit_depth_luma_minus8 = bits.ue()
    bits.ue()  # bit_depth_chroma_minus8
    bits.ue()  # log2_max_pic_order_cnt_lsb_minus4
    ordering_info_for_all = bits.f(1)
    for _ in range(max_sub_layers_minus1 + 1 if ordering_info_for_all else 1):
        bits.ue()  # sps_max_dec_pic_buffering_minus1
        bits.ue()  # sps_max_num_reorder_pics
        bits.ue()  # sps_max_latency_increase_plus1
    for _ in range(6):  # coding and transform block sizes, transform hierarchy depths
        bits.ue()
    if bits.f(1) and bits.f(1):  # scaling_list_enabled_flag, sps_scaling_list_data_present_flag
        _scaling_list_data(bits)
    bits.f(1)  # amp_enabled_flag
    return _SequenceParameters(sps_id, separate, chroma_format_idc, bit_depth_luma_minus8, bool(bits.f(1)))


def _picture_parameters(rbsp: bytes) -> _PictureParameters:
    bits = BitReader(rbsp)
    pps_id, sps_id = bits.ue(), bits.ue()
    bits.f(1)  # dependent_slice_segments_enabled_flag (only a later slice segment's header depends on it)
    output_flag, extra_bits = bool(bits.f(1)), bits.f(3)
    bits.f(2)  # sign_data_hiding_enabled_flag, cabac_init_present_flag
    bits.ue()  # num_ref_idx_l0_default_active_minus1
    bits.ue()  # num_ref_idx_l1_default_active_minus1
    return _PictureParameters(pps_id, sps_id, output_flag, extra_bits, 26 + bits.se())


def _slice_qp(rbsp: bytes, nal_type: int, sequences: dict[int, _SequenceParameters],
              pictures: dict[int, _PictureParameters]) -> int | None:
    """``slice_segment_header()`` up to ``slice_qp_delta``, for the first slice of an IDR intra picture."""
    if nal_type not in (_IDR_W_RADL, _IDR_N_LP):
        return None
    bits = BitReader(rbsp)
    if not bits.f(1):  # first_slice_segment_in_pic_flag
        return None
    if _BLA_W_LP <= nal_type <= _RSV_IRAP_23:
        bits.f(1)  # no_output_of_prior_pics_flag
    picture = pictures.get(bits.ue())
    sequence = sequences.get(picture.sps_id) if picture else None
    if picture is None or sequence is None:
        return None
    bits.f(picture.extra_slice_header_bits)  # slice_reserved_flag
    if bits.ue() != _SLICE_I:
        return None
    if picture.output_flag_present:
        bits.f(1)  # pic_output_flag
    if sequence.separate_colour_plane:
        bits.f(2)  # colour_plane_id
    if sequence.sample_adaptive_offset:
        bits.f(1)  # slice_sao_luma_flag
        if not sequence.separate_colour_plane and sequence.chroma_format_idc != 0:
            bits.f(1)  # slice_sao_chroma_flag
    qp = picture.init_qp + bits.se()
    if not _QP_MIN <= qp <= QP_MAX:
        return None
    return max(qp, 0)  # below 0 only at high bit depths: as fine as 8 bits go

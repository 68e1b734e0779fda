"""How coarsely an AVIF was quantized, read from its own headers: the AV1 frame header's ``base_q_idx``.

An AVIF records no quality setting, but its primary image item is an AV1 key frame whose uncompressed header
carries the base quantizer index the encoder chose (0 finest .. 255 coarsest; AV1 specification, section 5.9.12),
from which every coefficient's step is derived (segmentation and delta-q, further on, may shift it per segment or
superblock: not read here; libaom's files read their cq-level's index whatever its aq mode). Reaching it means
taking the primary item's data from the HEIF container (``worker.heif_container``; a grid's first tile), then its
OBUs: the sequence header (section 5.5), whose fields decide which frame header fields exist, and the frame header
up to its quantization parameters (sections 5.9.2-5.9.12, through ``tile_info``). No pixels are decoded. Anything
this reader does not expect (an inter frame, an odd box) reads as unknown (None), and the caller falls back to a
prior.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from worker.bitstream import BitReader, HeaderTruncated
from worker.heif_container import read_primary_item

QUANTIZER_MAX = 255
_SELECT = 2  # SELECT_SCREEN_CONTENT_TOOLS / SELECT_INTEGER_MV
_KEY_FRAME, _INTRA_ONLY, _SWITCH_FRAME = 0, 2, 3
_OBU_SEQUENCE_HEADER, _OBU_FRAME_HEADER, _OBU_FRAME = 1, 3, 6
_MAX_TILE_WIDTH, _MAX_TILE_AREA, _MAX_TILE_COLS, _MAX_TILE_ROWS = 4096, 4096 * 2304, 64, 64


@dataclass(frozen=True)
class _SequenceHeader:
    """The sequence header fields the frame header's layout depends on."""

    reduced_still_picture_header: bool
    decoder_model_info_present: bool
    equal_picture_interval: bool
    buffer_removal_time_length: int
    frame_presentation_time_length: int
    operating_points: tuple[tuple[int, bool], ...]  # (operating_point_idc, decoder model present)
    frame_width_bits: int
    frame_height_bits: int
    max_frame_width: int
    max_frame_height: int
    frame_id_length: int | None  # None: frame ids not present
    use_128x128_superblock: bool
    force_screen_content_tools: int
    force_integer_mv: int
    order_hint_bits: int
    enable_superres: bool


def _sequence_header(bits: BitReader) -> _SequenceHeader:
    bits.f(3)  # seq_profile
    bits.f(1)  # still_picture
    reduced = bool(bits.f(1))
    decoder_model = equal_interval = False
    removal_length = presentation_length = delay_length = 0
    points: list[tuple[int, bool]] = []
    if reduced:
        bits.f(5)  # seq_level_idx[0]
        points.append((0, False))
    else:
        if bits.f(1):  # timing_info_present_flag
            bits.f(32)  # num_units_in_display_tick
            bits.f(32)  # time_scale
            equal_interval = bool(bits.f(1))
            if equal_interval:
                bits.uvlc()  # num_ticks_per_picture_minus_1
            decoder_model = bool(bits.f(1))
            if decoder_model:
                delay_length = bits.f(5) + 1
                bits.f(32)  # num_units_in_decoding_tick
                removal_length = bits.f(5) + 1
                presentation_length = bits.f(5) + 1
        initial_display_delay = bits.f(1)
        for _ in range(bits.f(5) + 1):
            idc = bits.f(12)
            if bits.f(5) > 7:  # seq_level_idx
                bits.f(1)  # seq_tier
            present = bool(decoder_model and bits.f(1))
            if present:
                bits.f(delay_length)  # decoder_buffer_delay
                bits.f(delay_length)  # encoder_buffer_delay
                bits.f(1)  # low_delay_mode_flag
            if initial_display_delay and bits.f(1):
                bits.f(4)  # initial_display_delay_minus_1
            points.append((idc, present))
    width_bits, height_bits = bits.f(4) + 1, bits.f(4) + 1
    max_width, max_height = bits.f(width_bits) + 1, bits.f(height_bits) + 1
    frame_id_length = None
    if not reduced and bits.f(1):  # frame_id_numbers_present_flag
        delta_length = bits.f(4) + 2
        frame_id_length = bits.f(3) + 1 + delta_length
    use_128 = bool(bits.f(1))
    bits.f(2)  # enable_filter_intra, enable_intra_edge_filter
    screen_content, integer_mv, order_hint_bits = _SELECT, _SELECT, 0
    if not reduced:
        bits.f(4)  # enable_interintra_compound, enable_masked_compound, enable_warped_motion, enable_dual_filter
        order_hint = bits.f(1)
        if order_hint:
            bits.f(2)  # enable_jnt_comp, enable_ref_frame_mvs
        screen_content = _SELECT if bits.f(1) else bits.f(1)
        if screen_content > 0:
            integer_mv = _SELECT if bits.f(1) else bits.f(1)
        if order_hint:
            order_hint_bits = bits.f(3) + 1
    superres = bool(bits.f(1))
    return _SequenceHeader(reduced, decoder_model, equal_interval, removal_length, presentation_length, tuple(points),
                           width_bits, height_bits, max_width, max_height, frame_id_length, use_128, screen_content,
                           integer_mv, order_hint_bits, superres)


def _tile_log2(block: int, target: int) -> int:
    k = 0
    while (block << k) < target:
        k += 1
    return k


def _tile_info(bits: BitReader, seq: _SequenceHeader, frame_width: int, frame_height: int) -> None:
    """Skip ``tile_info()`` (section 5.9.15): how many bits it takes depends on the frame's size in superblocks."""
    mi_cols, mi_rows = 2 * ((frame_width + 7) >> 3), 2 * ((frame_height + 7) >> 3)
    shift = 5 if seq.use_128x128_superblock else 4
    sb_cols, sb_rows = (mi_cols + (1 << shift) - 1) >> shift, (mi_rows + (1 << shift) - 1) >> shift
    sb_size = shift + 2
    max_tile_width_sb = _MAX_TILE_WIDTH >> sb_size
    max_tile_area_sb = _MAX_TILE_AREA >> (2 * sb_size)
    min_log2_cols = _tile_log2(max_tile_width_sb, sb_cols)
    max_log2_cols = _tile_log2(1, min(sb_cols, _MAX_TILE_COLS))
    max_log2_rows = _tile_log2(1, min(sb_rows, _MAX_TILE_ROWS))
    min_log2_tiles = max(min_log2_cols, _tile_log2(max_tile_area_sb, sb_rows * sb_cols))
    if bits.f(1):  # uniform_tile_spacing_flag
        cols_log2 = min_log2_cols
        while cols_log2 < max_log2_cols and bits.f(1):
            cols_log2 += 1
        rows_log2 = max(min_log2_tiles - cols_log2, 0)
        while rows_log2 < max_log2_rows and bits.f(1):
            rows_log2 += 1
    else:
        widest, start, count = 0, 0, 0
        while start < sb_cols:
            size = bits.ns(min(sb_cols - start, max_tile_width_sb)) + 1
            widest, start, count = max(widest, size), start + size, count + 1
        cols_log2 = _tile_log2(1, count)
        area = (sb_rows * sb_cols) >> (min_log2_tiles + 1) if min_log2_tiles > 0 else sb_rows * sb_cols
        max_height = max(area // widest, 1)
        start, count = 0, 0
        while start < sb_rows:
            start, count = start + bits.ns(min(sb_rows - start, max_height)) + 1, count + 1
        rows_log2 = _tile_log2(1, count)
    if cols_log2 or rows_log2:
        bits.f(cols_log2 + rows_log2)  # context_update_tile_id
        bits.f(2)  # tile_size_bytes_minus_1


def _base_q_idx(bits: BitReader, seq: _SequenceHeader, temporal_id: int, spatial_id: int) -> int | None:
    """``uncompressed_header()`` up to ``base_q_idx``, for an intra frame (None for anything else)."""
    if seq.reduced_still_picture_header:
        frame_type, show_frame, error_resilient = _KEY_FRAME, True, True
    else:
        if bits.f(1):  # show_existing_frame
            return None
        frame_type = bits.f(2)
        show_frame = bool(bits.f(1))
        if show_frame and seq.decoder_model_info_present and not seq.equal_picture_interval:
            bits.f(seq.frame_presentation_time_length)
        if not show_frame:
            bits.f(1)  # showable_frame
        key_shown = frame_type == _KEY_FRAME and show_frame
        error_resilient = frame_type == _SWITCH_FRAME or key_shown or bool(bits.f(1))
    if frame_type not in (_KEY_FRAME, _INTRA_ONLY):
        return None
    disable_cdf_update = bits.f(1)
    screen_content = bits.f(1) if seq.force_screen_content_tools == _SELECT else seq.force_screen_content_tools
    if screen_content and seq.force_integer_mv == _SELECT:
        bits.f(1)  # force_integer_mv (an intra frame's is 1 whatever it says)
    if seq.frame_id_length is not None:
        bits.f(seq.frame_id_length)  # current_frame_id
    size_override = 0 if seq.reduced_still_picture_header else bits.f(1)
    bits.f(seq.order_hint_bits)  # order_hint
    if seq.decoder_model_info_present and bits.f(1):  # buffer_removal_time_present_flag
        for idc, present in seq.operating_points:
            in_layer = (idc >> temporal_id) & 1 and (idc >> (spatial_id + 8)) & 1
            if present and (idc == 0 or in_layer):
                bits.f(seq.buffer_removal_time_length)
    refreshes_all = (frame_type == _KEY_FRAME and show_frame) or bits.f(8) == 0xFF  # refresh_frame_flags
    if not refreshes_all and error_resilient and seq.order_hint_bits:
        for _ in range(8):
            bits.f(seq.order_hint_bits)  # ref_order_hint
    if size_override:
        width, height = bits.f(seq.frame_width_bits) + 1, bits.f(seq.frame_height_bits) + 1
    else:
        width, height = seq.max_frame_width, seq.max_frame_height
    upscaled_width = width
    if seq.enable_superres and bits.f(1):  # use_superres
        denominator = bits.f(3) + 9
        width = (upscaled_width * 8 + denominator // 2) // denominator
    if bits.f(1):  # render_and_frame_size_different
        bits.f(32)  # render_width_minus_1, render_height_minus_1
    if screen_content and upscaled_width == width:
        bits.f(1)  # allow_intrabc
    if not (seq.reduced_still_picture_header or disable_cdf_update):
        bits.f(1)  # disable_frame_end_update_cdf
    _tile_info(bits, seq, width, height)
    return bits.f(8)


def _leb128(data: bytes, position: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if position + i >= len(data):
            raise HeaderTruncated
        byte = data[position + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, position + i + 1
    raise HeaderTruncated


def av1_base_q_idx(obus: bytes) -> int | None:
    """The ``base_q_idx`` of the first frame in a run of AV1 OBUs (an AVIF item's data, sizes in their headers);
    None where no sequence header precedes an intra frame header, or the data is cut short."""
    sequence: _SequenceHeader | None = None
    position = 0
    try:
        while position < len(obus):
            header = obus[position]
            kind, extension, has_size = (header >> 3) & 0xF, (header >> 2) & 1, (header >> 1) & 1
            temporal_id = spatial_id = 0
            position += 1
            if extension:
                if position >= len(obus):
                    return None
                temporal_id, spatial_id = obus[position] >> 5, (obus[position] >> 3) & 3
                position += 1
            if has_size:
                size, position = _leb128(obus, position)
            else:  # allowed for an item's last OBU: it fills the rest of the data
                size = len(obus) - position
            payload = obus[position:position + size]
            position += size
            if kind == _OBU_SEQUENCE_HEADER:
                sequence = _sequence_header(BitReader(payload))
            elif kind in (_OBU_FRAME_HEADER, _OBU_FRAME):
                return None if sequence is None else _base_q_idx(BitReader(payload), sequence, temporal_id, spatial_id)
    except HeaderTruncated:
        return None
    return None


def avif_base_q_idx(path: Path) -> int | None:
    """The primary image's AV1 ``base_q_idx`` (0..255) of an AVIF file; None where it cannot be read."""
    with open(path, "rb") as fh:
        item = read_primary_item(fh, b"av01")
    return None if item is None else av1_base_q_idx(item.head)

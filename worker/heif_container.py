"""The HEIF container (ISO/IEC 23008-12) that AVIF and HEIC files share: where the primary image's coded data is.

A still image is an *item*: ``meta`` says which item is primary (``pitm``), each item's type (``iinf``), where its
bytes are (``iloc``: in the file, usually ``mdat``, or inside ``meta``'s ``idat``), which properties it has
(``iprp``: ``ipco`` holds them, ``ipma`` associates them, e.g. HEVC's decoder configuration ``hvcC``), and for a
``grid`` image which tiles it is made of (``iref`` ``dimg``). The codec readers (``worker.avif_header``,
``worker.heif_header``) take the primary image's (a grid's first tile's) first bytes and properties from here.
Only the top-level box headers, the ``meta`` box and the first ``ITEM_HEAD_BYTES`` of the item are read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from worker.bitstream import HeaderTruncated

# Codec headers open an item's data (its coded pixels follow): this much of it is read.
ITEM_HEAD_BYTES = 64 * 1024
_MAX_META_BYTES = 16 * 1024 * 1024  # a meta box describes the items; a larger one is not an image's
_MAX_EXTENTS = 1024  # an item's pieces; real files have one or a few
_FIELD_SIZES = {0, 4, 8}  # the byte widths iloc may declare


@dataclass(frozen=True)
class PrimaryItem:
    """The first bytes of the primary image's (a grid's first tile's) coded data and its properties by type."""

    head: bytes
    properties: dict[bytes, bytes] = field(default_factory=dict)


def read_primary_item(fh: BinaryIO, item_type: bytes) -> PrimaryItem | None:
    """The primary image item of a HEIF-structured file if it (or a grid's first tile) is of ``item_type``
    (``av01``, ``hvc1``); None otherwise or where a box is malformed."""
    try:
        meta = _meta_box(fh)
        return None if meta is None else _primary_item(fh, meta, item_type)
    except (HeaderTruncated, IndexError, struct.error, ValueError, OverflowError, OSError):
        return None  # OSError and the others: a box size or an offset beyond what a file can seek to


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """ISO base media file boxes in ``data[start:end]``: (type, payload start, payload end)."""
    end = len(data) if end is None else end
    position = start
    while position + 8 <= end:
        size, kind = struct.unpack(">I4s", data[position:position + 8])
        header = 8
        if size == 1:
            if position + 16 > end:
                return
            size, header = struct.unpack(">Q", data[position + 8:position + 16])[0], 16
        elif size == 0:
            size = end - position
        if size < header or position + size > end:
            return
        yield kind, position + header, position + size
        position += size


def _uint(data: bytes, position: int, size: int) -> tuple[int, int]:
    if position + size > len(data):
        raise HeaderTruncated
    return int.from_bytes(data[position:position + size], "big"), position + size


def _meta_box(fh: BinaryIO) -> bytes | None:
    """The top-level ``meta`` box's payload, found by walking the top-level box headers (``mdat`` is skipped)."""
    while len(header := fh.read(8)) == 8:
        size, kind = struct.unpack(">I4s", header)
        if size == 1:
            size, header_size = struct.unpack(">Q", fh.read(8))[0], 16
        else:
            header_size = 8
        if size < header_size and size != 0:
            return None
        if kind == b"meta":
            length = size - header_size if size else _MAX_META_BYTES
            return fh.read(length) if length <= _MAX_META_BYTES else None
        if size == 0:
            return None
        fh.seek(size - header_size, 1)
    return None


def _primary_item(fh: BinaryIO, meta: bytes, item_type: bytes) -> PrimaryItem | None:
    children = {kind: (s, e) for kind, s, e in _boxes(meta, 4)}  # meta is a full box: version and flags first
    if not {b"pitm", b"iinf", b"iloc"} <= children.keys():
        return None
    version = meta[children[b"pitm"][0]]
    primary, _ = _uint(meta, children[b"pitm"][0] + 4, 2 if version == 0 else 4)
    types = _item_types(meta, *children[b"iinf"])
    if types.get(primary) == b"grid" and b"iref" in children:
        primary = _first_reference(meta, *children[b"iref"], b"dimg", primary)
    if primary is None or types.get(primary) != item_type:
        return None
    location = _item_location(meta, *children[b"iloc"], primary)
    if location is None:
        return None
    method, extents = location
    if method == 1:  # inside the meta box's idat
        if b"idat" not in children:
            return None
        start, end = children[b"idat"]
        idat = meta[start:end]

        def read(offset: int, length: int) -> bytes:
            return idat[offset:offset + length]
    else:
        def read(offset: int, length: int) -> bytes:
            fh.seek(offset)
            return fh.read(length)
    head = b""
    for offset, length in extents:  # up to ITEM_HEAD_BYTES in all (a length of 0: to the end)
        head += read(offset, min(length or ITEM_HEAD_BYTES, ITEM_HEAD_BYTES - len(head)))
        if len(head) >= ITEM_HEAD_BYTES:
            break
    properties = _item_properties(meta, *children[b"iprp"], primary) if b"iprp" in children else {}
    return PrimaryItem(head, properties)


def _item_types(data: bytes, start: int, end: int) -> dict[int, bytes]:
    version = data[start]
    position = start + 4 + (2 if version == 0 else 4)  # entry_count
    types = {}
    for kind, s, _e in _boxes(data, position, end):
        if kind == b"infe" and data[s] >= 2:
            item, after = _uint(data, s + 4, 2 if data[s] == 2 else 4)
            types[item] = data[after + 2:after + 6]  # after item_protection_index
    return types


def _first_reference(data: bytes, start: int, end: int, wanted: bytes, source: int) -> int | None:
    width = 2 if data[start] == 0 else 4
    for kind, s, _e in _boxes(data, start + 4, end):
        from_item, position = _uint(data, s, width)
        count, position = _uint(data, position, 2)
        if kind == wanted and from_item == source and count:
            return _uint(data, position, width)[0]
    return None


def _item_location(data: bytes, start: int, end: int, wanted: int) -> tuple[int, list[tuple[int, int]]] | None:
    """The ``iloc`` entry of item ``wanted``: (construction method, [(offset, length)]); None if absent or odd."""
    version = data[start]
    offset_size, length_size = data[start + 4] >> 4, data[start + 4] & 0xF
    base_offset_size, index_size = data[start + 5] >> 4, (data[start + 5] & 0xF) if version in (1, 2) else 0
    if not {offset_size, length_size, base_offset_size, index_size} <= _FIELD_SIZES:
        return None
    id_size = 2 if version < 2 else 4
    count, position = _uint(data, start + 6, id_size)
    for _ in range(count):
        item, position = _uint(data, position, id_size)
        method = 0
        if version in (1, 2):
            method, position = _uint(data, position, 2)
            method &= 0xF
        position += 2  # data_reference_index
        base, position = _uint(data, position, base_offset_size)
        extent_count, position = _uint(data, position, 2)
        if extent_count > _MAX_EXTENTS:
            return None
        if item != wanted:
            position += extent_count * (index_size + offset_size + length_size)
            continue
        extents = []
        for _ in range(extent_count):
            position += index_size
            offset, position = _uint(data, position, offset_size)
            length, position = _uint(data, position, length_size)
            extents.append((base + offset, length))
        return (method, extents) if method in (0, 1) else None
    return None


def _item_properties(data: bytes, start: int, end: int, wanted: int) -> dict[bytes, bytes]:
    """The properties ``ipma`` associates with item ``wanted``, by type (the first of each): ``ipco``'s boxes are
    numbered from 1 in their order."""
    children = {kind: (s, e) for kind, s, e in _boxes(data, start, end)}
    if not {b"ipco", b"ipma"} <= children.keys():
        return {}
    properties = [(kind, data[s:e]) for kind, s, e in _boxes(data, *children[b"ipco"])]
    s, _e = children[b"ipma"]
    version, wide = data[s], data[s + 3] & 1  # flags bit 0: 15-bit property indices
    count, position = _uint(data, s + 4, 4)
    found: dict[bytes, bytes] = {}
    for _ in range(count):
        item, position = _uint(data, position, 2 if version < 1 else 4)
        associations, position = _uint(data, position, 1)
        for _ in range(associations):
            value, position = _uint(data, position, 2 if wide else 1)
            index = value & (0x7FFF if wide else 0x7F)
            if item == wanted and 0 < index <= len(properties):
                kind, payload = properties[index - 1]
                found.setdefault(kind, payload)
    return found

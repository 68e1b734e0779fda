"use strict";
/* A TIFF reader for Compare: browsers draw no TIFF, and TIFF is what print shops ask for. It reads the TIFFs the
 * platform writes (worker/imaging.py: Pillow, Deflate strips; worker/streaming.py: libvips, Deflate tiles with the
 * horizontal predictor, a BigTIFF past 3 GiB) and their like: the first image, samples interleaved, 8 or 16 bits,
 * grey or RGB with or without alpha, uncompressed or Deflate, no predictor or the horizontal one. Anything else is
 * refused with its reason (TiffUnsupported), as a file the page cannot draw. No library: the page has no build step
 * and loads nothing from elsewhere. */

class TiffUnsupported extends Error {}

const TIFF_TYPE_BYTES = { 1: 1, 3: 2, 4: 4, 16: 8 }; // BYTE, SHORT, LONG, LONG8: the types of the tags read here
const TIFF_DEFLATE = [8, 32946]; // Adobe's code and the old one

/** ``bytes`` inflated (TIFF's Deflate is zlib's format, as DecompressionStream's "deflate"). */
async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** The first directory's tags of a TIFF (classic or BigTIFF) as tag -> array of numbers, and its byte order. */
function tiffTags(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 16) throw new TiffUnsupported("not a TIFF file");
  const order = view.getUint16(0);
  if (order !== 0x4949 && order !== 0x4d4d) throw new TiffUnsupported("not a TIFF file");
  const little = order === 0x4949;
  const u16 = (at) => view.getUint16(at, little);
  const u32 = (at) => view.getUint32(at, little);
  const u64 = (at) => Number(view.getBigUint64(at, little));
  const big = u16(2) === 43;
  if (!big && u16(2) !== 42) throw new TiffUnsupported("not a TIFF file");
  const directory = big ? u64(8) : u32(4);
  const entries = big ? u64(directory) : u16(directory);
  const readers = { 1: (at) => view.getUint8(at), 3: u16, 4: u32, 16: u64 };
  const tags = new Map();
  for (let i = 0; i < entries; i++) {
    const at = directory + (big ? 8 : 2) + i * (big ? 20 : 12);
    const type = u16(at + 2);
    const size = TIFF_TYPE_BYTES[type];
    if (!size) continue; // text, rationals: nothing drawn depends on them
    const count = big ? u64(at + 4) : u32(at + 4);
    const inline = count * size <= (big ? 8 : 4);
    const start = inline ? at + (big ? 12 : 8) : big ? u64(at + 12) : u32(at + 8);
    const values = new Array(count);
    for (let k = 0; k < count; k++) values[k] = readers[type](start + k * size);
    tags.set(u16(at), values);
  }
  return { tags, little };
}

/** The layout of a TIFF's first image, or TiffUnsupported naming what this reader does not draw. */
function tiffLayout(tags) {
  const one = (tag, fallback) => (tags.has(tag) ? tags.get(tag)[0] : fallback);
  const width = one(256, 0);
  const height = one(257, 0);
  const bits = tags.get(258) || [1];
  const samples = one(277, 1);
  const colours = { 1: 1, 2: 3 }[one(262, -1)]; // BlackIsZero grey, RGB
  const tiled = tags.has(322);
  const layout = {
    width, height, samples, colours, depth: bits[0], tiled,
    compression: one(259, 1), predictor: one(317, 1),
    alpha: samples > colours, premultiplied: (tags.get(338) || [])[0] === 1,
    blockWidth: tiled ? one(322, 0) : width, blockHeight: tiled ? one(323, 0) : one(278, height),
    offsets: tags.get(tiled ? 324 : 273) || [], counts: tags.get(tiled ? 325 : 279) || [],
  };
  if (!width || !height || !layout.blockWidth || !layout.blockHeight || !layout.offsets.length) {
    throw new TiffUnsupported("its image directory is incomplete");
  }
  if (!colours || samples > colours + 1 || one(284, 1) !== 1) throw new TiffUnsupported("its colour layout");
  if (![8, 16].includes(layout.depth) || bits.some((b) => b !== layout.depth)) {
    throw new TiffUnsupported(`${layout.depth} bits per sample`);
  }
  if (layout.compression !== 1 && !TIFF_DEFLATE.includes(layout.compression)) {
    throw new TiffUnsupported(`its compression (${layout.compression}; Deflate and none are drawn)`);
  }
  if (![1, 2].includes(layout.predictor)) throw new TiffUnsupported(`its predictor (${layout.predictor})`);
  return layout;
}

/** A TIFF file (an ArrayBuffer) as 8-bit RGBA ImageData, straight alpha. */
async function decodeTiff(buffer) {
  const { tags, little } = tiffTags(buffer);
  const t = tiffLayout(tags);
  const out = new ImageData(t.width, t.height);
  const rgba = out.data;
  const perRow = t.blockWidth * t.samples; // samples in a block's row
  const line = t.depth === 8 ? new Uint8Array(perRow) : new Uint16Array(perRow);
  const across = Math.ceil(t.width / t.blockWidth);
  for (let block = 0; block < t.offsets.length; block++) {
    let data = new Uint8Array(buffer, t.offsets[block], t.counts[block]);
    if (t.compression !== 1) data = await inflate(data);
    const bytes = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const x0 = (block % across) * t.blockWidth;
    const y0 = t.tiled ? Math.floor(block / across) * t.blockHeight : block * t.blockHeight;
    const rows = Math.min(t.blockHeight, t.height - y0);
    const cols = Math.min(t.blockWidth, t.width - x0);
    for (let r = 0; r < rows; r++) {
      const start = r * perRow * (t.depth / 8);
      if (start + perRow * (t.depth / 8) > data.byteLength) throw new TiffUnsupported("a block shorter than its rows");
      for (let k = 0; k < perRow; k++) {
        line[k] = t.depth === 8 ? data[start + k] : bytes.getUint16(start + 2 * k, little);
      }
      if (t.predictor === 2) for (let k = t.samples; k < perRow; k++) line[k] += line[k - t.samples]; // wraps
      for (let c = 0; c < cols; c++) {
        const s = c * t.samples;
        const p = ((y0 + r) * t.width + x0 + c) * 4;
        for (let k = 0; k < t.samples; k++) {
          const value = t.depth === 8 ? line[s + k] : Math.round(line[s + k] / 257);
          if (k < t.colours) rgba[p + k] = value; else rgba[p + 3] = value;
        }
        if (t.colours === 1) rgba[p + 1] = rgba[p + 2] = rgba[p];
        if (!t.alpha) rgba[p + 3] = 255;
        else if (t.premultiplied && rgba[p + 3]) {
          for (let k = 0; k < 3; k++) rgba[p + k] = Math.round((rgba[p + k] * 255) / rgba[p + 3]); // clamped
        }
      }
    }
  }
  return out;
}

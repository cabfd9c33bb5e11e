// kfcn's input contract in the browser, without the DOM (Node.js imports it for its tests):
// which files the page reads, how their channels become the model's, and where its tiles go.
// Each rule is kfcn's own, written in Python in kfcn/image_io.py and kfcn/inference/plan.py.

export class Refusal extends Error {}

const LUMA = [0.299, 0.587, 0.114]; // ITU-R BT.601, as PIL's convert("L") and kfcn.image_io.LUMA

// Format, bit depth and stored channels, read from the file's header (the browser's decoder hides them).
export function sniff(bytes, name) {
  const b = bytes;
  const starts = (...sig) => sig.every((v, i) => b[i] === v);
  if (starts(0x89, 0x50, 0x4e, 0x47)) return pngInfo(b, name);
  if (starts(0xff, 0xd8)) return jpegInfo(b, name);
  if (starts(0x49, 0x49, 0x2a, 0x00) || starts(0x4d, 0x4d, 0x00, 0x2a)) {
    throw new Refusal(
      `${name} is a TIFF file, which this browser cannot decode (browsers decode PNG, JPEG and BMP). Save it as ` +
        "an 8-bit PNG, or predict it with `kfcn predict`, which reads 8- and 16-bit TIFF."
    );
  }
  if (starts(0x42, 0x4d)) return {format: "BMP", bitDepth: 8, channels: 3, alpha: b[28] === 32};
  throw new Refusal(
    `${name} is not a PNG, JPEG, TIFF or BMP file (the image formats kfcn reads); save it as PNG and drop it again.`
  );
}

function pngInfo(b, name) {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const bitDepth = b[24];
  const colourType = b[25];
  const channels = {0: 1, 2: 3, 3: 3, 4: 1, 6: 3}[colourType];
  if (channels === undefined) throw new Refusal(`${name} is a PNG of unknown colour type ${colourType}.`);
  let alpha = colourType === 4 || colourType === 6;
  for (let at = 8; at + 8 <= b.length; ) {
    const length = view.getUint32(at);
    const type = String.fromCharCode(b[at + 4], b[at + 5], b[at + 6], b[at + 7]);
    if (type === "tRNS") alpha = true;
    if (type === "IDAT" || type === "IEND") break;
    at += 12 + length;
  }
  return {format: "PNG", bitDepth: colourType === 3 ? 8 : bitDepth, channels, alpha};
}

function jpegInfo(b, name) {
  for (let at = 2; at + 9 < b.length; ) {
    if (b[at] !== 0xff) break;
    const marker = b[at + 1];
    const length = (b[at + 2] << 8) | b[at + 3];
    const startOfFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (startOfFrame) {
      const components = b[at + 9];
      // CMYK and YCbCr become RGB, as PIL's convert("RGB") makes them (kfcn.image_io.read_image).
      return {format: "JPEG", bitDepth: b[at + 4], channels: components === 1 ? 1 : 3, alpha: false};
    }
    at += 2 + length;
  }
  throw new Refusal(`${name} is a JPEG file whose header cannot be read; is it complete?`);
}

// Refuses a bit depth the model cannot take, as kfcn.image_io.check_bit_depth does, and any
// depth the browser would truncate: its decoder gives 8 bits per channel.
export function checkBitDepth(info, inputRange, name) {
  if (info.bitDepth <= 8) {
    if (inputRange && inputRange[1] > 256) {
      throw new Refusal(
        `${name} is an 8-bit image (0-255), but the model takes raw pixel values in [${inputRange[0]}, ` +
          `${inputRange[1]}] (its input_range: it was trained on data of that depth). Give it images of the bit ` +
          "depth it was trained on."
      );
    }
    return;
  }
  const range = inputRange ? `[${inputRange[0]}, ${inputRange[1]}]` : "as given";
  throw new Refusal(
    `${name} is a ${info.bitDepth}-bit ${info.format}: the model takes raw pixel values ${range}` +
      (inputRange && inputRange[1] <= 256 ? " (its input_range: 8-bit data)" : "") +
      ", and the browser decodes images to 8 bits per channel, which would silently drop precision. " +
      "Give it 8-bit images as it was trained on, or predict this file with `kfcn predict`."
  );
}

// np.round: halves go to the even neighbour.
export function roundHalfEven(value) {
  const floor = Math.floor(value);
  const rest = value - floor;
  if (rest > 0.5) return floor + 1;
  if (rest < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// The model's input from decoded RGBA bytes: opaque alpha dropped (any transparency refused),
// then gray <-> RGB as kfcn.image_io.convert_channels does. Returns {pixels, conversion}.
export function modelInput(rgba, width, height, info, channels, name) {
  const count = width * height;
  if (info.alpha) {
    let seeThrough = 0;
    for (let i = 0; i < count; i++) if (rgba[4 * i + 3] !== 255) seeThrough++;
    if (seeThrough) {
      const kind = info.channels === 1 ? "gray" : "colour";
      throw new Refusal(
        `${name} has ${info.channels + 1} channels, ${kind} and an alpha (transparency) channel that is not ` +
          `fully opaque (${((100 * seeThrough) / count).toFixed(1)}% of the pixels are see-through); kfcn reads ` +
          "colour only and will not drop it silently. Flatten the image onto a background first, or save it " +
          "without transparency."
      );
    }
  }
  const pixels = new Float32Array(count * channels);
  let conversion = null;
  if (channels === 3) {
    for (let i = 0; i < count; i++) for (let c = 0; c < 3; c++) pixels[3 * i + c] = rgba[4 * i + (info.channels === 1 ? 0 : c)];
    if (info.channels === 1) conversion = "from grayscale to RGB (the gray value in each channel)";
  } else if (channels === 1) {
    if (info.channels === 1) {
      for (let i = 0; i < count; i++) pixels[i] = rgba[4 * i];
    } else {
      const [wr, wg, wb] = LUMA.map(Math.fround);
      const f = Math.fround;
      for (let i = 0; i < count; i++) {
        const luma = f(f(f(rgba[4 * i] * wr) + f(rgba[4 * i + 1] * wg)) + f(rgba[4 * i + 2] * wb));
        pixels[i] = Math.min(255, roundHalfEven(luma));
      }
      conversion = "from RGB to grayscale (luma: 0.299 R + 0.587 G + 0.114 B)";
    }
  } else {
    throw new Refusal(`The model takes ${channels} channels; the page feeds gray (1) or RGB (3) images.`);
  }
  return {pixels, conversion};
}

// One axis of kfcn.inference.plan.AxisPlan for a "same"-padded model with blend="none": tile
// starts at multiples of the stride, the last flush with the image mirrored up to the next
// multiple of the stride; each tile keeps its output but half the overlap at inner edges.
export function axisPlan(size, tile, stride, overlap) {
  const before = Math.floor(overlap / 2);
  const after = overlap - before;
  const step = Math.floor((tile - overlap) / stride) * stride;
  const last = Math.max(Math.ceil(size / stride) * stride - tile, 0);
  if (last > 0 && step < stride) throw new Refusal(`Tile ${tile} is too small for overlap ${overlap}.`);
  const starts = [];
  if (last > 0) {
    for (let s = 0; s < last; s += step) starts.push(s);
    starts.push(last);
  } else {
    starts.push(0);
  }
  const keeps = starts.map((_, k) => [k === 0 ? 0 : before, k === starts.length - 1 ? tile : tile - after]);
  const normaliser = new Float64Array(size);
  starts.forEach((start, k) => {
    for (let p = Math.max(start + keeps[k][0], 0); p < Math.min(start + keeps[k][1], size); p++) normaliser[p] += 1;
  });
  return {size, tile, starts, keeps, normaliser};
}

// kfcn.inference.plan's mirror: reflect about the first and last pixel (no repeated edge).
export function reflect(index, size) {
  if (size === 1) return 0;
  const period = 2 * (size - 1);
  const i = ((index % period) + period) % period;
  return i > size - 1 ? period - i : i;
}

// Predicts `pixels` (H*W*C float32) tile by tile with `runTile(Float32Array tile) -> Float32Array`
// (tile rows x tile cols x K) and blends the kept parts: kfcn.inference.plan.run_plan.
export async function predictTiled(pixels, height, width, channels, page, runTile) {
  const [tileRows, tileCols] = page.tile;
  const rows = axisPlan(height, tileRows, page.stride, page.overlap[0]);
  const cols = axisPlan(width, tileCols, page.stride, page.overlap[1]);
  const classes = page.output.channels;
  const out = new Float32Array(height * width * classes);
  const tile = new Float32Array(tileRows * tileCols * channels);
  const colIndex = new Int32Array(tileCols);
  for (let i = 0; i < rows.starts.length; i++) {
    for (let j = 0; j < cols.starts.length; j++) {
      const top = rows.starts[i];
      const left = cols.starts[j];
      for (let x = 0; x < tileCols; x++) colIndex[x] = reflect(left + x, width);
      for (let y = 0; y < tileRows; y++) {
        const source = reflect(top + y, height) * width;
        for (let x = 0; x < tileCols; x++) {
          for (let c = 0; c < channels; c++) tile[(y * tileCols + x) * channels + c] = pixels[(source + colIndex[x]) * channels + c];
        }
      }
      const prediction = await runTile(tile);
      const [r0, r1] = [Math.max(top + rows.keeps[i][0], 0), Math.min(top + rows.keeps[i][1], height)];
      const [c0, c1] = [Math.max(left + cols.keeps[j][0], 0), Math.min(left + cols.keeps[j][1], width)];
      for (let y = r0; y < r1; y++) {
        for (let x = c0; x < c1; x++) {
          const from = ((y - top) * tileCols + (x - left)) * classes;
          const to = (y * width + x) * classes;
          for (let k = 0; k < classes; k++) out[to + k] += prediction[from + k];
        }
      }
    }
  }
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const weight = rows.normaliser[y] * cols.normaliser[x];
      for (let k = 0; k < classes; k++) out[(y * width + x) * classes + k] /= weight;
    }
  }
  return {values: out, tiles: rows.starts.length * cols.starts.length};
}

// An 8-bit grayscale PNG of `gray` (width x height bytes), as kfcn predict writes STEM.png (the
// canvas would write RGBA): zlib stream from CompressionStream("deflate"), CRC-32 per chunk.
export async function grayPng(gray, width, height) {
  const raw = new Uint8Array((width + 1) * height);
  for (let y = 0; y < height; y++) raw.set(gray.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const zlib = new Uint8Array(await new Response(new Blob([raw]).stream().pipeThrough(new CompressionStream("deflate"))).arrayBuffer());
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // 8 bits, gray, deflate, adaptive filtering, no interlace
  const parts = [new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])];
  for (const [type, data] of [["IHDR", header], ["IDAT", zlib], ["IEND", new Uint8Array(0)]]) {
    const chunk = new Uint8Array(12 + data.length);
    const chunkView = new DataView(chunk.buffer);
    chunkView.setUint32(0, data.length);
    chunk.set([...type].map((c) => c.charCodeAt(0)), 4);
    chunk.set(data, 8);
    chunkView.setUint32(8 + data.length, crc32(chunk.subarray(4, 8 + data.length)));
    parts.push(chunk);
  }
  return new Blob(parts, {type: "image/png"});
}

let crcTable = null;

function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

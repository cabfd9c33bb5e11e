// The page: loads LiteRT.js and the model, reads a dropped or picked image, predicts it tile by
// tile (kfcn_plan.js) and shows the probability map, the overlay, the time and, for density
// models, the count. `window.kfcn` holds the state and the last result, for tests.
import {loadLiteRt, loadAndCompile, Tensor} from "./litert/core.js";
import {Refusal, checkBitDepth, grayPng, modelInput, predictTiled, sniff} from "./kfcn_plan.js";

const MAX_PIXELS = 16 * 1024 * 1024; // larger images: kfcn predict (bounded memory, output on disk)
const $ = (id) => document.getElementById(id);
const state = (window.kfcn = {state: "loading", result: null, message: ""});

function show(kind, text) {
  state.state = kind;
  state.message = text;
  const box = $("status");
  box.textContent = text;
  box.className = kind;
}

function describeContract(page) {
  const card = page.card;
  const input = page.input;
  const range = input.input_range ? `raw pixels in [${input.input_range.join(", ")}]` : "values as given";
  const rows = [
    ["model", `${page.model_name} (${page.quantization} TFLite, ${card.parameters.toLocaleString()} parameters)`],
    ["input", `${input.channels === 1 ? "gray (1 channel)" : "RGB (3 channels)"}, ${range}, any size`],
    ["output", card.output.meaning],
    [
      "tiles",
      `${page.tile.join("x")} px, overlap ${page.overlap.join("x")} px (kfcn.inference's rule); a smaller image is ` +
        "mirrored up to a tile",
    ],
    ["runtime", `${page.runtime.package} ${page.runtime.version}, on this device`],
  ];
  for (const [key, value] of Object.entries(card.metadata || {})) {
    rows.push([key, typeof value === "string" ? value : JSON.stringify(value)]);
  }
  const table = $("contract");
  table.replaceChildren(
    ...rows.map(([key, value]) => {
      const row = document.createElement("tr");
      const th = document.createElement("th");
      const td = document.createElement("td");
      th.textContent = key;
      td.textContent = value;
      row.append(th, td);
      return row;
    })
  );
}

async function decode(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  const info = sniff(bytes, file.name);
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, {colorSpaceConversion: "none", premultiplyAlpha: "none"});
  } catch (error) {
    throw new Refusal(`${file.name}: this browser cannot decode this ${info.format} file (${error.message}).`);
  }
  if (bitmap.width * bitmap.height > MAX_PIXELS) {
    throw new Refusal(
      `${file.name} has ${bitmap.width}x${bitmap.height} pixels, more than the page holds in memory; ` +
        "predict it with `kfcn predict` (tiles, with the output on disk)."
    );
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", {willReadFrequently: true});
  context.drawImage(bitmap, 0, 0);
  const rgba = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
  return {info, rgba, width: bitmap.width, height: bitmap.height};
}

function toProbabilities(values, head, classes) {
  if (head !== "logits") return values;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i += classes) {
    if (classes === 1) {
      out[i] = 1 / (1 + Math.exp(-values[i]));
      continue;
    }
    let top = -Infinity;
    for (let k = 0; k < classes; k++) top = Math.max(top, values[i + k]);
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += Math.exp(values[i + k] - top);
    for (let k = 0; k < classes; k++) out[i + k] = Math.exp(values[i + k] - top) / sum;
  }
  return out;
}

const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180], [70, 240, 240], [240, 50, 230]];

// The main map (probability or density, gray), the overlay and the mask written by "download",
// as kfcn predict writes STEM.png (0/255 mask, class indices, or a value map scaled to its maximum).
function render(rgba, width, height, values, page) {
  const classes = page.output.channels;
  const isValueMap = page.output.head === "regression";
  const count = width * height;
  const map = new ImageData(width, height);
  const overlay = new ImageData(width, height);
  const mask = new Uint8Array(count);
  let top = 1e-12;
  if (isValueMap) for (let i = 0; i < count; i++) top = Math.max(top, Math.abs(values[i * classes]));
  for (let i = 0; i < count; i++) {
    let level;
    let label;
    if (isValueMap) {
      level = Math.round(Math.min(Math.max(values[i * classes] / top, 0), 1) * 255);
      label = level > 127 ? 1 : 0;
    } else if (classes === 1) {
      level = Math.round(Math.min(Math.max(values[i], 0), 1) * 255);
      label = values[i] > 0.5 ? 1 : 0;
    } else {
      let best = 0;
      for (let k = 1; k < classes; k++) if (values[i * classes + k] > values[i * classes + best]) best = k;
      level = Math.round(values[i * classes + best] * 255);
      label = best;
    }
    const maskValue = isValueMap ? level : classes === 1 ? label * 255 : label;
    map.data.set([level, level, level, 255], 4 * i);
    mask[i] = maskValue;
    const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
    const tint = isValueMap ? [255, 64, 0] : PALETTE[(classes === 1 ? 0 : label) % PALETTE.length];
    const strength = isValueMap ? level / 255 : label || classes > 1 ? 0.45 : 0;
    overlay.data.set([r + (tint[0] - r) * strength, g + (tint[1] - g) * strength, b + (tint[2] - b) * strength, 255], 4 * i);
  }
  return {map, overlay, mask};
}

function paint(canvasId, imageData) {
  const canvas = $(canvasId);
  canvas.width = imageData.width;
  canvas.height = imageData.height;
  canvas.getContext("2d").putImageData(imageData, 0, 0);
}

async function maskLink(mask, width, height, name) {
  const blob = await grayPng(mask, width, height);
  const link = $("download");
  if (link.href) URL.revokeObjectURL(link.href);
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.textContent = name.endsWith("_density.png") ? "download density map" : "download mask";
  link.hidden = false;
}

async function predictFile(file, page, model) {
  $("download").hidden = true;
  $("results").hidden = true;
  show("busy", `reading ${file.name}...`);
  state.result = null;
  const image = await decode(file);
  checkBitDepth(image.info, page.input.input_range, file.name);
  const {pixels, conversion} = modelInput(image.rgba, image.width, image.height, image.info, page.input.channels, file.name);
  show("busy", `predicting ${file.name} (${image.width}x${image.height})...`);
  const [tileRows, tileCols] = page.tile;
  const shape = [1, tileRows, tileCols, page.input.channels];
  const started = performance.now();
  const {values, tiles} = await predictTiled(pixels, image.height, image.width, page.input.channels, page, async (tile) => {
    const input = new Tensor(tile, shape);
    const outputs = await model.run([input]);
    const result = outputs[0].toTypedArray().slice();
    input.delete();
    outputs.forEach((tensor) => tensor.delete());
    return result;
  });
  const milliseconds = performance.now() - started;
  const probabilities = toProbabilities(values, page.output.head, page.output.channels);
  const views = render(image.rgba, image.width, image.height, probabilities, page);
  paint("map", views.map);
  $("map-caption").textContent =
    page.output.head === "regression"
      ? "density map (scaled to its maximum)"
      : page.output.channels > 1
        ? "probability of the most likely class"
        : "probability map";
  paint("overlay", views.overlay);
  const stem = file.name.replace(/\.[^.]*$/, "");
  await maskLink(views.mask, image.width, image.height, page.output.head === "regression" ? `${stem}_density.png` : `${stem}_mask.png`);
  let count = null;
  if (page.output.head === "regression") {
    count = 0;
    for (let i = 0; i < image.width * image.height; i++) count += values[i * page.output.channels];
    $("count").textContent = `count (sum of the density): ${count.toFixed(2)}`;
  } else {
    $("count").textContent = "";
  }
  $("time").textContent =
    `prediction: ${milliseconds.toFixed(0)} ms for ${image.width}x${image.height} px (${tiles} tile${tiles > 1 ? "s" : ""})`;
  $("results").hidden = false;
  state.result = {name: file.name, height: image.height, width: image.width, channels: page.output.channels, values: probabilities, count, milliseconds, tiles};
  show("done", `${file.name}: done${conversion ? `; converted ${conversion}` : ""}`);
}

async function main() {
  const page = await (await fetch("model.json")).json();
  describeContract(page);
  await loadLiteRt("./litert/wasm/");
  const model = await loadAndCompile(page.model_file, {accelerator: "wasm"});
  const picker = $("file");
  const handle = async (file) => {
    if (state.state === "busy") return; // one prediction at a time: LiteRT.js runs one model call at once
    try {
      await predictFile(file, page, model);
    } catch (error) {
      $("results").hidden = true;
      if (error instanceof Refusal) show("refused", `Refused: ${error.message}`);
      else show("error", `Error: ${error.message || error}`);
    }
  };
  picker.disabled = false;
  picker.addEventListener("change", () => picker.files[0] && handle(picker.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => event.preventDefault());
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files[0]) handle(event.dataTransfer.files[0]);
  });
  show("ready", "Drop an image here or pick one: PNG, JPEG or BMP, 8-bit, any size.");
}

main().catch((error) => show("error", `Error: the page could not load the model (${error.message || error}).`));

// vexplain viewer: uploads images to this server's JSON API (see vexplain/viewer/__init__.py),
// one request per image and method, and recolours the raw maps here when the display changes.
"use strict";

const state = { model: null, methods: [], colormaps: {}, lut: {}, images: [], results: [], running: false };
const $ = (id) => document.getElementById(id);

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function getJSON(path) {
  const response = await fetch(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

// --- the .npy map: a base64 NumPy file, little-endian float32 ---------------------------------
function base64Bytes(text) {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

function parseNpy(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6];
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  const header = new TextDecoder("latin1").decode(bytes.subarray(start, start + headerLength));
  if (!header.includes("'<f4'") || header.includes("'fortran_order': True")) throw new Error(`unexpected .npy header ${header}`);
  const shape = header.match(/'shape': \(([^)]*)\)/)[1].split(",").filter((s) => s.trim()).map(Number);
  const data = new Float32Array(bytes.slice(start + headerLength).buffer);
  return { shape, data };
}

// --- colouring, as Explanation.overlay: signed or min-max, LUT, alpha blend, float32, round half to even ---
function roundHalfEven(x) {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function hexRGB(hex) {
  return [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16));
}

// signed maps (any value below -1e-6 x max|m|) are scaled by max|m| with zero at the colormap's
// centre, unsigned ones min-max; "auto" takes rdbu for signed maps and jet for unsigned ones
// (core/colour_scale.py: the same arithmetic, float64 for signed maps as numpy does)
const SIGN_TOLERANCE = 1e-6;
// ColorBrewer RdBu reversed, 11 anchors interpolated linearly, as core/colour_scale.py's rdbu
const RDBU = [[5, 48, 97], [33, 102, 172], [67, 147, 195], [146, 197, 222], [209, 229, 240], [247, 247, 247],
  [253, 219, 199], [244, 165, 130], [214, 96, 77], [178, 24, 43], [103, 0, 31]];

function mapRange(map) {
  let low = Infinity, high = -Infinity, peak = 0;
  for (const v of map) {
    if (!Number.isFinite(v)) continue;
    if (v < low) low = v; if (v > high) high = v; if (Math.abs(v) > peak) peak = Math.abs(v);
  }
  return { low, high, peak, signed: peak > 0 && low < -SIGN_TOLERANCE * peak };
}

function units(map, range) {
  // the map in [0, 1] as the colormap reads it
  const unit = new Float64Array(map.length);
  if (range.signed) {
    for (let i = 0; i < map.length; i++) unit[i] = Math.min(1, Math.max(0, 0.5 + 0.5 * (Number.isFinite(map[i]) ? map[i] : 0) / range.peak));
  } else {
    const span = Math.fround(range.high - range.low);
    for (let i = 0; i < map.length; i++) unit[i] = span > 0 ? Math.fround(Math.fround(map[i] - range.low) / span) : 0;
  }
  return unit;
}

function rdbu(t) {
  const x = Math.min(1, Math.max(0, t));
  let j = Math.min(9, Math.floor(x * 10));
  while (j > 0 && (j * 0.1) > x) j--;
  while (j < 9 && ((j + 1) * 0.1) <= x) j++;
  const x0 = j * 0.1, x1 = j + 1 === 10 ? 1 : (j + 1) * 0.1;
  if (x === x1) return RDBU[j + 1].map((c) => c);
  return RDBU[j].map((c, k) => roundHalfEven(((RDBU[j + 1][k] - c) / (x1 - x0)) * (x - x0) + c));
}

function chosenColormap(colormap, range) {
  return colormap === "auto" ? (range.signed ? "rdbu" : "jet") : colormap;
}

function heatColour(unit, name) {
  if (name === "rdbu") return rdbu(unit);
  return state.lut[name][Math.min(255, Math.max(0, roundHalfEven(unit * 255)))];
}

function blend(result, colormap, alpha) {
  const name = chosenColormap(colormap, result.range);
  if (name !== "rdbu" && !state.lut[name]) state.lut[name] = state.colormaps[name].map(hexRGB);
  const [height, width] = result.shape;
  const canvas = element("canvas", { width, height });
  const context = canvas.getContext("2d");
  const picture = context.createImageData(width, height);
  const a = Math.fround(alpha), b = Math.fround(1 - alpha);
  for (let i = 0; i < result.units.length; i++) {
    const heat = heatColour(result.units[i], name);
    for (let c = 0; c < 3; c++) {
      const mixed = Math.fround(Math.fround(a * heat[c]) + Math.fround(b * result.pixels[4 * i + c]));
      picture.data[4 * i + c] = Math.min(255, Math.max(0, roundHalfEven(mixed)));
    }
    picture.data[4 * i + 3] = 255;
  }
  context.putImageData(picture, 0, 0);
  return canvas.toDataURL("image/png");
}

function drawColourbar(result, colormap) {
  const canvas = result.cell.querySelector(".colorbar");
  const name = chosenColormap(colormap, result.range);
  if (name !== "rdbu" && !state.lut[name]) state.lut[name] = state.colormaps[name].map(hexRGB);
  const context = canvas.getContext("2d");
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = heatColour(i / 255, name);
    context.fillStyle = `rgb(${r}, ${g}, ${b})`;
    context.fillRect(i, 0, 1, 1);
  }
  const [low, high] = result.cell.querySelectorAll(".range span");
  if (result.range.peak === 0 && result.range.low === Infinity) { low.textContent = "–"; high.textContent = "–"; return; }
  if (result.range.signed) {
    low.textContent = `−${result.range.peak.toPrecision(3)}`;
    high.textContent = `0 at the centre · +${result.range.peak.toPrecision(3)}`;
  } else {
    low.textContent = result.range.low.toPrecision(3);
    high.textContent = result.range.high.toPrecision(3) + (result.range.low === result.range.high ? " (constant map)" : "");
  }
}

async function imagePixels(pngBase64, width, height) {
  const picture = new Image();
  picture.src = `data:image/png;base64,${pngBase64}`;
  await picture.decode();
  const canvas = element("canvas", { width, height });
  const context = canvas.getContext("2d");
  context.drawImage(picture, 0, 0);
  return context.getImageData(0, 0, width, height).data;
}

// --- building the controls --------------------------------------------------------------------
function showModel() {
  const m = state.model;
  const size = m.input_size ? `input ${m.input_size[0]}×${m.input_size[1]}` : "input as uploaded";
  const classes = m.class_names ? `, classes: ${m.class_names.join(", ")}` : "";
  $("model-info").textContent = `${m.name} — ${m.description}, ${size}${classes}`;
  $("limits").textContent = `Up to ${(m.max_upload_bytes / 1048576).toFixed(0)} MiB and ${(m.max_pixels / 1e6).toFixed(0)} megapixels per image.`;
  for (const [i, name] of (m.class_names || []).entries()) $("target").append(element("option", { value: String(i), text: `${i}: ${name}` }));
}

function showMethods() {
  const list = $("method-list");
  for (const method of state.methods) {
    const box = element("input", { type: "checkbox", value: method.name, "data-method": method.name });
    if (!method.works) box.disabled = true;
    if (method.default && method.works) box.checked = true;
    box.addEventListener("change", updateRunButton);
    const label = method.works ? method.name : `${method.name} (needs ${method.missing.join(", ")})`;
    const details = element("details", { class: `method${method.works ? "" : " unavailable"}` },
      element("summary", {}, box, element("span", { text: label })),
      element("div", { class: "summary", text: method.summary }));
    for (const [key, option] of Object.entries(method.options)) {
      const input = element("input", { type: "text", value: option.text, "data-option": key, "data-default": option.text, "aria-label": `${method.name} ${key}` });
      input.addEventListener("input", () => input.classList.toggle("changed", input.value.trim() !== option.text));
      details.append(element("label", { class: "option" }, element("span", { text: key, title: key }), input));
    }
    list.append(details);
  }
}

function showColormaps() {
  const select = $("colormap");
  select.append(element("option", { value: "auto", text: "auto (rdbu for signed maps, centred at 0; else jet)" }));
  select.append(element("option", { value: "rdbu", text: "rdbu" }));
  for (const name of Object.keys(state.colormaps)) select.append(element("option", { value: name, text: name }));
  select.value = "auto";
}

function addImages(files) {
  for (const file of files) {
    if (!file.type.startsWith("image/") && !/\.(png|jpe?g|bmp|tiff?|webp)$/i.test(file.name)) continue;
    const entry = { file, name: file.name, url: URL.createObjectURL(file) };
    state.images.push(entry);
    const remove = element("button", { type: "button", title: `remove ${file.name}`, text: "×" });
    const item = element("li", {}, element("img", { src: entry.url, alt: "" }), element("span", { text: file.name }), remove);
    remove.addEventListener("click", () => { state.images.splice(state.images.indexOf(entry), 1); item.remove(); updateRunButton(); });
    $("image-list").append(item);
  }
  updateRunButton();
}

function chosenMethods() {
  return [...document.querySelectorAll("#method-list input[type=checkbox]:checked")].map((box) => {
    const details = box.closest("details");
    const options = {};
    for (const input of details.querySelectorAll("input[data-option]")) {
      const value = input.value.trim();
      if (value && value !== input.dataset.default) options[input.dataset.option] = value;
    }
    return { name: box.value, options };
  });
}

function updateRunButton() {
  $("run").disabled = state.running || !state.images.length || !chosenMethods().length;
}

// --- running: one request per image and method, in turn, each cell showing its progress ------------
function stem(name) {
  return name.replace(/\.[^.]*$/, "").replace(/[^A-Za-z0-9._-]/g, "_") || "image";
}

function newCell(method) {
  const overlay = element("img", { class: "overlay", alt: `${method} overlay` });
  const stateLine = element("div", { class: "state", text: "queued" });
  const colourbar = element("canvas", { class: "colorbar", width: 256, height: 1 });
  const range = element("div", { class: "range" }, element("span"), element("span"));
  const cell = element("figure", { class: "cell queued", "data-method": method },
    element("figcaption", { class: "title", text: method }),
    element("div", { class: "frame" }, overlay, element("div", { class: "spinner" }), stateLine),
    colourbar, range, element("div", { class: "meta" }), element("div", { class: "warnings" }),
    element("div", { class: "downloads" }, element("a", { class: "npy", text: "map .npy" }), element("a", { class: "png", text: "overlay .png" })));
  return cell;
}

async function explainOne(image, method, target, cell) {
  cell.className = "cell running";
  const started = performance.now();
  const line = cell.querySelector(".state");
  const tick = setInterval(() => { line.textContent = `running… ${((performance.now() - started) / 1000).toFixed(1)} s`; }, 100);
  const form = new FormData();
  form.append("image", image.file, image.name);
  form.append("method", method.name);
  form.append("target", target);
  form.append("overlay_colormap", state.colormaps[$("colormap").value] ? $("colormap").value : "jet");  // the page recolours anyway
  form.append("overlay_alpha", $("opacity").value);
  for (const [key, value] of Object.entries(method.options)) form.append(key, value);
  try {
    const response = await fetch("/api/explain", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    await showResult(cell, image, body);
  } catch (error) {
    cell.className = "cell failed";
    line.textContent = "failed";
    cell.append(element("div", { class: "error", text: error.message }));
  } finally {
    clearInterval(tick);
  }
}

async function showResult(cell, image, body) {
  const { shape, data } = parseNpy(base64Bytes(body.map_npy));
  const range = mapRange(data);
  const result = { cell, body, shape, range, units: units(data, range), pixels: await imagePixels(body.image_png, shape[1], shape[0]), name: `${stem(image.name)}.${body.method}` };
  state.results.push(result);
  cell.querySelector("img.overlay").src = `data:image/png;base64,${body.overlay_png}`;
  const label = body.class_name ? `${body.class_name} (${body.target})` : `class ${body.target}`;
  const score = body.score === null ? "" : ` · score ${body.score.toFixed(3)}`;
  cell.querySelector(".meta").textContent = `${label}${score} · ${body.timings.total.toFixed(2)} s`;
  cell.querySelector(".meta").title = `timings (s): ${JSON.stringify(body.timings)}\noptions: ${JSON.stringify(body.options)}`;
  cell.querySelector(".warnings").textContent = body.warnings.join(" ");
  const npy = cell.querySelector("a.npy");
  npy.href = URL.createObjectURL(new Blob([base64Bytes(body.map_npy)], { type: "application/octet-stream" }));
  npy.download = `${result.name}.npy`;
  cell.querySelector("a.png").download = `${result.name}.png`;
  restyle(result, $("colormap").value, $("opacity").value);
  cell.className = "cell done";
}

function restyle(result, colormap, alpha) {
  // recoloured here from the raw map, so signed maps are centred at zero whatever the server drew
  const overlay = result.cell.querySelector("img.overlay");
  overlay.src = blend(result, colormap, Number(alpha));
  result.cell.querySelector("a.png").href = overlay.src;
  drawColourbar(result, colormap);
}

async function run() {
  state.running = true;
  updateRunButton();
  $("results-hint")?.remove();
  $("results").replaceChildren();
  state.results = [];
  const methods = chosenMethods();
  const target = $("target").value;
  const jobs = [];
  for (const image of state.images) {
    const cells = element("div", { class: "cells" });
    const input = element("figure", { class: "cell done input-cell" }, element("figcaption", { class: "title", text: "input" }), element("div", { class: "frame" }, element("img", { src: image.url, alt: image.name })));
    cells.append(input);
    $("results").append(element("div", { class: "image-row" }, element("h3", { text: image.name }), cells));
    for (const method of methods) {
      const cell = newCell(method.name);
      cells.append(cell);
      jobs.push([image, method, cell]);
    }
  }
  let finished = 0;
  for (const [image, method, cell] of jobs) {
    $("status").textContent = `${finished} of ${jobs.length} done; running ${method.name}`;
    await explainOne(image, method, target, cell);
    finished++;
  }
  const failed = document.querySelectorAll("#results .cell.failed").length;
  $("status").textContent = `${jobs.length - failed} of ${jobs.length} done${failed ? `, ${failed} failed` : ""}`;
  document.documentElement.dataset.finished = String(jobs.length);
  state.running = false;
  updateRunButton();
}

function restyleAll() {
  $("opacity-value").textContent = Number($("opacity").value).toFixed(2);
  for (const result of state.results) restyle(result, $("colormap").value, $("opacity").value);
}

async function start() {
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => { event.preventDefault(); drop.classList.remove("over"); addImages(event.dataTransfer.files); });
  $("file-input").addEventListener("change", (event) => { addImages(event.target.files); event.target.value = ""; });
  $("run").addEventListener("click", run);
  $("opacity").addEventListener("input", restyleAll);
  $("colormap").addEventListener("change", restyleAll);
  try {
    [state.model, state.methods, state.colormaps] = await Promise.all([getJSON("/api/model"), getJSON("/api/methods"), getJSON("/api/colormaps")]);
  } catch (error) {
    $("model-info").textContent = `cannot reach the viewer's API: ${error.message}`;
    return;
  }
  showModel();
  showMethods();
  showColormaps();
  document.documentElement.dataset.ready = "true";
  updateRunButton();
}

start();

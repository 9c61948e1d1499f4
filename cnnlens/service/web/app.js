// The cnnlens web page: one view per front of the API (explain, adversarial, activation
// maximization, feature maps, filters, compare, audits). Maps are drawn from the raw arrays
// with the API's own jet colormap, so the opacity slider and the legend need no new request.
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  file: null,          // the chosen image File
  original: null,      // the decoded original (HTMLImageElement)
  methods: new Map(),  // name -> method info from GET /v1/methods
  model: null,         // GET /v1/models/{name}
  views: [],           // [{canvas, heatmap, width, height, boxes}] for the opacity slider
  box: null,           // a detector's detection to explain, [x0, y0, x1, y1]; null: all
  view: "explain",
  auditTimer: null,
};

// Compare's defaults on every front: these methods (api/forms.py COMPARE_METHODS) and the
// service's own scores and steps (CompareOptions), which the page does not override.
const COMPARE_METHODS = ["saliency", "grad_cam", "guided_backprop"];

// Which shared controls each view uses.
const VIEW_USES = {
  explain: ["image", "target", "layer", "region"],
  adversarial: ["image", "target"],
  activation: ["target", "layer"],
  features: ["image", "layer"],
  filters: [],
  compare: ["image", "target", "layer", "region"],
  audit: [],
};

// Method names by kind when GET /v1/methods says no kind of the four (older services).
const KNOWN_KINDS = {
  adversarial: "image", activation_max: "activation", feature_maps: "activation",
  filters: "weights",
};

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// ---------- API ----------

function apiHeaders() {
  const key = $("api-key-input").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...apiHeaders(), ...(options.headers || {}) } });
  } catch (error) {
    throw new ApiError(0, "network_error", `The service cannot be reached (${error.message}).`);
  }
  if (response.ok) return response.json();
  let code = `http_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    } else if (body && body.detail) {
      message = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    }
  } catch (_) { /* not JSON: keep the status text */ }
  const retry = response.headers.get("Retry-After");
  if (retry) message += ` (retry in ${retry} s)`;
  throw new ApiError(response.status, code, message);
}

// ---------- messages ----------

function showError(error) {
  const box = $("error");
  box.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = error instanceof ApiError && error.status
    ? `Error ${error.status} (${error.code})`
    : `Error${error.code ? ` (${error.code})` : ""}`;
  const text = document.createElement("span");
  text.className = "error-message";
  text.textContent = ` ${error.message}`;
  box.append(title, text);
  box.dataset.code = error.code || "";
  box.hidden = false;
  // Under the button just pressed, in the bar that stays in sight; scrolled to if need be.
  box.scrollIntoView({ block: "nearest" });
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

function setStatus(text, view = "explain") {
  $(`${view}-status`).textContent = text;
}

// ---------- views ----------

function showView(name) {
  state.view = name;
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.setAttribute("aria-selected", String(tab.dataset.view === name));
  }
  for (const element of document.querySelectorAll(".view-form, .view, .view-action")) {
    element.hidden = element.dataset.view !== name;
  }
  showFields();
  document.body.dataset.view = name;
  clearError();
  updateControls();
}

// The shared fields the view uses; the region only for a segmentation model.
function showFields() {
  const uses = VIEW_USES[state.view];
  for (const field of document.querySelectorAll("[data-uses]")) {
    const wanted = field.dataset.uses !== "region" || isSegmentation();
    field.hidden = !uses.includes(field.dataset.uses) || !wanted;
  }
  showRegionBox();
}

// ---------- models, methods, layers, classes ----------

async function loadModels() {
  const body = await api("/v1/models");
  const select = $("model-select");
  select.replaceChildren();
  for (const model of body.models) {
    const option = new Option(model.name + (model.default ? " (default)" : ""), model.name);
    option.selected = model.name === body.default;
    select.append(option);
  }
  await loadModel(select.value);
}

function layerLabel(layer, isDefault) {
  return `${layer.name} (${layer.output_shape.join("×")})${isDefault ? " default" : ""}`;
}

async function loadModel(name) {
  state.model = await api(`/v1/models/${encodeURIComponent(name)}`);
  const model = state.model;
  const head = model.head && model.head !== "softmax" ? ` (${model.head})` : "";
  $("model-hint").textContent = `${model.num_classes} classes${head}, ` +
    `input ${model.input_size.join("×")}, weights: ${model.weights_source}`;
  const layers = $("layer-select");
  layers.replaceChildren();
  const convs = $("filters-layer");
  convs.replaceChildren(new Option("first convolution (RGB)", ""));
  for (const layer of model.layers) {
    if (!layer.output_shape || layer.output_shape.length !== 3) continue; // spatial layers only
    const isDefault = layer.name === model.default_layer;
    const option = new Option(layerLabel(layer, isDefault), layer.name, isDefault, isDefault);
    option.title = `${layer.name} — ${layer.type}`;
    layers.append(option);
    if (/conv/i.test(layer.type)) convs.append(new Option(layerLabel(layer, false), layer.name));
  }
  // The model's own labels (a configured model brings its own categories).
  const classes = $("categories-list");
  classes.replaceChildren(
    ...(model.categories || []).map((label, index) => new Option(`${index}: ${label}`)),
  );
  $("target-input").value = "";
  setRegion(null);
  state.box = null;
  markUnavailableMethods();
  showFields();
}

// Why a map method cannot explain the chosen model (the API would answer 422), or null.
function unavailableReason(method) {
  const model = state.model;
  if (!model) return null;
  const explains = method.explains;
  if (explains && model.head && !explains.includes(model.head)) {
    if (explains.length === 1 && explains[0] === "detection") return "explains object detectors only";
    if (model.head === "detection") return "reads class logits (B, K): does not explain a detector's boxes";
  }
  if (model.head === "segmentation" && (method.segmentation === false || (explains && !explains.includes("segmentation")))) {
    return "reads class logits (B, K): not for a segmentation model";
  }
  if (explains && model.head && !explains.includes(model.head)) return `does not explain a ${model.head} model`;
  if (method.name === "cam" && model.compatibility && !model.compatibility.gap_linear_head) {
    return "needs a global-average-pooling + linear head, which this model has not";
  }
  return null;
}

// Methods the chosen model cannot serve are greyed out and unticked, with the reason shown.
function markUnavailableMethods() {
  for (const box of document.querySelectorAll('.method input[name="method"]')) {
    const reason = unavailableReason(state.methods.get(box.value) || {});
    const label = box.nextElementSibling;
    box.disabled = reason !== null;
    if (reason) box.checked = false;
    box.parentElement.classList.toggle("unavailable", reason !== null);
    label.title = reason ? `${label.textContent}: ${reason}` : state.methods.get(box.value)?.paper || "";
  }
  updateControls();
}

function methodKind(method) {
  if (["map", "image", "activation", "weights"].includes(method.kind)) return method.kind;
  if (KNOWN_KINDS[method.name]) return KNOWN_KINDS[method.name];
  return (method.route || "/v1/explain") === "/v1/explain" ? "map" : "image";
}

function methodBox(method, prefix, checked, onChange) {
  const id = `${prefix}${method.name}`;
  const row = document.createElement("div");
  row.className = "method";
  const box = document.createElement("input");
  Object.assign(box, { type: "checkbox", id, name: "method", value: method.name });
  box.checked = checked;
  box.addEventListener("change", onChange);
  const label = document.createElement("label");
  label.htmlFor = id;
  label.textContent = method.title || method.name;
  label.title = method.paper || "";
  row.append(box, label);
  return row;
}

async function loadMethods() {
  const body = await api("/v1/methods");
  const lists = [
    [$("methods-list"), "method-", ["grad_cam"]],
    // The same default as the library, the CLI and POST /v1/compare (api/forms.py).
    [$("compare-methods"), "compare-method-", COMPARE_METHODS],
    [$("audit-methods"), "audit-method-", ["grad_cam"]],
  ];
  for (const [list] of lists) list.replaceChildren();
  for (const method of body.methods) {
    state.methods.set(method.name, method);
    if (methodKind(method) !== "map") continue; // the others have views of their own
    for (const [list, prefix, defaults] of lists) {
      list.append(methodBox(method, prefix, defaults.includes(method.name), updateControls));
    }
  }
  markUnavailableMethods();
}

function chosen(listId) {
  return [...document.querySelectorAll(`#${listId} input[name="method"]:checked`)]
    .map((box) => box.value);
}

function chosenMethods() {
  return chosen("methods-list");
}

function updateControls() {
  const view = state.view;
  let usesLayer = VIEW_USES[view].includes("layer");
  let usesTarget = VIEW_USES[view].includes("target");
  if (view === "explain" || view === "compare") {
    const list = view === "explain" ? "methods-list" : "compare-methods";
    const methods = chosen(list).map((name) => state.methods.get(name) || {});
    usesLayer = methods.some((m) => m.uses_layer);
    usesTarget = methods.length === 0 || methods.some((m) => m.uses_target);
  }
  if (view === "activation") usesLayer = $("act-channel").value.trim() !== "";
  $("layer-select").disabled = !usesLayer;
  $("target-input").disabled = !usesTarget;
  $("explain-button").disabled = !state.file || chosenMethods().length === 0;
  $("adversarial-button").disabled = !state.file;
  $("features-button").disabled = !state.file;
  $("activation-button").disabled = false;
  $("filters-button").disabled = false;
  $("compare-button").disabled = !state.file || chosen("compare-methods").length === 0;
  $("audit-button").disabled = !$("audit-archive").files.length || chosen("audit-methods").length === 0;
}

// ---------- the image ----------

function chooseFile(file) {
  if (!file) return;
  clearError();
  state.file = file;
  const url = URL.createObjectURL(file);
  const image = new Image();
  image.onload = () => {
    state.original = image;
    $("region-image").src = url;
    $("region-picker").hidden = false;
    setRegion(null);
    const preview = $("preview");
    preview.src = url;
    preview.alt = `Preview of ${file.name}`;
    preview.hidden = false;
    $("image-status").textContent =
      `${file.name}: ${image.naturalWidth}×${image.naturalHeight} pixels.`;
    updateControls();
  };
  image.onerror = () => {
    // The browser cannot show it (e.g. TIFF); the service may still decode it.
    state.original = null;
    $("preview").hidden = true;
    $("region-picker").hidden = true;
    $("image-status").textContent = `${file.name} (no preview in this browser).`;
    updateControls();
  };
  image.src = url;
}

// A zone that takes a file dropped on it or chosen with its input: `onFile(file)`.
function watchDrops(zone, input, onFile) {
  for (const type of ["dragenter", "dragover"]) {
    zone.addEventListener(type, (event) => {
      event.preventDefault();
      zone.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    zone.addEventListener(type, () => zone.classList.remove("dragging"));
  }
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) onFile(file);
  });
  input.addEventListener("change", (event) => {
    if (event.target.files[0]) onFile(event.target.files[0]);
  });
}

function setUpDropZone() {
  watchDrops($("drop-zone"), $("image-input"), chooseFile);
}

// ---------- shared form pieces ----------

function parseTarget(text) {
  const value = text.trim();
  if (!value) return null;
  const indexed = value.match(/^(\d+)\s*(:.*)?$/); // "285" or "285: Egyptian cat"
  return indexed ? indexed[1] : value;
}

// ---------- the region of a segmentation target ----------

const REGION_FIELDS = ["region-x0", "region-y0", "region-x1", "region-y1"];

function isSegmentation() {
  return Boolean(state.model && state.model.head === "segmentation");
}

function regionValues() {
  return REGION_FIELDS.map((id) => $(id).value.trim());
}

// "x0,y0,x1,y1" in the image's pixels as typed or dragged; null when the fields are empty
// (the service then takes the pixels predicted as the target, and checks the box).
function regionText() {
  const values = regionValues();
  return values.every((v) => v === "") ? null : values.join(",");
}

function setRegion(box) {
  REGION_FIELDS.forEach((id, k) => { $(id).value = box ? String(box[k]) : ""; });
  showRegionBox();
}

// The box outlined on the picker, scaled from image pixels to the image as shown.
function showRegionBox() {
  const image = $("region-image");
  const outline = $("region-box");
  const values = regionValues().map(Number);
  const complete = regionValues().every((v) => v !== "") && values.every(Number.isFinite);
  if (!complete || !image.naturalWidth || !image.clientWidth) {
    outline.hidden = true;
    return;
  }
  const sx = image.clientWidth / image.naturalWidth;
  const sy = image.clientHeight / image.naturalHeight;
  const [x0, y0, x1, y1] = values;
  Object.assign(outline.style, {
    left: `${x0 * sx}px`, top: `${y0 * sy}px`,
    width: `${Math.max(0, (x1 - x0) * sx)}px`, height: `${Math.max(0, (y1 - y0) * sy)}px`,
  });
  outline.hidden = false;
}

function setUpRegionPicker() {
  const image = $("region-image");
  let start = null;
  const pixel = (event) => {
    const rect = image.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - rect.left, 0), rect.width);
    const y = Math.min(Math.max(event.clientY - rect.top, 0), rect.height);
    return [Math.round((x * image.naturalWidth) / rect.width),
      Math.round((y * image.naturalHeight) / rect.height)];
  };
  const stretch = (event) => {
    const [x, y] = pixel(event);
    setRegion([Math.min(start[0], x), Math.min(start[1], y), Math.max(start[0], x),
      Math.max(start[1], y)]);
  };
  image.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    start = pixel(event);
    if (image.setPointerCapture) image.setPointerCapture(event.pointerId);
  });
  image.addEventListener("pointermove", (event) => { if (start) stretch(event); });
  image.addEventListener("pointerup", (event) => {
    if (!start) return;
    stretch(event);
    start = null;
    const [x0, y0, x1, y1] = regionValues().map(Number);
    if (!(x0 < x1 && y0 < y1)) setRegion(null); // a click, not a box
  });
  for (const id of REGION_FIELDS) $(id).addEventListener("input", showRegionBox);
  $("region-clear").addEventListener("click", () => setRegion(null));
  window.addEventListener("resize", showRegionBox);
}

function baseForm({ image = true, target = true, layer = true } = {}) {
  const form = new FormData();
  if (image) form.append("image", state.file, state.file.name);
  form.append("model", $("model-select").value);
  const chosenTarget = target && !$("target-input").disabled
    ? parseTarget($("target-input").value) : null;
  if (chosenTarget !== null) form.append("target", chosenTarget);
  if (layer && !$("layer-select").disabled && $("layer-select").value) {
    form.append("layer", $("layer-select").value);
  }
  const region = $("region-field").hidden ? null : regionText();
  if (region !== null) form.append("region", region);
  if (isDetector() && state.box) form.append("box", state.box.map((v) => v.toFixed(1)).join(","));
  return form;
}

// ---------- a detector's boxes ----------

function isDetector() {
  return Boolean(state.model) && state.model.head === "detection";
}

// Every detection drawn on a map (the explained one in white); a click on one explains it.
function detectionBoxes(predictions, explained) {
  const same = (a, b) => Boolean(a) && Boolean(b) && a.every((v, i) => Math.abs(v - b[i]) < 0.5);
  return predictions.filter((p) => p.box).map((p) => ({
    box: p.box,
    dash: [],
    colour: same(p.box, explained) ? "#ffffff" : "#ffd600",
    label: `${p.label} ${p.probability.toFixed(2)}`,
    width: same(p.box, explained) ? 2 : 1,
  }));
}

// The smallest detection under a point (image pixels), or null.
function detectionAt(predictions, x, y) {
  const area = (b) => (b[2] - b[0]) * (b[3] - b[1]);
  const under = predictions.filter((p) => p.box && p.box[0] <= x && x <= p.box[2]
    && p.box[1] <= y && y <= p.box[3]);
  under.sort((a, b) => area(a.box) - area(b.box));
  return under[0] || null;
}

// Explain one detection (its box; the label is the one it was detected with), then the same
// request as the Explain button.
function explainDetection(prediction) {
  state.box = prediction.box;
  $("explain-form").requestSubmit();
}

// The Advanced box: JSON keyed by method. Returns null (and shows why) when it is not JSON.
function advancedParams() {
  const text = $("params-input").value.trim();
  if (!text) return {};
  try {
    const parsed = JSON.parse(text);
    if (parsed && typeof parsed === "object" && !Array.isArray(parsed)) return parsed;
    throw new Error("expected an object keyed by method");
  } catch (error) {
    showError({ code: "invalid_params", message: `The parameters are not valid JSON: ${error.message}` });
    $("params-input").focus();
    return null;
  }
}

// Runs one view's request with its button disabled and its status line kept up to date.
async function run(view, button, work) {
  clearError();
  button.disabled = true;
  const results = document.querySelector(`.view[data-view="${view}"]`);
  results.setAttribute("aria-busy", "true");
  setStatus("Working…", view);
  const started = performance.now();
  try {
    await work();
    setStatus(`Done in ${Math.round(performance.now() - started)} ms.`, view);
    results.querySelector("h2").focus();
  } catch (error) {
    setStatus("", view);
    showError(error);
  } finally {
    results.removeAttribute("aria-busy");
    updateControls();
  }
}

function showBody(view) {
  const section = document.querySelector(`.view[data-view="${view}"]`);
  const empty = section.querySelector(".empty");
  if (empty) empty.hidden = true;
  section.querySelector(".result-body").hidden = false;
}

const png = (b64) => `data:image/png;base64,${b64}`;
// Overlays come in the answer's overlay_format (like the upload by default); heatmaps are PNG.
const overlayExtensions = { png: "png", jpeg: "jpg", webp: "webp" };
const overlayUrlOf = (b64, format = "png") => `data:image/${format};base64,${b64}`;
const percent = (p) => `${(100 * p).toFixed(1)}%`;
const classText = (c) => `${c.label} (${c.index}, ${percent(c.probability)})`;

function loadImage(source) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("an image in the answer cannot be decoded"));
    image.src = source;
  });
}

// One row per item in a table body: `cells(item)` gives its texts, the first a row header.
function fillRows(body, items, cells) {
  body.replaceChildren(...items.map((item) => {
    const row = document.createElement("tr");
    cells(item).forEach((text, index) => {
      const element = document.createElement(index === 0 ? "th" : "td");
      if (index === 0) element.scope = "row";
      element.textContent = text;
      row.append(element);
    });
    return row;
  }));
}

const fixed = (v, digits = 3) => (v === null || v === undefined ? "—" : Number(v).toFixed(digits));

// ---------- colour: the API's jet (cnnlens/render.py), a legend with range and sign ----------

const JET = [[0, 0, 0, 128], [0.125, 0, 0, 255], [0.375, 0, 255, 255], [0.625, 255, 255, 0],
  [0.875, 255, 0, 0], [1, 128, 0, 0]];

const JET_TABLE = (() => {
  const table = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    let k = 0;
    while (k < JET.length - 2 && x > JET[k + 1][0]) k++;
    const [x0, ...c0] = JET[k];
    const [x1, ...c1] = JET[k + 1];
    const t = (x - x0) / (x1 - x0);
    for (let c = 0; c < 3; c++) table[3 * i + c] = Math.round(c0[c] + t * (c1[c] - c0[c]));
  }
  return table;
})();

function decodeArray(payload) {
  const bytes = Uint8Array.from(atob(payload.data), (c) => c.charCodeAt(0));
  if (payload.dtype !== "float32") throw new Error(`unexpected map dtype ${payload.dtype}`);
  return { values: new Float32Array(bytes.buffer), shape: payload.shape };
}

// (H, W) or (C, H, W) -> (H, W): colour maps reduce by max |value| (as render.to_2d does).
function to2d({ values, shape }) {
  if (shape.length === 2) return { values, height: shape[0], width: shape[1] };
  const [channels, height, width] = shape;
  const n = height * width;
  if (channels === 1) return { values: values.subarray(0, n), height, width };
  const out = new Float32Array(n);
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < n; i++) out[i] = Math.max(out[i], Math.abs(values[c * n + i]));
  }
  return { values: out, height, width };
}

function percentile(values, q) {
  const sorted = Float32Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * (sorted.length - 1)))];
}

// Box blur (three passes approximate a Gaussian): occlusion's windows overlap by the stride,
// so its map is blocky at pixel level; this shows the response, not the window grid.
function smooth(map, radius) {
  if (radius < 1) return map;
  const { width, height } = map;
  let src = Float32Array.from(map.values);
  let dst = new Float32Array(src.length);
  for (let pass = 0; pass < 3; pass++) {
    for (const horizontal of [true, false]) {
      const [outer, inner] = horizontal ? [height, width] : [width, height];
      for (let o = 0; o < outer; o++) {
        let sum = 0, count = 0;
        const at = (i) => (horizontal ? o * width + i : i * width + o);
        for (let i = 0; i < Math.min(radius, inner); i++) { sum += src[at(i)]; count++; }
        for (let i = 0; i < inner; i++) {
          if (i + radius < inner) { sum += src[at(i + radius)]; count++; }
          if (i - radius - 1 >= 0) { sum -= src[at(i - radius - 1)]; count--; }
          dst[at(i)] = sum / count;
        }
      }
      [src, dst] = [dst, src];
    }
  }
  return { ...map, values: src };
}

// Colour scaling as the API's: non-negative maps from 0 to a clipped top; signed maps around a
// neutral zero. Occlusion is scaled by its maximum, unclipped, so only its peak saturates.
function colourMap(map, clip) {
  const { values, width, height } = map;
  let min = Infinity, max = -Infinity;
  for (const v of values) { if (v < min) min = v; if (v > max) max = v; }
  const signed = min < 0;
  const abs = signed ? values.map(Math.abs) : values;
  const top = (clip ? percentile(abs, 99.5) : Math.max(Math.abs(min), Math.abs(max))) ||
    Math.max(Math.abs(min), Math.abs(max)) || 1;
  const image = new ImageData(width, height);
  for (let i = 0; i < values.length; i++) {
    const unit = signed ? 0.5 + values[i] / (2 * top) : values[i] / top;
    const k = Math.max(0, Math.min(255, Math.round(unit * 255)));
    image.data.set(JET_TABLE.subarray(3 * k, 3 * k + 3), 4 * i);
    image.data[4 * i + 3] = 255;
  }
  return { image, min, max, top, signed };
}

function legend(scale) {
  const wrap = document.createElement("div");
  wrap.className = "legend";
  const bar = document.createElement("canvas");
  bar.width = 256;
  bar.height = 10;
  bar.setAttribute("role", "img");
  const context = bar.getContext("2d");
  for (let k = 0; k < 256; k++) {
    context.fillStyle = `rgb(${JET_TABLE[3 * k]},${JET_TABLE[3 * k + 1]},${JET_TABLE[3 * k + 2]})`;
    context.fillRect(k, 0, 1, 10);
  }
  const labels = document.createElement("div");
  labels.className = "legend-labels";
  // A top clipped below the map's largest magnitude saturates the end colours: say so.
  const clipped = scale.top < Math.max(Math.abs(scale.min), Math.abs(scale.max)) ? "≥ " : "";
  const top = scale.top.toPrecision(3);
  const ends = scale.signed
    ? [`${clipped.replace("≥", "≤")}−${top}`, "0", `${clipped}+${top}`]
    : ["0", `${clipped}${top}`];
  for (const text of ends) {
    const span = document.createElement("span");
    span.textContent = text;
    labels.append(span);
  }
  const range = document.createElement("p");
  range.className = "legend-range";
  range.textContent = `${scale.signed ? "signed (blue negative, red positive)" : "non-negative"}` +
    ` · range ${scale.min.toPrecision(3)} … ${scale.max.toPrecision(3)}`;
  bar.setAttribute("aria-label", `Colour scale: ${range.textContent}`);
  wrap.append(bar, labels, range);
  return wrap;
}

// ---------- explain ----------

async function explain(event) {
  event.preventDefault();
  const methods = chosenMethods();
  if (!state.file || methods.length === 0) return;
  const params = advancedParams();
  if (params === null) return;
  const form = baseForm();
  for (const name of methods) form.append("method", name);
  if (Object.keys(params).length) form.append("params", JSON.stringify(params));
  form.append("output", "overlay,heatmap,array");
  const region = form.get("region");
  state.box = null; // a click on a detection chooses the next one
  await run("explain", $("explain-button"), async () => {
    const body = await api("/v1/explain", { method: "POST", body: form });
    await showResults(body, params, region ? region.split(",").map(Number) : null);
  });
}

// Classifiers: each class's probability; segmentation models: each class present with its
// share of the pixels.
function showPredictions(predictions, list = $("predictions")) {
  const byShare = predictions.some((p) => p.pixel_share !== null && p.pixel_share !== undefined);
  const boxes = predictions.some((p) => p.box);
  if (list === $("predictions")) {
    $("predictions-heading").textContent = boxes
      ? `Detections (score ≥ ${state.model?.score_threshold ?? 0.5}; click one to explain it)`
      : byShare ? "Classes present (share of pixels)" : "Top-5 predictions";
  }
  list.replaceChildren();
  for (const prediction of predictions) {
    const value = document.createElement("span");
    value.className = "prediction-value";
    const shown = byShare ? prediction.pixel_share : prediction.probability;
    value.textContent = percent(shown);
    if (byShare) value.title = "of the pixels";
    const item = document.createElement("li");
    item.className = "prediction";
    const label = document.createElement("span");
    label.className = "prediction-label";
    label.textContent = prediction.label;
    label.title = `class ${prediction.index}`;
    if (byShare) {
      label.title += `, mean probability ${percent(prediction.probability)}`;
      item.dataset.pixelShare = String(prediction.pixel_share);
    }
    const meter = document.createElement("meter");
    Object.assign(meter, { min: 0, max: 1, value: shown });
    meter.setAttribute("aria-label", `${prediction.label} ${byShare ? "pixel share" : "probability"}`);
    item.append(label, meter, value);
    if (prediction.box) {
      label.title += `, box ${prediction.box.map(Math.round).join(",")}`;
      item.dataset.box = prediction.box.join(",");
      item.tabIndex = 0;
      item.classList.add("detection");
      item.addEventListener("click", () => explainDetection(prediction));
      item.addEventListener("keydown", (event) => {
        if (event.key === "Enter") explainDetection(prediction);
      });
    }
    list.append(item);
  }
}

function opacity() {
  return Number($("opacity").value) / 100;
}

function draw(view) {
  const context = view.canvas.getContext("2d");
  context.globalAlpha = 1;
  context.clearRect(0, 0, view.width, view.height);
  if (state.original) {
    context.drawImage(state.original, 0, 0, view.width, view.height);
    context.globalAlpha = opacity();
  }
  context.drawImage(view.heatmap, 0, 0, view.width, view.height);
  context.globalAlpha = 1;
  // The explained part of a center-crop model (dashed), the region explained (solid), a
  // detector's detections (labelled).
  for (const { box, dash, colour, label, width = 1 } of view.boxes || []) {
    context.save();
    context.setLineDash(dash);
    context.lineWidth = width * Math.max(2, Math.round(view.width / 200));
    context.strokeStyle = colour;
    context.strokeRect(box[0], box[1], box[2] - box[0], box[3] - box[1]);
    if (label) {
      const size = Math.max(12, Math.round(view.width / 40));
      context.font = `${size}px sans-serif`;
      const top = box[1] >= size + 4 ? box[1] - size - 4 : box[1];
      context.fillStyle = "rgba(0, 0, 0, 0.7)";
      context.fillRect(box[0], top, context.measureText(label).width + 8, size + 4);
      context.fillStyle = colour;
      context.fillText(label, box[0] + 4, top + size);
    }
    context.restore();
  }
  view.canvas.dataset.opacity = String(opacity());
}

function redrawAll() {
  $("opacity-value").textContent = `${$("opacity").value}%`;
  for (const view of state.views) draw(view);
}

function fileStem() {
  const name = state.file ? state.file.name : "image";
  return name.replace(/\.[^.]+$/, "").replace(/[^\w.-]+/g, "_") || "image";
}

function downloadLink(text, description, dataUrl, filename) {
  const link = document.createElement("a");
  link.className = "button download";
  link.href = dataUrl;
  link.download = filename;
  link.textContent = text;
  link.title = description;
  link.setAttribute("aria-label", description);
  return link;
}

// The heatmap drawn on the page: from the raw map with jet (the API overlay's colours) when
// the answer has it, else the API's heatmap PNG.
async function heatmapOf(item, params = {}) {
  if (!item.array) return { heatmap: await loadImage(png(item.heatmap_png)), scale: null };
  let map = to2d(decodeArray(item.array));
  const occlusion = item.method === "occlusion";
  if (occlusion) {
    const schema = state.methods.get("occlusion")?.params?.properties?.stride || {};
    const stride = Number((params.occlusion || {}).stride || schema.default || 8);
    const modelSide = state.model ? state.model.input_size[0] : 224;
    map = smooth(map, Math.round((stride / 2) * (map.height / modelSide)));
  }
  const scale = colourMap(map, !occlusion);
  const canvas = document.createElement("canvas");
  canvas.width = map.width;
  canvas.height = map.height;
  canvas.getContext("2d").putImageData(scale.image, 0, 0);
  return { heatmap: canvas, scale };
}

// Whether an explained box leaves out part of the image (a center-crop model's border).
function cropped(box, width, height) {
  return Boolean(box) && (box[0] > 0 || box[1] > 0 || box[2] < width || box[3] < height);
}

async function showResults(body, params = {}, region = null) {
  showPredictions(body.predictions);
  const gallery = $("gallery");
  gallery.replaceChildren();
  state.views = [];
  for (const item of body.explanations) {
    const method = state.methods.get(item.method) || { title: item.method };
    const { heatmap, scale } = await heatmapOf(item, params);
    const heatmapUrl = png(item.heatmap_png);
    const overlayFormat = body.overlay_format || "png";
    const overlayUrl = overlayUrlOf(item.overlay_png, overlayFormat);
    const figure = document.createElement("figure");
    figure.className = "explanation";
    figure.dataset.method = item.method;
    const canvas = document.createElement("canvas");
    canvas.className = "overlay";
    canvas.width = item.width;
    canvas.height = item.height;
    const about = item.target ? ` for “${item.target.label}”` : "";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${method.title}${about}, heatmap over the image`);
    const caption = document.createElement("figcaption");
    const title = document.createElement("strong");
    title.textContent = method.title || item.method;
    const details = document.createElement("span");
    details.className = "details";
    const parts = [];
    if (item.target) parts.push(`target: ${classText(item.target)}`);
    if (item.layer) parts.push(`layer: ${item.layer}`);
    const boxes = [];
    if (cropped(item.explained_box, item.width, item.height)) {
      parts.push(`explained: ${item.explained_box.join(",")} (center crop)`);
      figure.dataset.explainedBox = item.explained_box.join(",");
      boxes.push({ box: item.explained_box, dash: [8, 6], colour: "#ffffff" });
    }
    if (region && item.target) {
      parts.push(`region: ${region.join(",")}`);
      boxes.push({ box: region, dash: [], colour: "#0b5cad" });
    }
    if (item.target && item.target.box) {
      parts.push(`box: ${item.target.box.map(Math.round).join(",")}`);
      figure.dataset.box = item.target.box.join(",");
      boxes.push(...detectionBoxes(body.predictions, item.target.box));
      canvas.classList.add("detections");
      canvas.title = "Click a detection to explain it";
      canvas.addEventListener("click", (event) => {
        const bounds = canvas.getBoundingClientRect();
        const x = ((event.clientX - bounds.left) * canvas.width) / bounds.width;
        const y = ((event.clientY - bounds.top) * canvas.height) / bounds.height;
        const found = detectionAt(body.predictions, x, y);
        if (found) explainDetection(found);
      });
    }
    parts.push(`${Math.round(item.elapsed_ms)} ms`);
    details.textContent = parts.join(" · ");
    const name = `${fileStem()}_${item.method}${item.target ? `_${item.target.index}` : ""}`;
    const downloads = document.createElement("div");
    downloads.className = "downloads";
    const methodTitle = method.title || item.method;
    // "view": the canvas as shown, at the slider's opacity (rendered when clicked).
    const view = downloadLink("⤓ View", `Download the ${methodTitle} view at the chosen opacity`,
      "#", `${name}_view.png`);
    view.classList.add("download-view");
    view.addEventListener("click", () => { view.href = canvas.toDataURL("image/png"); });
    downloads.append(
      downloadLink("⤓ Overlay", `Download the ${methodTitle} overlay`, overlayUrl,
        `${name}_overlay.${overlayExtensions[overlayFormat] || overlayFormat}`),
      downloadLink("⤓ Heatmap", `Download the ${methodTitle} heatmap`, heatmapUrl, `${name}_heatmap.png`),
      view,
    );
    caption.append(title, details);
    if (scale) caption.append(legend(scale));
    caption.append(downloads);
    figure.append(canvas, caption);
    gallery.append(figure);
    const shown = { canvas, heatmap, width: item.width, height: item.height, boxes };
    state.views.push(shown);
    draw(shown);
    canvas.dataset.ready = "true";
  }
  $("results-empty").hidden = true;
  $("results-body").hidden = false;
}

// ---------- adversarial ----------

async function adversarial(event) {
  event.preventDefault();
  if (!state.file) return;
  const params = {
    attack: $("adv-attack").value,
    epsilon: Number($("adv-epsilon").value),
    steps: Number($("adv-steps").value),
  };
  const goal = parseTarget($("adv-goal").value);
  if (goal !== null) params.adversarial_target = goal;
  const form = baseForm({ layer: false });
  form.append("params", JSON.stringify(params));
  await run("adversarial", $("adversarial-button"), async () => {
    const body = await api("/v1/adversarial", { method: "POST", body: form });
    $("adv-original").src = state.original ? state.original.src : "";
    // The API answers at the model's input size; shown at the photo's aspect, not squashed.
    const aspect = body.image.width / body.image.height;
    for (const id of ["adv-image", "adv-perturbation"]) $(id).style.aspectRatio = String(aspect);
    $("adv-image").src = png(body.adversarial_png);
    $("adv-perturbation").src = png(body.perturbation_png);
    $("adv-before").textContent = `Before: ${classText(body.original)}`;
    $("adv-after").textContent = `After: ${classText(body.adversarial)}`;
    $("adv-perturbation-caption").textContent =
      `Perturbation, magnified (largest change ${body.linf.toFixed(2)} / 255)`;
    const aim = body.adversarial_target ? `, aiming for ${classText(body.adversarial_target)}` : "";
    $("adv-summary").textContent = `${body.success ? "The prediction changed" : "The prediction held"}` +
      ` under ${params.attack.toUpperCase()} with ε = ${params.epsilon}${aim}.`;
    $("adversarial-results").dataset.success = String(body.success);
    showBody("adversarial");
  });
}

// ---------- activation maximization ----------

async function activationMax(event) {
  event.preventDefault();
  const params = { steps: Number($("act-steps").value) };
  const channel = $("act-channel").value.trim();
  if (channel !== "") params.channel = Number(channel);
  const form = baseForm({ image: false, target: channel === "", layer: channel !== "" });
  if (channel === "" && !form.has("target")) {
    // a class to maximize: the first one unless the user chose one
    form.append("target", parseTarget($("target-input").value) || "0");
  }
  form.append("params", JSON.stringify(params));
  await run("activation", $("activation-button"), async () => {
    const body = await api("/v1/activation-max", { method: "POST", body: form });
    $("act-image").src = png(body.image_png);
    const what = body.target ? `class ${classText(body.target)}` : `channel ${body.channel} of ${body.layer}`;
    $("act-image").alt = `An image synthesized to maximize ${what}`;
    $("act-summary").textContent = `Maximizes ${what}; objective ${body.score.toFixed(3)}.`;
    $("act-caption").textContent = `The model sees: ${classText(body.top1)}`;
    showBody("activation");
    document.dispatchEvent(new CustomEvent("activation-shown", { detail: body })); // dataset.js
  });
}

// ---------- feature maps and filters: the API's sheet cut into tiles with gaps ----------

// render.grid lays tiles in ceil(sqrt(n)) columns (or `columns`), each tile as wide as the
// others and as high as its aspect makes it, under an 18 px caption strip, 6 px apart.
const CAPTION_PX = 18;
const GAP_PX = 6;

// Each tile is cut out whole, at the size it has on the sheet: a photo's tile keeps the
// photo's aspect (`aspect`, width / height; 1 for the square maps and filters).
async function cutSheet(b64, labels, container, describe, { columns = 0, aspect = 1 } = {}) {
  const sheet = await loadImage(png(b64));
  const perRow = columns || Math.max(1, Math.ceil(Math.sqrt(labels.length)));
  const rows = Math.ceil(labels.length / perRow);
  const tileWidth = (sheet.naturalWidth - (perRow - 1) * GAP_PX) / perRow;
  const rowHeight = (sheet.naturalHeight - (rows - 1) * GAP_PX) / rows;
  const tileHeight = Math.min(rowHeight - CAPTION_PX, Math.round(tileWidth / aspect));
  container.replaceChildren();
  labels.forEach((label, index) => {
    const [row, column] = [Math.floor(index / perRow), index % perRow];
    const figure = document.createElement("figure");
    figure.className = "tile";
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(tileWidth);
    canvas.height = Math.round(tileHeight);
    canvas.style.aspectRatio = String(aspect);
    canvas.getContext("2d").drawImage(sheet, column * (tileWidth + GAP_PX),
      row * (rowHeight + GAP_PX) + CAPTION_PX, tileWidth, tileHeight,
      0, 0, canvas.width, canvas.height);
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", describe(label));
    const caption = document.createElement("figcaption");
    caption.textContent = label;
    figure.append(canvas, caption);
    container.append(figure);
  });
}

async function featureMaps(event) {
  event.preventDefault();
  if (!state.file) return;
  const form = baseForm({ target: false });
  form.append("params", JSON.stringify({ top_k: Number($("feat-topk").value) }));
  await run("features", $("features-button"), async () => {
    const body = await api("/v1/feature-maps", { method: "POST", body: form });
    const channels = body.top_channels;
    $("feat-summary").textContent =
      `Layer ${body.layer} (${body.shape.join("×")}): the ${channels.length} strongest channels by mean activation.`;
    await cutSheet(body.grid_png, channels.map((c) => `#${c.channel}`), $("feat-tiles"),
      (label) => `Activation map of channel ${label}`);
    fillRows($("feat-table"), channels, (c) => [String(c.channel), fixed(c.mean), fixed(c.max)]);
    showBody("features");
  });
}

async function filters(event) {
  event.preventDefault();
  const form = new FormData();
  form.append("model", $("model-select").value);
  if ($("filters-layer").value) form.append("layer", $("filters-layer").value);
  await run("filters", $("filters-button"), async () => {
    const body = await api("/v1/filters", { method: "POST", body: form });
    $("filters-summary").textContent =
      `${body.layer}: weights ${body.shape.join("×")}, ${body.channels.length} filters shown.`;
    await cutSheet(body.tiles_png, body.channels.map(String), $("filters-tiles"),
      (label) => `Filter ${label}`);
    showBody("filters");
  });
}

// ---------- compare ----------

// Former score names, still sent beside the new ones (cnnlens/compare/options.py ALIASES).
const SCORE_ALIASES = { deletion_auc: 1, insertion_auc: 1, randomization_similarity: 1 };
const LOWER_IS_BETTER = new Set(["deletion", "randomization", "randomization_ssim", "infidelity",
  "sensitivity_max", "complexity"]);
const SCORE_TITLES = { deletion: "deletion AUC", insertion: "insertion AUC",
  randomization: "randomization similarity", randomization_ssim: "randomization SSIM",
  sensitivity_max: "max-sensitivity", road: "ROAD" };

function scoreTitle(name) {
  return `${SCORE_TITLES[name] || name} ${LOWER_IS_BETTER.has(name) ? "↓" : "↑"}`;
}

function protocolText(p) {
  if (!p) return "";
  const kernel = p.kernel ? `${p.kernel.size}×${p.kernel.size} σ=${p.kernel.sigma} ` +
    `(${p.kernel.padding} padding)` : "none";
  const substrate = (name) => (name === "zeros" ? "zeros" : "the blur");
  const parts = [`baseline ${p.baseline} (deletion to ${substrate(p.deletion)}, insertion ` +
    `from ${substrate(p.insertion)}), blur kernel ${kernel}, ${p.steps} steps ` +
    `(${p.points} points), trapezoid AUC, seed ${p.seed}`];
  // The other scores' settings, when they were asked for (cnnlens/compare/protocol.py).
  if (p.infidelity) {
    parts.push(`infidelity: ${p.infidelity.n_perturb_samples} samples, noise ` +
      `${p.infidelity.noise}, max-normalized maps`);
  }
  if (p.sensitivity_max) {
    parts.push(`max-sensitivity: ${p.sensitivity_max.n_perturb_samples} samples, radius ` +
      `${p.sensitivity_max.radius}, max-normalized maps`);
  }
  if (p.road) parts.push(`ROAD: percentiles ${p.road.percentiles.join(",")}, ${p.road.imputer} imputer`);
  return `Protocol: ${parts.join("; ")}.`;
}

async function compareMethods(event) {
  event.preventDefault();
  const methods = chosen("compare-methods");
  if (!state.file || methods.length === 0) return;
  const params = advancedParams();
  if (params === null) return;
  const form = baseForm();
  for (const name of methods) form.append("method", name);
  const chosenParams = Object.fromEntries(Object.entries(params).filter(([k]) => methods.includes(k)));
  if (Object.keys(chosenParams).length) form.append("params", JSON.stringify(chosenParams));
  form.append("scores", $("compare-scores").value);
  await run("compare", $("compare-button"), async () => {
    const body = await api("/v1/compare", { method: "POST", body: form });
    const image = body.images[0];
    const titles = body.methods.map((name) => state.methods.get(name)?.title || name);
    await cutSheet(body.grid_png, [`${image.target.label} (original)`, ...titles],
      $("compare-grid"), (label) => `${label}, ${image.name}`,
      { columns: titles.length + 1, aspect: image.width / image.height });
    $("compare-summary").textContent =
      `${image.name}: target ${classText(image.target)}, layer ${image.layer}.`;
    const scoreNames = Object.keys(body.summary[body.methods[0]] || {})
      .filter((name) => !(name in SCORE_ALIASES));
    $("compare-scores-head").replaceChildren(...["method", ...scoreNames].map((name) => {
      const cell = document.createElement("th");
      cell.scope = "col";
      cell.textContent = name === "method" ? name : scoreTitle(name);
      return cell;
    }));
    fillRows($("compare-scores-table"), body.methods, (name) => {
      const s = image.scores[name] || {};
      return [state.methods.get(name)?.title || name, ...scoreNames.map((score) => fixed(s[score]))];
    });
    $("compare-protocol").textContent = protocolText(body.protocol);
    fillRows($("compare-agreement"), image.agreement,
      (pair) => [pair.methods.join(" · "), fixed(pair.spearman), fixed(pair.top_k_iou)]);
    showBody("compare");
  });
}

// ---------- audits ----------

async function submitAudit(event) {
  event.preventDefault();
  const archive = $("audit-archive").files[0];
  if (!archive) return;
  const form = new FormData();
  form.append("archive", archive, archive.name);
  const labels = $("audit-labels").files[0];
  if (labels) form.append("labels", labels, labels.name);
  form.append("model", $("model-select").value);
  for (const name of chosen("audit-methods")) form.append("method", name);
  clearError();
  $("audit-button").disabled = true;
  try {
    const job = await api("/v1/audits", { method: "POST", body: form });
    $("audit-report").hidden = true;
    $("audit-table").hidden = true;
    showBody("audit");
    showJob(job);
    watchAudit(job.id);
  } catch (error) {
    showError(error);
    updateControls();
  }
}

function showJob(job) {
  const { done, total, errors, fraction } = job.progress;
  $("audit-summary").textContent = `Job ${job.id} on ${job.model}: ${job.methods.join(", ")}.`;
  $("audit-progress").value = fraction;
  const eta = job.eta_s ? `, about ${Math.ceil(job.eta_s)} s left` : "";
  $("audit-progress-text").textContent =
    `${job.status}: ${done} of ${total} images${errors ? `, ${errors} errors` : ""}${eta}.`;
  $("audit-results").dataset.status = job.status;
  setStatus(job.status, "audit");
}

function watchAudit(id) {
  clearTimeout(state.auditTimer);
  const poll = async () => {
    try {
      const job = await api(`/v1/audits/${id}`);
      showJob(job);
      if (["queued", "running"].includes(job.status)) {
        state.auditTimer = setTimeout(poll, 500);
        return;
      }
      await showAuditResults(job);
    } catch (error) {
      showError(error);
    }
    updateControls();
  };
  poll();
}

async function showAuditResults(job) {
  const report = $("audit-report");
  report.href = job.links.report;
  report.hidden = false;
  if (apiHeaders()["X-API-Key"]) report.title = "The report needs the API key: open it with a client that sends it.";
  const body = await api(job.links.results);
  fillRows($("audit-rows"), body.results, (record) => [
    record.name,
    record.predicted_name ? `${record.predicted_name} (${percent(record.confidence)})` : record.error || "—",
    (record.flags || []).join(", ") || "none",
  ]);
  $("audit-table").hidden = false;
  const shown = { job, summary: body.summary }; // for dataset.js
  document.dispatchEvent(new CustomEvent("audit-shown", { detail: shown }));
}

// ---------- start ----------

// Each view's submit button (data-submit names it) and live status line go in the action bar
// after the shared fields (target, layer, advanced), so the form reads in the task's order.
function setUpForms() {
  const handlers = {
    explain,
    adversarial,
    activation: activationMax,
    features: featureMaps,
    filters,
    compare: compareMethods,
    audit: submitAudit,
  };
  const bar = $("actions");
  for (const form of document.querySelectorAll("form.view-form")) {
    const view = form.dataset.view;
    const button = Object.assign(document.createElement("button"), {
      id: `${view}-button`, type: "submit", disabled: true, textContent: form.dataset.submit,
    });
    button.setAttribute("form", form.id); // submits its form from outside it
    const status = Object.assign(document.createElement("span"), {
      id: `${view}-status`, className: "status",
    });
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    const action = Object.assign(document.createElement("div"), { className: "view-action" });
    action.dataset.view = view;
    action.hidden = view !== state.view;
    action.append(button, status);
    bar.insertBefore(action, $("error"));
    form.addEventListener("submit", handlers[view]);
  }
}

// The controls end at the window's bottom edge (they scroll inside), wherever the page is
// scrolled: their action bar, the button and any error, is always in sight.
function fitControls() {
  const controls = document.querySelector(".controls");
  if (getComputedStyle(controls).position !== "sticky") return;
  const top = Math.max(controls.getBoundingClientRect().top, 0);
  controls.style.maxHeight = `${Math.max(240, window.innerHeight - top - 8)}px`;
}

async function start() {
  fitControls();
  window.addEventListener("scroll", fitControls, { passive: true });
  window.addEventListener("resize", fitControls);
  setUpDropZone();
  setUpRegionPicker();
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => showView(tab.dataset.view));
  }
  setUpForms();
  $("audit-archive").addEventListener("change", updateControls);
  $("act-channel").addEventListener("input", updateControls);
  $("opacity").addEventListener("input", redrawAll);
  $("model-select").addEventListener("change", async (event) => {
    clearError();
    try {
      await loadModel(event.target.value);
    } catch (error) {
      showError(error);
    }
  });
  $("api-key-input").addEventListener("change", loadCatalog);
  const initial = location.hash.replace("#", "");
  showView(VIEW_USES[initial] ? initial : "explain");
  await loadCatalog();
}

// Models and methods; again after an API key is entered if the first try was refused.
async function loadCatalog() {
  clearError();
  try {
    await Promise.all([loadModels(), loadMethods()]);
    document.body.dataset.ready = "true";
  } catch (error) {
    showError(error);
    if (error.status === 401) {
      $("api-key-input").closest("details").open = true;
      $("api-key-input").focus();
    }
  }
}

start();

// The cnnlens web page: upload an image, explain it through POST /v1/explain, and blend
// each heatmap over the original on a canvas (so the opacity slider needs no new request).
"use strict";

const $ = (id) => document.getElementById(id);

const state = {
  file: null,          // the chosen image File
  original: null,      // the decoded original (HTMLImageElement)
  methods: new Map(),  // name -> method info from GET /v1/methods
  model: null,         // GET /v1/models/{name}
  views: [],           // [{canvas, heatmap, width, height}] for the opacity slider
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
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

function setStatus(text) {
  $("status").textContent = text;
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

async function loadModel(name) {
  state.model = await api(`/v1/models/${encodeURIComponent(name)}`);
  const model = state.model;
  $("model-hint").textContent =
    `${model.num_classes} classes, input ${model.input_size.join("×")}, weights: ${model.weights_source}`;
  const layers = $("layer-select");
  layers.replaceChildren();
  for (const layer of model.layers) {
    if (!layer.output_shape || layer.output_shape.length !== 3) continue; // spatial layers only
    const isDefault = layer.name === model.default_layer;
    const label = `${layer.name} — ${layer.type} ${layer.output_shape.join("×")}` +
      (isDefault ? " (default)" : "");
    const option = new Option(label, layer.name, isDefault, isDefault);
    layers.append(option);
  }
  const classes = $("categories-list");
  classes.replaceChildren(
    ...model.categories.map((label, index) => new Option(`${index}: ${label}`)),
  );
  $("target-input").value = "";
}

async function loadMethods() {
  const body = await api("/v1/methods");
  const list = $("methods-list");
  list.replaceChildren();
  for (const method of body.methods) {
    // Methods with routes of their own (adversarial, activation maximization, ...) do not
    // produce a map of this image.
    if ((method.route || "/v1/explain") !== "/v1/explain") continue;
    state.methods.set(method.name, method);
    const id = `method-${method.name}`;
    const row = document.createElement("div");
    row.className = "method";
    const box = document.createElement("input");
    Object.assign(box, { type: "checkbox", id, name: "method", value: method.name });
    box.checked = method.name === "grad_cam";
    box.addEventListener("change", updateControls);
    const label = document.createElement("label");
    label.htmlFor = id;
    label.textContent = method.title || method.name;
    label.title = method.paper || "";
    row.append(box, label);
    list.append(row);
  }
  updateControls();
}

function chosenMethods() {
  return [...document.querySelectorAll('#methods-list input[name="method"]:checked')]
    .map((box) => box.value);
}

function updateControls() {
  const methods = chosenMethods().map((name) => state.methods.get(name) || {});
  $("layer-select").disabled = !methods.some((m) => m.uses_layer);
  $("target-input").disabled = methods.length > 0 && !methods.some((m) => m.uses_target);
  $("explain-button").disabled = !state.file || methods.length === 0;
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
    $("image-status").textContent = `${file.name} (no preview in this browser).`;
    updateControls();
  };
  image.src = url;
}

function setUpDropZone() {
  const zone = $("drop-zone");
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
    if (file) chooseFile(file);
  });
  $("image-input").addEventListener("change", (event) => chooseFile(event.target.files[0]));
}

// ---------- explain ----------

function parseTarget(text) {
  const value = text.trim();
  if (!value) return null;
  const indexed = value.match(/^(\d+)\s*(:.*)?$/); // "285" or "285: Egyptian cat"
  return indexed ? indexed[1] : value;
}

async function explain(event) {
  event.preventDefault();
  clearError();
  const methods = chosenMethods();
  if (!state.file || methods.length === 0) return;
  const form = new FormData();
  form.append("image", state.file, state.file.name);
  form.append("model", $("model-select").value);
  for (const name of methods) form.append("method", name);
  const target = $("target-input").disabled ? null : parseTarget($("target-input").value);
  if (target !== null) form.append("target", target);
  if (!$("layer-select").disabled && $("layer-select").value) {
    form.append("layer", $("layer-select").value);
  }
  const params = $("params-input").value.trim();
  if (params) {
    try {
      JSON.parse(params);
    } catch (error) {
      showError({ code: "invalid_params", message: `The parameters are not valid JSON: ${error.message}` });
      $("params-input").focus();
      return;
    }
    form.append("params", params);
  }
  form.append("output", "overlay,heatmap");

  const button = $("explain-button");
  button.disabled = true;
  $("results").setAttribute("aria-busy", "true");
  setStatus("Explaining…");
  const started = performance.now();
  try {
    const body = await api("/v1/explain", { method: "POST", body: form });
    await showResults(body);
    setStatus(`Done in ${Math.round(performance.now() - started)} ms.`);
    $("results-heading").focus();
  } catch (error) {
    setStatus("");
    showError(error);
  } finally {
    button.disabled = false;
    $("results").removeAttribute("aria-busy");
    updateControls();
  }
}

// ---------- results ----------

function loadImage(source) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error("an image in the answer cannot be decoded"));
    image.src = source;
  });
}

function percent(probability) {
  return `${(100 * probability).toFixed(1)}%`;
}

function showPredictions(predictions) {
  const list = $("predictions");
  list.replaceChildren();
  for (const prediction of predictions) {
    const item = document.createElement("li");
    item.className = "prediction";
    const label = document.createElement("span");
    label.className = "prediction-label";
    label.textContent = prediction.label;
    label.title = `class ${prediction.index}`;
    const meter = document.createElement("meter");
    Object.assign(meter, { min: 0, max: 1, value: prediction.probability });
    meter.setAttribute("aria-label", `${prediction.label} probability`);
    const value = document.createElement("span");
    value.className = "prediction-value";
    value.textContent = percent(prediction.probability);
    item.append(label, meter, value);
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

async function showResults(body) {
  showPredictions(body.predictions);
  const gallery = $("gallery");
  gallery.replaceChildren();
  state.views = [];
  for (const item of body.explanations) {
    const method = state.methods.get(item.method) || { title: item.method };
    const heatmapUrl = `data:image/png;base64,${item.heatmap_png}`;
    const overlayUrl = `data:image/png;base64,${item.overlay_png}`;
    const heatmap = await loadImage(heatmapUrl);
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
    if (item.target) parts.push(`target: ${item.target.label} (${item.target.index}, ${percent(item.target.probability)})`);
    if (item.layer) parts.push(`layer: ${item.layer}`);
    parts.push(`${Math.round(item.elapsed_ms)} ms`);
    details.textContent = parts.join(" · ");
    const name = `${fileStem()}_${item.method}${item.target ? `_${item.target.index}` : ""}`;
    const downloads = document.createElement("div");
    downloads.className = "downloads";
    // "view": the canvas as shown, at the slider's opacity (rendered when clicked).
    const methodTitle = method.title || item.method;
    const view = downloadLink("⤓ View", `Download the ${methodTitle} view at the chosen opacity`,
      "#", `${name}_view.png`);
    view.classList.add("download-view");
    view.addEventListener("click", () => { view.href = canvas.toDataURL("image/png"); });
    downloads.append(
      downloadLink("⤓ Overlay", `Download the ${methodTitle} overlay`, overlayUrl, `${name}_overlay.png`),
      downloadLink("⤓ Heatmap", `Download the ${methodTitle} heatmap`, heatmapUrl, `${name}_heatmap.png`),
      view,
    );
    caption.append(title, details, downloads);
    figure.append(canvas, caption);
    gallery.append(figure);
    const shown = { canvas, heatmap, width: item.width, height: item.height };
    state.views.push(shown);
    draw(shown);
    canvas.dataset.ready = "true";
  }
  $("results-empty").hidden = true;
  $("results-body").hidden = false;
}

// ---------- start ----------

async function start() {
  setUpDropZone();
  $("explain-form").addEventListener("submit", explain);
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

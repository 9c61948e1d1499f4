// The page's views of an audit's feature space (uses app.js's helpers): choose a finished
// audit, drop an image on it to see the audited images nearest to it
// (POST /v1/audits/{id}/neighbors), and, in the activation-max view, the audit's real
// exemplars of a channel beside the synthetic image (GET /v1/audits/{id}/exemplars...).
"use strict";

const dataset = {
  job: null,        // the finished audit shown (GET /v1/audits/{id})
  exemplars: null,  // its {layer: {channel: [{name, index, activation, box}]}}, or null
  query: 0,         // the latest neighbours request (an older answer is dropped)
  urls: [],         // object URLs of the images shown, released when replaced
};

const FINISHED = ["done"];

// An image of the API as an object URL: fetched with the API key, which an <img> cannot send.
async function apiImage(path) {
  let response;
  try {
    response = await fetch(path, { headers: apiHeaders() });
  } catch (error) {
    throw new ApiError(0, "network_error", `The service cannot be reached (${error.message}).`);
  }
  if (!response.ok) throw new ApiError(response.status, `http_${response.status}`, `${path}: ${response.statusText}`);
  const url = URL.createObjectURL(await response.blob());
  dataset.urls.push(url);
  return url;
}

function releaseImages() {
  for (const url of dataset.urls) URL.revokeObjectURL(url);
  dataset.urls = [];
}

function shortId(id) {
  return id.length > 12 ? `${id.slice(0, 12)}…` : id;
}

// ---------- choosing a finished audit ----------

async function listAudits() {
  const select = $("audit-choose");
  try {
    const body = await api("/v1/audits?limit=100");
    const done = body.audits.filter((job) => FINISHED.includes(job.status));
    const chosen = dataset.job ? dataset.job.id : select.value;
    select.replaceChildren(new Option(done.length ? "none chosen" : "no finished audit yet", ""));
    for (const job of done) {
      const when = new Date(job.finished * 1000).toLocaleString();
      const text = `${shortId(job.id)} · ${job.progress.total} images · ${job.model} · ${when}`;
      select.append(new Option(text, job.id, false, job.id === chosen));
    }
  } catch (error) {
    showError(error);
  }
}

async function chooseAudit(id) {
  if (!id) return;
  clearError();
  try {
    const job = await api(`/v1/audits/${encodeURIComponent(id)}`);
    showBody("audit");
    showJob(job);
    await showAuditResults(job); // app.js: the report link and the table; then "audit-shown"
  } catch (error) {
    showError(error);
  }
}

// Every finished audit the page shows (chosen, or a submitted one that ended) becomes the one
// the neighbours and the exemplars come from; its summary says which layers kept exemplars.
async function auditShown({ job, summary }) {
  const finished = FINISHED.includes(job.status);
  dataset.job = finished ? job : null;
  dataset.exemplars = null;
  $("audit-neighbours").hidden = !finished;
  $("neighbours-list").replaceChildren();
  $("neighbours-status").textContent = "";
  if (!finished) return;
  const select = $("audit-choose");
  if (![...select.options].some((option) => option.value === job.id)) await listAudits();
  select.value = job.id;
  const kept = ((summary || {}).features || {}).exemplars || {};
  if (Object.keys(kept).length) {
    try {
      dataset.exemplars = await api(`/v1/audits/${job.id}/exemplars`);
    } catch (error) {
      showError(error);
    }
  }
  showExemplarHint();
}

// ---------- neighbours of a dropped image ----------

async function findNeighbours(file) {
  const job = dataset.job;
  if (!file || !job) return;
  const query = ++dataset.query;
  const status = $("neighbours-status");
  const preview = $("neighbours-preview");
  preview.src = URL.createObjectURL(file);
  preview.alt = `The query: ${file.name}`;
  preview.hidden = false;
  status.classList.remove("error-text");
  status.textContent = `Searching audit ${shortId(job.id)} for the images nearest to ${file.name}…`;
  const form = new FormData();
  form.append("image", file, file.name);
  form.append("k", String(Number($("neighbours-k").value) || 5));
  let body;
  try {
    body = await api(`/v1/audits/${job.id}/neighbors`, { method: "POST", body: form });
  } catch (error) {
    if (query !== dataset.query) return;
    status.classList.add("error-text");
    status.textContent = `Error ${error.status || ""} (${error.code}): ${error.message}`;
    $("neighbours-list").replaceChildren();
    return;
  }
  if (query !== dataset.query) return;
  releaseImages();
  const list = $("neighbours-list");
  list.replaceChildren(...body.neighbors.map((entry) => neighbourItem(job, entry)));
  status.textContent = `The ${body.neighbors.length} audited images nearest to ${file.name}, ` +
    "nearest first (distance = 1 − cosine similarity of the feature vectors).";
  $("audit-neighbours").dataset.ready = "true";
}

function neighbourItem(job, entry) {
  const item = document.createElement("li");
  item.className = "neighbour";
  item.dataset.name = entry.name || "";
  const picture = document.createElement("img");
  picture.alt = `Audited image ${entry.name}`;
  apiImage(`/v1/audits/${job.id}/thumbnails/${entry.index}.jpg`)
    .then((url) => { picture.src = url; })
    .catch(() => { picture.hidden = true; });
  const name = document.createElement("a");
  name.className = "neighbour-name";
  name.textContent = entry.name || `#${entry.index}`;
  name.href = `${job.links.report}#image-${entry.index}`; // the report's detail view of it
  name.target = "_blank";
  name.rel = "noopener";
  const facts = document.createElement("span");
  facts.className = "neighbour-facts";
  const lines = [`distance ${Number(entry.distance).toFixed(3)}`];
  if (entry.label_name) lines.push(`label: ${entry.label_name}`);
  if (entry.predicted_name) lines.push(`predicted: ${entry.predicted_name}`);
  facts.textContent = lines.join("\n");
  item.append(picture, name, facts);
  return item;
}

// ---------- real exemplars beside activation maximization ----------

function exemplarLayers() {
  return Object.keys(dataset.exemplars || {});
}

// The activation-max form says which audit's exemplars it can show, and of which layers.
function showExemplarHint() {
  const note = $("act-exemplars-note");
  const layers = exemplarLayers();
  if (!dataset.job) {
    note.textContent = "Choose a finished audit run with exemplar layers (the Audit view) to " +
      "see the real images that excite a channel beside the synthetic one.";
  } else if (!layers.length) {
    note.textContent = `Audit ${shortId(dataset.job.id)} kept no channel exemplars ` +
      "(audits keep them for the layers given as `exemplars`).";
  } else {
    note.textContent = `Audit ${shortId(dataset.job.id)} kept the real exemplars of ` +
      `${layers.join(", ")}: choose one of these layers and a channel.`;
  }
  note.hidden = false;
}

async function showExemplars(answer) {
  const figure = $("act-exemplars");
  figure.hidden = true;
  showExemplarHint();
  const job = dataset.job;
  if (!job || answer.channel === null || answer.channel === undefined) return;
  const found = ((dataset.exemplars || {})[answer.layer] || {})[String(answer.channel)];
  if (!found || !found.length) return;
  const sheet = $("act-exemplars-sheet");
  try {
    sheet.src = await apiImage(
      `/v1/audits/${job.id}/exemplars/${encodeURIComponent(answer.layer)}/${answer.channel}.png`);
  } catch (error) {
    showError(error);
    return;
  }
  sheet.alt = `The audited images where channel ${answer.channel} of ${answer.layer} fires most`;
  $("act-exemplars-caption").textContent = `Real images: the ${found.length} crops of audit ` +
    `${shortId(job.id)} where channel ${answer.channel} of ${answer.layer} fires most, best first`;
  $("act-exemplars-list").replaceChildren(...found.map((entry) => {
    const item = document.createElement("li");
    item.textContent = `${entry.name} (${Number(entry.activation).toFixed(2)})`;
    return item;
  }));
  figure.dataset.layer = answer.layer;
  figure.dataset.channel = String(answer.channel);
  figure.hidden = false;
  $("act-exemplars-note").hidden = true;
}

// ---------- start ----------

function startDataset() {
  watchDrops($("neighbours-drop"), $("neighbours-input"), findNeighbours); // app.js
  $("audit-choose").addEventListener("change", (event) => chooseAudit(event.target.value));
  $("audit-refresh").addEventListener("click", listAudits);
  document.addEventListener("audit-shown", (event) => auditShown(event.detail));
  document.addEventListener("activation-shown", (event) => showExemplars(event.detail));
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    if (tab.dataset.view === "audit") tab.addEventListener("click", listAudits);
  }
  if (document.body.dataset.view === "audit") listAudits();
}

startDataset();

// The report's map of the images: every row with map coordinates is a point on a canvas,
// coloured by label, prediction, correctness, flag or cluster. Hovering shows the image; a
// box or lasso selection filters the table (window.cnnlensReport.select); a click opens the
// row's detail view. Points are drawn into an off-screen layer once per change, so that a
// drag redraws only that layer and the selection's outline.
(function () {
  "use strict";
  const report = window.cnnlensReport;
  const canvas = document.getElementById("map");
  if (!report || !canvas) return;
  const wrap = document.getElementById("map-wrap");
  const tip = document.getElementById("map-tip");
  const legend = document.getElementById("map-legend");
  const colourBy = document.getElementById("map-colour");
  const clear = document.getElementById("map-clear");
  const status = document.getElementById("map-status");
  const whole = document.getElementById("map-whole");
  // Tableau 10: distinct hues of similar weight, legible on white; the last grey is "other".
  const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948",
    "#b07aa1", "#ff9da7", "#9c755f"];
  const OTHER = "#bab0ac";
  const NONE = "#cfcfcf";
  const FIXED = {
    correctness: [["correct", "#59a14f"], ["wrong", "#e15759"], ["no label", OTHER]],
  };
  const FLAG_ORDER = ["label_issue", "near_duplicate", "misclassified", "error",
    "low_confidence", "off_object", "degenerate_map", "fragile", "ambiguous"];
  const PAD = 14;

  // The points: rows with coordinates, in the rows' order.
  const rows = [];
  for (const row of report.rows) {
    const d = row.d;
    row.p = -1;
    if (d && d.x !== null && d.x !== undefined && d.y !== null && d.y !== undefined) {
      row.p = rows.length;
      rows.push(row);
    }
  }
  const n = rows.length;
  if (n === 0) {
    document.getElementById("map-area").hidden = true;
    status.textContent = "no image has map coordinates";
    return;
  }
  const mapX = new Float64Array(n);
  const mapY = new Float64Array(n);
  rows.forEach(function (row, i) { mapX[i] = +row.d.x; mapY[i] = +row.d.y; });
  const fitX = new Float32Array(n);  // CSS pixels with the whole map in view
  const fitY = new Float32Array(n);
  const screenX = new Float32Array(n);  // CSS pixels as shown (zoomed)
  const screenY = new Float32Array(n);
  let zoom = {scale: 1, x: 0, y: 0};  // shown = fit * scale + (x, y)
  const category = new Uint16Array(n);
  const active = new Uint8Array(n).fill(1);
  let categories = [];  // [{name, colour, members: Int32Array}] in drawing order
  let legendEntries = [];  // the same, in the legend's order
  let radius = 3;
  let fitRadius = 3;
  let grid = new Map();
  let gridCell = 12;
  let shape = null;  // the selection's outline: {mode, points: [[x, y], ...]} in CSS pixels
  let drag = null;
  let focused = -1;
  const base = document.createElement("canvas");

  // ---------- colours ----------

  function flagOf(d) {
    const tags = (d.flags || []).slice();
    if (d.label_issue) tags.push("label_issue");
    if (d.near_duplicate_of) tags.push("near_duplicate");
    for (const name of FLAG_ORDER) if (tags.includes(name)) return name;
    return tags.length ? tags[0] : null;
  }

  function valueOf(d, by) {
    if (by === "label") return d.label_name || null;
    if (by === "prediction") return d.predicted_name || null;
    if (by === "correctness") {
      return d.correct === true ? "correct" : d.correct === false ? "wrong" : "no label";
    }
    if (by === "flag") return flagOf(d);
    if (by === "cluster") {
      return d.cluster === null || d.cluster === undefined || d.cluster < 0
        ? null : "cluster " + d.cluster;
    }
    return null;
  }

  // The nine most frequent values get a colour each; the rest share "other"; rows without a
  // value are "none". Drawn: none, other, then the values rarest last (on top).
  function colour(by) {
    const values = rows.map(function (row) { return valueOf(row.d, by); });
    const counts = new Map();
    for (const value of values) if (value !== null) counts.set(value, (counts.get(value) || 0) + 1);
    let named;
    if (FIXED[by]) {
      named = FIXED[by].filter(function (entry) { return counts.has(entry[0]); });
    } else {
      const ranked = Array.from(counts.entries()).sort(function (a, b) {
        return b[1] - a[1] || String(a[0]).localeCompare(String(b[0]), undefined, {numeric: true});
      });
      const kept = ranked.length > PALETTE.length + 1 ? PALETTE.length : ranked.length;
      named = ranked.slice(0, kept).map(function (entry, k) { return [entry[0], PALETTE[k]]; });
    }
    const slot = new Map(named.map(function (entry, k) { return [entry[0], k]; }));
    const others = counts.size - named.length;
    const list = named.map(function (entry) { return {name: entry[0], colour: entry[1]}; });
    const otherSlot = list.length;
    list.push({name: "other (" + others + " more)", colour: OTHER});
    const noneSlot = list.length;
    const nothing = {flag: "no flag", cluster: "no cluster", label: "no label"};
    list.push({name: nothing[by] || "none", colour: NONE});
    const sizes = new Array(list.length).fill(0);
    values.forEach(function (value, i) {
      const k = value === null ? noneSlot : slot.has(value) ? slot.get(value) : otherSlot;
      category[i] = k;
      sizes[k]++;
    });
    const members = sizes.map(function (size) { return new Int32Array(size); });
    const filled = new Array(list.length).fill(0);
    for (let i = 0; i < n; i++) members[category[i]][filled[category[i]]++] = i;
    list.forEach(function (entry, k) { entry.members = members[k]; entry.slot = k; });
    const shown = list.filter(function (entry) { return entry.members.length > 0; });
    const valued = shown.filter(function (e) { return e.slot < otherSlot; });
    valued.sort(function (a, b) { return b.members.length - a.members.length; });
    const rest = shown.filter(function (e) { return e.slot >= otherSlot; }).reverse();
    categories = rest.concat(valued);
    legendEntries = shown;
    drawLegend(shown);
  }

  function drawLegend(shown) {
    legend.replaceChildren();
    for (const entry of shown) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.title = "select the " + entry.members.length + " images of " + entry.name;
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = entry.colour;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = entry.name;
      const count = document.createElement("span");
      count.className = "n";
      count.textContent = String(entry.members.length);
      button.append(swatch, name, count);
      button.addEventListener("click", function () {
        shape = null;
        choose(Array.from(entry.members));
      });
      item.append(button);
      legend.append(item);
    }
  }

  // ---------- geometry ----------

  function layout() {
    const width = Math.max(200, wrap.clientWidth);
    const height = Math.max(200, wrap.clientHeight);
    const ratio = window.devicePixelRatio || 1;
    for (const layer of [canvas, base]) {
      layer.width = Math.round(width * ratio);
      layer.height = Math.round(height * ratio);
    }
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (let i = 0; i < n; i++) {
      x0 = Math.min(x0, mapX[i]); x1 = Math.max(x1, mapX[i]);
      y0 = Math.min(y0, mapY[i]); y1 = Math.max(y1, mapY[i]);
    }
    // one scale for both axes: the map's distances keep their proportions
    const span = Math.max(x1 - x0, y1 - y0) || 1;
    const scale = Math.min((width - 2 * PAD) / (x1 - x0 || span),
      (height - 2 * PAD) / (y1 - y0 || span));
    const left = (width - (x1 - x0) * scale) / 2;
    const top = (height - (y1 - y0) * scale) / 2;
    for (let i = 0; i < n; i++) {
      fitX[i] = left + (mapX[i] - x0) * scale;
      fitY[i] = top + (y1 - mapY[i]) * scale;  // north up
    }
    fitRadius = n > 10000 ? 1.6 : n > 2000 ? 2.2 : n > 300 ? 3 : 5;
    zoom = {scale: 1, x: 0, y: 0};
    whole.hidden = true;
    project();
    // points pushed apart may reach past the edge: the map is drawn in a little closer
    for (let round = 0; round < 4; round++) {
      let sx0 = Infinity, sx1 = -Infinity, sy0 = Infinity, sy1 = -Infinity;
      for (let i = 0; i < n; i++) {
        sx0 = Math.min(sx0, screenX[i]); sx1 = Math.max(sx1, screenX[i]);
        sy0 = Math.min(sy0, screenY[i]); sy1 = Math.max(sy1, screenY[i]);
      }
      const inner = PAD / 2 + radius;
      if (sx0 >= inner && sy0 >= inner && sx1 <= width - inner && sy1 <= height - inner) break;
      const shrink = Math.min(1, (width - 2 * inner) / (sx1 - sx0 || 1),
        (height - 2 * inner) / (sy1 - sy0 || 1)) * 0.98;
      const mx = (sx0 + sx1) / 2, my = (sy0 + sy1) / 2;
      for (let i = 0; i < n; i++) {
        fitX[i] = width / 2 + (fitX[i] - mx) * shrink;
        fitY[i] = height / 2 + (fitY[i] - my) * shrink;
      }
      project();
    }
  }

  // A map often puts a group of alike images within a few pixels (UMAP keeps neighbourhoods,
  // not distances): past a few thousand points their density shows, but a few hundred would
  // hide each other. Overlapping points are pushed apart until each shows, a few pixels from
  // its place; zooming in brings the map's own layout back.
  function spreadOut() {
    if (n > STAMPED) return;
    const gap = 2 * radius + 1;
    for (let round = 0; round < 40; round++) {
      const cells = new Map();
      for (let i = 0; i < n; i++) {
        const key = (Math.floor(screenX[i] / gap) + 32768) * 65536 + Math.floor(screenY[i] / gap) + 32768;
        const bucket = cells.get(key);
        if (bucket) bucket.push(i); else cells.set(key, [i]);
      }
      let moved = false;
      for (let i = 0; i < n; i++) {
        const gx = Math.floor(screenX[i] / gap) + 32768, gy = Math.floor(screenY[i] / gap) + 32768;
        for (let dx = -1; dx <= 1; dx++) {
          for (let dy = -1; dy <= 1; dy++) {
            const bucket = cells.get((gx + dx) * 65536 + gy + dy);
            if (!bucket) continue;
            for (const j of bucket) {
              if (j <= i) continue;
              let ex = screenX[j] - screenX[i], ey = screenY[j] - screenY[i];
              let distance = Math.hypot(ex, ey);
              if (distance >= gap) continue;
              if (distance < 1e-3) {  // the same place: apart along a fixed angle per pair
                const angle = 2.399963 * (i + j);
                ex = Math.cos(angle); ey = Math.sin(angle); distance = 1;
              }
              const push = (gap - distance) / (2 * distance);
              screenX[i] -= ex * push; screenY[i] -= ey * push;
              screenX[j] += ex * push; screenY[j] += ey * push;
              moved = true;
            }
          }
        }
      }
      if (!moved) break;
    }
  }

  function cell(x, y) {  // the hover grid's key of a position
    return (Math.floor(x / gridCell) + 32768) * 65536 + Math.floor(y / gridCell) + 32768;
  }

  // Shown positions from the fitted ones and the zoom; the hover grid over them.
  function project() {
    for (let i = 0; i < n; i++) {
      screenX[i] = fitX[i] * zoom.scale + zoom.x;
      screenY[i] = fitY[i] * zoom.scale + zoom.y;
    }
    radius = fitRadius * Math.min(2.5, Math.sqrt(zoom.scale));
    spreadOut();
    gridCell = Math.max(8, 4 * radius);
    grid = new Map();
    for (let i = 0; i < n; i++) {
      const key = cell(screenX[i], screenY[i]);
      const bucket = grid.get(key);
      if (bucket) bucket.push(i); else grid.set(key, [i]);
    }
    shape = null;
  }

  // ---------- drawing ----------

  const STAMPED = 3000;  // past this many points, points are stamped into the pixels
  const OPACITY = [0.2, 0.9];  // the points the table hides, faint; then the shown ones
  let pixels = null;

  function drawPoints() {
    const ratio = base.width / parseFloat(canvas.style.width);
    const context = base.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, base.width, base.height);
    if (n > STAMPED) stampPoints(context, ratio); else fillPoints(context, ratio);
    compose();
  }

  // Few points: a path of discs per colour, each with a light rim that keeps overlapping
  // points apart.
  function fillPoints(context, ratio) {
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    const r = radius;
    for (const pass of [0, 1]) {
      context.globalAlpha = OPACITY[pass];
      for (const entry of categories) {
        context.fillStyle = entry.colour;
        context.beginPath();
        const members = entry.members;
        for (let k = 0; k < members.length; k++) {
          const i = members[k];
          if (active[i] !== pass) continue;
          context.moveTo(screenX[i] + r, screenY[i]);
          context.arc(screenX[i], screenY[i], r, 0, 2 * Math.PI);
        }
        context.fill();
        if (pass) {
          context.lineWidth = 0.8;
          context.strokeStyle = "rgba(255,255,255,0.9)";
          context.stroke();
        }
      }
    }
    context.globalAlpha = 1;
  }

  // Many points: filling a path of thousands of arcs takes a software rasterizer about
  // 100 ms at 20 000 points; stamping an antialiased disk into the pixels, blended over
  // what is there, takes a few (benchmarks/report_map.py).
  function stampPoints(context, ratio) {
    const width = base.width, height = base.height;
    if (!pixels || pixels.width !== width || pixels.height !== height) {
      pixels = context.createImageData(width, height);
    }
    const data = pixels.data;
    data.fill(0);
    const r = radius * ratio;
    const reach = Math.ceil(r + 0.5);
    const side = 2 * reach + 1;
    const mask = new Float32Array(side * side);
    for (let dy = -reach; dy <= reach; dy++) {
      for (let dx = -reach; dx <= reach; dx++) {
        const cover = r + 0.5 - Math.hypot(dx, dy);
        mask[(dy + reach) * side + dx + reach] = Math.max(0, Math.min(1, cover));
      }
    }
    for (const pass of [0, 1]) {
      for (const entry of categories) {
        const colour = parseInt(entry.colour.slice(1), 16);
        const red = colour >> 16, green = (colour >> 8) & 255, blue = colour & 255;
        const members = entry.members;
        for (let k = 0; k < members.length; k++) {
          const i = members[k];
          if (active[i] !== pass) continue;
          const cx = Math.round(screenX[i] * ratio) - reach;
          const cy = Math.round(screenY[i] * ratio) - reach;
          for (let my = 0; my < side; my++) {
            const y = cy + my;
            if (y < 0 || y >= height) continue;
            for (let mx = 0; mx < side; mx++) {
              const x = cx + mx;
              const cover = mask[my * side + mx];
              if (x < 0 || x >= width || cover === 0) continue;
              const at = (y * width + x) * 4;
              const a = cover * OPACITY[pass];
              if (data[at + 3] === 0) {  // nothing under it yet: most pixels
                data[at] = red; data[at + 1] = green; data[at + 2] = blue; data[at + 3] = a * 255;
                continue;
              }
              const under = (data[at + 3] / 255) * (1 - a);
              const out = a + under;
              data[at] = (red * a + data[at] * under) / out;
              data[at + 1] = (green * a + data[at + 1] * under) / out;
              data[at + 2] = (blue * a + data[at + 2] * under) / out;
              data[at + 3] = out * 255;
            }
          }
        }
      }
    }
    context.putImageData(pixels, 0, 0);
  }

  function compose() {
    const ratio = base.width / parseFloat(canvas.style.width);
    const context = canvas.getContext("2d");
    context.setTransform(1, 0, 0, 1, 0, 0);
    context.clearRect(0, 0, canvas.width, canvas.height);
    context.drawImage(base, 0, 0);
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    const outline = drag ? drag.shape : shape;
    if (outline && outline.points.length > 1) {
      context.beginPath();
      outlinePath(context, outline);
      context.fillStyle = "rgba(78,121,167,0.08)";
      context.fill();
      context.setLineDash([5, 4]);
      context.lineWidth = 1.5;
      context.strokeStyle = "#333";
      context.stroke();
      context.setLineDash([]);
    }
    if (focused >= 0) {
      context.beginPath();
      context.arc(screenX[focused], screenY[focused], radius + 5, 0, 2 * Math.PI);
      context.lineWidth = 2.5;
      context.strokeStyle = "#111";
      context.stroke();
    }
  }

  function outlinePath(context, outline) {
    const p = outline.points;
    if (outline.mode === "box") {
      const [a, b] = [p[0], p[p.length - 1]];
      context.rect(Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.abs(b[0] - a[0]),
        Math.abs(b[1] - a[1]));
      return;
    }
    context.moveTo(p[0][0], p[0][1]);
    for (let k = 1; k < p.length; k++) context.lineTo(p[k][0], p[k][1]);
    context.closePath();
  }

  function redraw() {
    drawPoints();
  }

  // ---------- the table's filter and the selection ----------

  function showHits(hits) {
    active.fill(0);
    for (const row of hits) if (row.p >= 0) active[row.p] = 1;
    drawPoints();
    const chosen = report.selection;
    clear.disabled = chosen === null;
    status.textContent = n + " images on the map" +
      (chosen === null ? "" : " · " + chosen.size + " selected");
  }

  function choose(points) {
    const chosen = new Set();
    for (const i of points) chosen.add(rows[i].d.index);
    report.select(chosen);
  }

  function inside(outline) {
    const p = outline.points;
    const found = [];
    if (outline.mode === "box") {
      const [a, b] = [p[0], p[p.length - 1]];
      const [x0, x1] = [Math.min(a[0], b[0]), Math.max(a[0], b[0])];
      const [y0, y1] = [Math.min(a[1], b[1]), Math.max(a[1], b[1])];
      for (let i = 0; i < n; i++) {
        if (screenX[i] >= x0 && screenX[i] <= x1 && screenY[i] >= y0 && screenY[i] <= y1) {
          found.push(i);
        }
      }
      return found;
    }
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const [x, y] of p) {
      x0 = Math.min(x0, x); x1 = Math.max(x1, x); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    for (let i = 0; i < n; i++) {
      const x = screenX[i], y = screenY[i];
      if (x < x0 || x > x1 || y < y0 || y > y1) continue;
      let odd = false;  // even-odd rule: crossings of a ray to the right
      for (let k = 0, j = p.length - 1; k < p.length; j = k++) {
        const [xk, yk] = p[k], [xj, yj] = p[j];
        if ((yk > y) !== (yj > y) && x < ((xj - xk) * (y - yk)) / (yj - yk) + xk) odd = !odd;
      }
      if (odd) found.push(i);
    }
    return found;
  }

  // ---------- hover and pointer ----------

  function nearest(x, y) {
    const reach = Math.max(6, radius + 3);
    let best = -1, bestDistance = reach * reach;
    for (let dx = -1; dx <= 1; dx++) {
      for (let dy = -1; dy <= 1; dy++) {
        const bucket = grid.get(cell(x + dx * gridCell, y + dy * gridCell));
        if (!bucket) continue;
        for (const i of bucket) {
          const distance = (screenX[i] - x) ** 2 + (screenY[i] - y) ** 2;
          // a shown point wins over a faint one at the same distance
          if (distance < bestDistance || (distance === bestDistance && active[i])) {
            best = i; bestDistance = distance;
          }
        }
      }
    }
    return best;
  }

  function position(event) {
    const rect = canvas.getBoundingClientRect();
    return [event.clientX - rect.left, event.clientY - rect.top];
  }

  function showTip(i, x, y) {
    if (i < 0) { tip.hidden = true; canvas.style.cursor = "crosshair"; return; }
    canvas.style.cursor = "pointer";
    const d = rows[i].d;
    tip.replaceChildren();
    const source = report.image ? report.image(rows[i]) : null;
    if (source) {
      const picture = document.createElement("img");
      picture.alt = "";
      picture.src = source;
      tip.append(picture);
    }
    const lines = [d.name];
    if (d.label_name) lines.push("label: " + d.label_name);
    if (d.predicted_name) {
      lines.push("predicted: " + d.predicted_name +
        (d.confidence === null || d.confidence === undefined ? "" : " (" + (+d.confidence).toFixed(2) + ")"));
    }
    const extra = [];
    if (d.cluster !== null && d.cluster !== undefined) extra.push(d.cluster < 0 ? "no cluster" : "cluster " + d.cluster);
    const tags = (d.flags || []).slice();
    if (d.label_issue) tags.push("label issue");
    if (d.near_duplicate_of) tags.push("copy of " + d.near_duplicate_of);
    if (extra.length) lines.push(extra.join(" · "));
    if (tags.length) lines.push(tags.join(", "));
    lines.forEach(function (text, k) {
      const line = document.createElement(k ? "span" : "b");
      line.textContent = text;
      tip.append(line);
    });
    tip.hidden = false;
    const width = wrap.clientWidth, height = wrap.clientHeight;
    const right = x + 16 + tip.offsetWidth > width;
    const below = y + 16 + tip.offsetHeight > height;
    tip.style.left = (right ? Math.max(0, x - 12 - tip.offsetWidth) : x + 14) + "px";
    tip.style.top = (below ? Math.max(0, y - 12 - tip.offsetHeight) : y + 14) + "px";
  }

  function mode() {
    return document.getElementById("map-mode-lasso").checked ? "lasso" : "box";
  }

  canvas.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) return;
    event.preventDefault();
    const at = position(event);
    drag = {start: at, moved: false, shape: {mode: mode(), points: [at]}};
    try { canvas.setPointerCapture(event.pointerId); } catch (_) { /* a synthetic pointer */ }
    tip.hidden = true;
  });
  canvas.addEventListener("pointermove", function (event) {
    const at = position(event);
    if (!drag) { showTip(nearest(at[0], at[1]), at[0], at[1]); return; }
    if (Math.hypot(at[0] - drag.start[0], at[1] - drag.start[1]) > 3) drag.moved = true;
    const points = drag.shape.points;
    if (drag.shape.mode === "box") points[1] = at; else points.push(at);
    compose();
  });
  canvas.addEventListener("pointerup", function (event) {
    if (!drag) return;
    const at = position(event);
    const done = drag;
    drag = null;
    if (!done.moved) {
      compose();
      const hit = nearest(at[0], at[1]);
      if (hit >= 0 && report.open) report.open(rows[hit].d.index);
      return;
    }
    if (done.shape.mode === "box") done.shape.points[1] = at; else done.shape.points.push(at);
    shape = done.shape;
    choose(inside(shape));
  });
  canvas.addEventListener("pointerleave", function () { if (!drag) tip.hidden = true; });
  canvas.addEventListener("pointercancel", function () { drag = null; compose(); });
  clear.addEventListener("click", function () { shape = null; report.select(null); });
  // The wheel zooms about the pointer; "whole map" undoes it.
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    const [x, y] = position(event);
    const factor = Math.exp(-event.deltaY * 0.0015);
    const scale = Math.min(200, Math.max(1, zoom.scale * factor));
    const applied = scale / zoom.scale;
    zoom = {scale: scale, x: x - (x - zoom.x) * applied, y: y - (y - zoom.y) * applied};
    if (scale === 1) zoom = {scale: 1, x: 0, y: 0};
    shape = null;
    project();
    drawPoints();
    whole.hidden = zoom.scale === 1;
  }, {passive: false});
  whole.addEventListener("click", function () {
    zoom = {scale: 1, x: 0, y: 0};
    shape = null;
    project();
    drawPoints();
    whole.hidden = true;
  });
  colourBy.addEventListener("change", function () { colour(colourBy.value); drawPoints(); });

  // The detail view marks its image on the map.
  report.focus = function (index) {
    focused = -1;
    for (let i = 0; i < n; i++) if (rows[i].d.index === index) focused = i;
    compose();
  };

  function resize() { layout(); drawPoints(); }
  if (window.ResizeObserver) new ResizeObserver(resize).observe(wrap);
  else window.addEventListener("resize", resize);
  colour(colourBy.value);
  layout();
  report.views.push(showHits);
  showHits(report.shown());

  // For tests and benchmarks: where a row's point is on the screen, and one full redraw.
  window.cnnlensMap = {
    redraw: redraw,
    point: function (index) {
      for (let i = 0; i < n; i++) {
        if (rows[i].d.index === index) {
          const rect = canvas.getBoundingClientRect();
          return [rect.left + screenX[i], rect.top + screenY[i]];
        }
      }
      return null;
    },
    legend: function () {
      return legendEntries.map(function (e) {
        return {name: e.name, colour: e.colour, count: e.members.length};
      });
    },
  };
})();

// The report's detail view of one row: its overlays at full size and its nearest images with
// their thumbnails, in a dialog opened by the row's name, a click on its thumbnail or its map
// point, or a link to #image-INDEX (the neighbours link to each other the same way). Every
// row has one, embedded or not: an overlay comes from its file (or the service's route), a
// thumbnail is the embedded copy where the row has one, else a served or overlay image.
(function () {
  "use strict";
  const report = window.cnnlensReport;
  const dialog = document.getElementById("detail");
  if (!report || !dialog) return;
  const title = document.getElementById("detail-title");
  const body = document.getElementById("detail-body");
  const byIndex = new Map();
  const byName = new Map();
  for (const row of report.rows) {
    if (!row.d) continue;
    byIndex.set(row.d.index, row);
    byName.set(row.d.name, row);
  }

  // The row's embedded images by kind ("image", or a method's overlay), read from its HTML
  // (a template element: nothing in it loads or runs).
  const pictures = new WeakMap();
  function embedded(row) {
    let found = pictures.get(row);
    if (found === undefined) {
      found = {};
      if (row.h.includes("data-k=")) {
        const template = document.createElement("template");
        template.innerHTML = row.h;
        for (const image of template.content.querySelectorAll("img[data-k]")) {
          found[image.dataset.k] = image.getAttribute("src");
        }
      }
      pictures.set(row, found);
    }
    return found;
  }

  function firstOverlay(row) {
    const links = row.d.o || {};
    const methods = Object.keys(links);
    return methods.length ? links[methods[0]] : null;
  }

  // A small picture of the row: its embedded thumbnail, else a served one, else its overlay.
  report.image = function (row) {
    return embedded(row).image || row.d.u || firstOverlay(row);
  };

  function element(tag, className, text) {
    const made = document.createElement(tag);
    if (className) made.className = className;
    if (text !== undefined) made.textContent = text;
    return made;
  }

  function fixed(value, digits) {
    return value === null || value === undefined ? null : (+value).toFixed(digits);
  }

  function facts(d) {
    const list = element("dl", "facts");
    const add = function (name, value, link) {
      if (value === null || value === undefined || value === "") return;
      list.append(element("dt", null, name));
      const cell = element("dd");
      if (link !== undefined) {
        const anchor = element("a", null, String(value));
        anchor.href = "#image-" + link;
        cell.append(anchor);
      } else {
        cell.textContent = String(value);
      }
      list.append(cell);
    };
    add("label", d.label_name);
    const confidence = fixed(d.confidence, 3);
    add("prediction", d.predicted_name ? d.predicted_name + (confidence ? " (" + confidence + ")" : "") : null);
    add("correct", d.correct === true ? "yes" : d.correct === false ? "no" : null);
    add("flags", (d.flags || []).join(", "));
    add("cluster", d.cluster === null || d.cluster === undefined ? null : d.cluster < 0 ? "none" : d.cluster);
    add("outlier score", fixed(d.outlier_score, 3));
    if (d.near_duplicate_of) {
      const copy = byName.get(d.near_duplicate_of);
      add("near-duplicate of", d.near_duplicate_of, copy ? copy.d.index : undefined);
    }
    const issue = fixed(d.label_issue_score, 3);
    add("label issue", issue === null ? null : (d.label_issue ? "yes, " : "no, ") + "score " + issue);
    return list;
  }

  function overlays(row) {
    const d = row.d;
    const links = d.o || {};
    const pictures = embedded(row);
    const methods = Object.keys(links);
    for (const kind of Object.keys(pictures)) {
      if (kind !== "image" && !methods.includes(kind)) methods.push(kind);
    }
    const box = element("div", "overlays");
    for (const method of methods) {
      const figure = element("figure");
      const picture = element("img", "full");
      picture.alt = method + " overlay of " + d.name;
      const fallback = pictures[method];
      picture.dataset.method = method;
      if (links[method]) {
        picture.src = links[method];
        // the file may be gone (a report copied without its overlays/): the embedded copy
        picture.addEventListener("error", function () {
          if (fallback && picture.getAttribute("src") !== fallback) {
            picture.src = fallback;
            picture.dataset.fallback = "true";
          }
        }, {once: true});
      } else {
        picture.src = fallback;
      }
      const caption = element("figcaption", null, method + " ");
      if (links[method]) {
        const open = element("a", null, "open the file");
        open.href = links[method];
        open.target = "_blank";
        open.rel = "noopener";
        caption.append(open);
      }
      figure.append(picture, caption);
      box.append(figure);
    }
    if (!methods.length) box.append(element("p", "hint", "no overlay for this image"));
    return box;
  }

  function neighbours(d) {
    const found = d.neighbors || [];
    const box = element("div", "neighbours-box");
    if (!found.length) return box;
    box.append(element("h3", null, "Nearest images (distance = 1 − cosine of the feature vectors)"));
    const list = element("ol", "neighbours");
    for (const entry of found) {
      const row = byIndex.get(entry.index);
      const item = element("li");
      const link = element("a");
      link.href = "#image-" + entry.index;
      const source = row ? report.image(row) : null;
      if (source) {
        const picture = element("img");
        picture.alt = "";
        picture.src = source;
        link.append(picture);
      }
      link.append(element("b", null, entry.name));
      link.append(element("span", null, "distance " + (+entry.distance).toFixed(3)));
      if (row && row.d.label_name) link.append(element("span", null, "label: " + row.d.label_name));
      if (row && row.d.predicted_name) {
        link.append(element("span", null, "predicted: " + row.d.predicted_name));
      }
      item.append(link);
      list.append(item);
    }
    box.append(list);
    return box;
  }

  function show(index) {
    const row = byIndex.get(index);
    if (!row) return false;
    const d = row.d;
    title.textContent = d.name;
    dialog.dataset.index = String(index);
    const top = element("div", "detail-top");
    const thumbnail = embedded(row).image || d.u;
    if (thumbnail) {
      const picture = element("img", "thumb");
      picture.alt = d.name;
      picture.src = thumbnail;
      top.append(picture);
    }
    top.append(facts(d));
    body.replaceChildren(top, overlays(row), neighbours(d));
    if (!dialog.open) dialog.showModal();
    dialog.scrollTop = 0;
    if (report.focus) report.focus(index);
    return true;
  }

  report.open = function (index) {
    if (show(index)) history.replaceState(null, "", "#image-" + index);
  };

  function fromHash() {
    const match = /^#image-(\d+)$/.exec(location.hash);
    if (match) show(Number(match[1]));
  }

  dialog.addEventListener("close", function () {
    if (/^#image-\d+$/.test(location.hash)) {
      history.replaceState(null, "", location.pathname + location.search);
    }
    if (report.focus) report.focus(-1);
  });
  document.getElementById("detail-close").addEventListener("click", function () {
    dialog.close();
  });
  // a click on the backdrop (outside the dialog's box) closes it
  dialog.addEventListener("click", function (event) {
    if (event.target !== dialog) return;
    const rect = dialog.getBoundingClientRect();
    const outside = event.clientX < rect.left || event.clientX > rect.right ||
      event.clientY < rect.top || event.clientY > rect.bottom;
    if (outside) dialog.close();
  });
  // links to #image-N anywhere in the report (names in the table, neighbours, copies)
  document.addEventListener("click", function (event) {
    const link = event.target.closest ? event.target.closest("a[href^='#image-']") : null;
    if (link) {
      event.preventDefault();
      report.open(Number(link.getAttribute("href").slice(7)));
      return;
    }
    const picture = event.target.closest ? event.target.closest("#results img.t") : null;
    const line = picture ? picture.closest("tr[data-i]") : null;
    if (line) report.open(Number(line.dataset.i));
  });
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();

// xconv serve: plain JavaScript, no build step, no network beyond this server.
"use strict";
const $ = (id) => document.getElementById(id);
let current = null;        // {file} or {sample}: what the page explains again when a setting changes
let requestNumber = 0;     // answers to superseded requests are dropped
let pending = null;        // the explain request in flight, aborted when a newer one starts
let patterns = null;       // {layer, controller}: the filter patterns in flight, aborted for another layer

async function getJSON(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error((await response.json()).error || response.statusText);
  return response.json();
}

function option(select, value, text, selected) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text;
  element.selected = !!selected;
  select.appendChild(element);
}

async function start() {
  const [[model], methods, samples] = await Promise.all(
    [getJSON("/api/models"), getJSON("/api/methods"), getJSON("/api/samples")]);
  $("model-name").textContent = model.name;
  for (const method of methods) option($("method"), method.name, method.name, method.name === "gradcam");
  const shown = model.layers[Math.floor(model.layers.length / 3)];  // a middle layer: shapes, not pixels
  for (const layer of model.layers) option($("layer"), layer, layer, layer === shown);
  for (const name of samples) option($("sample"), name, name);
  $("file").addEventListener("change", () => { if ($("file").files[0]) choose({file: $("file").files[0]}); });
  $("sample").addEventListener("change", () => { if ($("sample").value) choose({sample: $("sample").value}); });
  for (const id of ["method", "layer", "grid"]) $(id).addEventListener("change", () => current && explain());
  // With a photo, explain() asks for the patterns once its answer is in: sent together, the ascent (its
  // request has no upload) reached the model first and the new layer's heatmaps waited for all of it.
  $("layer").addEventListener("change", () => current || showFilters());
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files[0]) choose({file: event.dataTransfer.files[0]});
  });
  document.body.dataset.ready = "true";
}

let objectURL = null;       // the chosen file's preview, released when another photo is chosen

function choose(input) {
  current = input;
  if (objectURL) URL.revokeObjectURL(objectURL);
  objectURL = input.file ? URL.createObjectURL(input.file) : null;
  $("photo").src = input.file ? objectURL : `/api/samples/${encodeURIComponent(input.sample)}`;
  clearAnswer();  // the last photo's prediction and maps must not sit beside the new photo
  explain();
}

function clearAnswer() {
  $("prediction").textContent = "";
  $("probabilities").replaceChildren();
  $("heatmaps").replaceChildren();
  showActivations(null);
}

function showActivations(grid) {
  $("activation-layer").textContent = grid ? grid.layer : "";
  if (grid) $("activations").src = grid.png; else $("activations").removeAttribute("src");
  $("activations").hidden = !grid;
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

async function explain() {
  const number = ++requestNumber;
  const form = new FormData();
  if (current.file) form.append("file", current.file); else form.append("sample", current.sample);
  form.append("method", $("method").value);
  form.append("activations", $("layer").value);
  form.append("grid", $("grid").checked ? "true" : "false");
  showError("");
  $("status").textContent = "explaining...";
  document.body.dataset.state = "busy";
  if (pending) pending.abort();  // the server then drops its queued work instead of computing it
  pending = new AbortController();
  try {
    const response = await fetch("/api/explain", {method: "POST", body: form, signal: pending.signal});
    const answer = await response.json();
    if (number !== requestNumber) return;
    if (!response.ok) throw new Error(answer.error || response.statusText);
    show(answer);
    $("status").textContent = "";
    document.body.dataset.state = "done";
    showFilters();
  } catch (error) {
    if (number !== requestNumber) return;
    $("status").textContent = "";
    $("result").hidden = true;
    showError(error.message);
    document.body.dataset.state = "error";
    showFilters();  // the patterns do not depend on the photo that failed
  }
}

function show(answer) {
  $("result").hidden = false;
  $("prediction").textContent = `${answer.label} ${answer.probability.toFixed(3)}`;
  const list = $("probabilities");
  list.replaceChildren();
  for (const row of answer.probabilities) {
    const item = document.createElement("li");
    item.textContent = `${row.class}: ${row.probability.toFixed(3)}`;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${Math.max(1, row.probability * 100)}%`;
    item.appendChild(bar);
    list.appendChild(item);
  }
  $("heatmap-caption").textContent = `${answer.method}${answer.layer ? " at " + answer.layer : ""}`;
  const gallery = $("heatmaps");
  gallery.replaceChildren();
  for (const heatmap of answer.heatmaps) {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.src = heatmap.png;
    image.alt = `${answer.method} heatmap for ${heatmap.class}`;
    const caption = document.createElement("figcaption");
    caption.textContent = `${heatmap.class} ${heatmap.probability.toFixed(3)}`;
    figure.append(image, caption);
    gallery.appendChild(figure);
  }
  showActivations(answer.activations);  // none: the last answer's grid would pass for this one's
}

async function showFilters() {
  const layer = $("layer").value;
  if (patterns && patterns.layer === layer) return;  // already on its way
  // Stepping through the layers would otherwise queue an ascent per layer on the server, ahead of the
  // heatmaps of the layer finally chosen; aborted, the server stops the ascent at its next step.
  if (patterns) patterns.controller.abort();
  const request = patterns = {layer, controller: new AbortController()};
  $("filters-card").hidden = false;
  $("filters-layer").textContent = layer + " (computing...)";
  document.body.dataset.filters = "busy";
  try {
    const response = await fetch(`/api/filters?layer=${encodeURIComponent(layer)}`,
                                 {signal: request.controller.signal});
    const answer = await response.json();
    if (request !== patterns) return;
    if (!response.ok) throw new Error(answer.error || response.statusText);
    $("filters-layer").textContent = answer.layer;
    $("filters").src = answer.png;
    document.body.dataset.filters = "done";
  } catch (error) {
    if (request !== patterns) return;  // aborted for another layer
    $("filters-layer").textContent = layer;
    $("filters").removeAttribute("src");  // the previous layer's patterns under this layer's name
    showError(error.message);
    document.body.dataset.filters = "error";
  } finally {
    if (request === patterns) patterns = null;
  }
}

start().catch((error) => showError(error.message));

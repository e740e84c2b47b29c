// The robusthash page: drop an image, POST it to /v1/query, show the query next to the
// registered images each method found. No libraries: nothing is fetched from elsewhere.
// Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const KEY_STORAGE = "robusthash-api-key";
const $ = (id) => document.getElementById(id);
let objectUrls = [];  // previews of the last result, released when the next one replaces it

function apiKey() {
  return $("api-key").value.trim();
}

function authHeaders() {
  const key = apiKey();
  return key ? { "X-API-Key": key } : {};
}

function showMessage(text, isError) {
  const message = $("message");
  message.textContent = text;
  message.className = isError ? "error" : "";
}

// The service answers {"detail": "..."}; validation errors carry a list of them.
function describeDetail(detail) {
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  }
  return String(detail ?? "");
}

function explainError(status, detail) {
  const text = describeDetail(detail);
  switch (status) {
    case 401: return `The API key was refused (401): ${text}`;
    case 413: return `The upload is too large (413): ${text}`;
    case 422: return `The upload could not be used (422): ${text}`;
    case 429: return `Too many requests (429): ${text}`;
    default: return `The service answered ${status}: ${text || "no details"}`;
  }
}

async function errorText(response) {
  let detail = response.statusText;
  try {
    detail = (await response.json()).detail;
  } catch (_) { /* not JSON: keep the status text */ }
  return explainError(response.status, detail);
}

function releasePreviews() {
  objectUrls.forEach((url) => URL.revokeObjectURL(url));
  objectUrls = [];
}

function preview(blob) {
  const url = URL.createObjectURL(blob);
  objectUrls.push(url);
  return url;
}

async function query(file) {
  releasePreviews();
  $("result").hidden = true;
  $("explained").hidden = true;
  showMessage(`Looking up ${file.name}…`, false);
  const body = new FormData();
  body.append("file", file, file.name);
  let response;
  try {
    response = await fetch("/v1/query", { method: "POST", headers: authHeaders(), body });
  } catch (error) {
    // A body far over the upload limit may be cut off before the answer can be read.
    showMessage(`The service could not be reached, or closed the connection (${error.message}). ` +
                "A file far over the upload limit is refused this way.", true);
    return;
  }
  if (!response.ok) {
    showMessage(await errorText(response), true);
    return;
  }
  const result = await response.json();
  showResult(file, result);
  showMessage("", false);
  await explainMatches(file, result.matched_image_ids);
}

// For each matched original, ask the image comparator what changed (same picture,
// edited and where, or different) and show its picture; one request per original, in
// turn, so a query with many matches stays within the rate limit.
async function explainMatches(file, imageIds) {
  const list = $("explanations");
  list.replaceChildren();
  $("explained").hidden = imageIds.length === 0;
  for (const imageId of imageIds) {
    const item = document.createElement("figure");
    item.className = "explanation";
    item.dataset.imageId = imageId;
    const caption = document.createElement("figcaption");
    caption.textContent = `image ${imageId}: comparing…`;
    item.append(caption);
    list.append(item);
    const body = new FormData();
    body.append("file", file, file.name);
    let text, label;
    try {
      const response = await fetch(`/v1/images/${imageId}/explain`, { method: "POST", headers: authHeaders(), body });
      if (!response.ok) {
        caption.textContent = `image ${imageId}: ${await errorText(response)}`;
        caption.className = "error";
        continue;
      }
      const answer = await response.json();
      label = answer.label;
      text = `${answer.label} (p ${answer.probabilities[answer.label].toFixed(2)})`;
      if (answer.label === "edited") text += `, ${answer.edited_cells.length} of 49 cells marked`;
      caption.textContent = `image ${imageId}: ${text}`;
      caption.className = `verdict-${answer.label}`;
      if (answer.picture) {
        const img = document.createElement("img");
        img.alt = `the query against registered image ${imageId}, edits marked in red`;
        img.src = `data:image/png;base64,${answer.picture}`;
        item.prepend(img);
      }
    } catch (error) {
      caption.textContent = `image ${imageId}: the comparison failed (${error.message})`;
      caption.className = "error";
      continue;
    }
    document.querySelectorAll(`figure.match[data-image-id="${imageId}"]`).forEach((card) => {
      const verdict = document.createElement("p");
      verdict.className = `verdict verdict-${label}`;
      verdict.textContent = `comparator: ${text}`;
      card.querySelector("figcaption").append(verdict);
    });
  }
}

function showResult(file, result) {
  $("query-preview").src = preview(file);
  $("query-name").textContent = file.name;
  const decision = $("decision");
  decision.textContent = result.verdict;
  decision.className = `decision-${result.verdict.replace(" ", "-")}`;
  const named = $("verdict-matches");
  named.replaceChildren(...result.matches.map((m) => {
    const item = document.createElement("li");
    item.className = "verdict-match";
    const name = document.createElement("strong");
    name.textContent = m.source.split(/[\\/]/).pop() || m.source;
    name.title = m.source;
    item.append(name, ` (image ${m.image_id}): ${m.reason}`);
    return item;
  }));
  if (result.refused) {
    const item = document.createElement("li");
    item.textContent = `The query ${result.refused}.`;
    named.append(item);
  }
  showRegions(result);
  const confirmed = new Set(result.matched_image_ids);
  const methods = $("methods");
  methods.replaceChildren(...result.results.map((r) => methodSection(r, confirmed)));
  $("result").hidden = false;
}

// Where in the query each original of a montage was found, drawn over the preview.
function showRegions(result) {
  const frame = $("query-frame");
  frame.querySelectorAll(".region").forEach((box) => box.remove());
  if (result.verdict !== "montage") return;
  const img = $("query-preview");
  const draw = () => {
    result.matches.filter((m) => m.region).forEach((m) => {
      const [x0, y0, x1, y1] = m.region;
      const box = document.createElement("div");
      box.className = "region";
      box.style.left = `${(100 * x0) / img.naturalWidth}%`;
      box.style.top = `${(100 * y0) / img.naturalHeight}%`;
      box.style.width = `${(100 * (x1 - x0)) / img.naturalWidth}%`;
      box.style.height = `${(100 * (y1 - y0)) / img.naturalHeight}%`;
      const label = document.createElement("span");
      label.textContent = m.source.split(/[\\/]/).pop() || m.source;
      box.append(label);
      frame.append(box);
    });
  };
  if (img.complete && img.naturalWidth) draw(); else img.addEventListener("load", draw, { once: true });
}

function methodSection(result, confirmed) {
  const section = document.createElement("section");
  section.className = "method";
  const heading = document.createElement("h3");
  const unconfirmed = result.matches.some((m) => m.matched && !confirmed.has(m.image_id));
  heading.textContent = `${result.method}: ${result.decision}` + (unconfirmed ? " (not confirmed by the verdict)" : "");
  heading.className = result.matched && !unconfirmed ? "decision-match" : "decision-no-match";
  const matches = document.createElement("div");
  matches.className = "matches";
  if (result.matches.length === 0) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "No registered image is near.";
    matches.append(empty);
  }
  result.matches.forEach((match) => matches.append(matchCard(match, confirmed)));
  section.append(heading, matches);
  return section;
}

function matchCard(match, confirmed) {
  const card = document.createElement("figure");
  const agreed = match.matched && confirmed.has(match.image_id);
  card.className = agreed ? "match matched" : match.matched ? "match unconfirmed" : "match";
  card.dataset.imageId = match.image_id;
  const picture = document.createElement("div");
  picture.className = "picture";
  loadThumbnail(match.image_id, picture);
  const caption = document.createElement("figcaption");
  const source = document.createElement("span");
  source.className = "source";
  source.textContent = match.source.split(/[\\/]/).pop() || match.source;
  source.title = match.source;  // the whole registered path, on hover
  const facts = document.createElement("dl");
  const rows = [
    ["image id", String(match.image_id), "image-id"],
    ["NHD", match.distance.toFixed(4), "nhd"],
    ["Hamming", match.hamming === null ? "—" : String(match.hamming), "hamming"],
    ["decision", agreed ? "match" : match.matched ? "match, not verified" : "no match", "match-decision"],
  ];
  rows.forEach(([label, value, cls]) => {
    const dt = document.createElement("dt");
    dt.textContent = label;
    const dd = document.createElement("dd");
    dd.textContent = value;
    dd.className = cls;
    facts.append(dt, dd);
  });
  const rule = document.createElement("p");
  rule.className = "rule";
  rule.textContent = match.rule;
  caption.append(source, facts, rule);
  card.append(picture, caption);
  return card;
}

// Thumbnails need the API key too, and an <img src> cannot send a header: fetch the
// JPEG and show it from a blob: URL.
async function loadThumbnail(imageId, container) {
  let reason = "no preview";
  try {
    const response = await fetch(`/v1/images/${imageId}/thumbnail`, { headers: authHeaders() });
    if (response.ok) {
      const img = document.createElement("img");
      img.alt = `registered image ${imageId}`;
      img.src = preview(await response.blob());
      container.replaceChildren(img);
      return;
    }
    reason = describeDetail((await response.json()).detail);
  } catch (error) {
    reason = error.message;
  }
  const missing = document.createElement("div");
  missing.className = "no-preview";
  missing.textContent = "no preview";
  missing.title = reason;
  container.replaceChildren(missing);
}

function setUp() {
  const keyInput = $("api-key");
  keyInput.value = sessionStorage.getItem(KEY_STORAGE) || "";
  keyInput.addEventListener("input", () => sessionStorage.setItem(KEY_STORAGE, keyInput.value));

  const fileInput = $("file");
  fileInput.addEventListener("change", () => {
    const file = fileInput.files[0];
    fileInput.value = "";  // so that choosing the same file again asks again
    if (file) query(file);
  });

  const drop = $("drop");
  ["dragenter", "dragover"].forEach((kind) => drop.addEventListener(kind, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((kind) => drop.addEventListener(kind, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) query(file);
  });
  // A file dropped beside the zone would otherwise make the browser navigate away to it.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
}

setUp();

"""The search page served at ``/``: plain HTML and JavaScript, no build step, nothing loaded from elsewhere.

A search box (``/?q=...`` fills it and searches, so a link or a headless browser can run a query), an image
upload, a rerank toggle, and a grid of results with thumbnails, scores, captions and ids.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>mmzoo search</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f6f6f4; color: #222; }
  header { background: #1f3a5f; color: #fff; padding: 12px 20px; display: flex; gap: 16px; align-items: center;
           flex-wrap: wrap; }
  header h1 { font-size: 18px; margin: 0 12px 0 0; }
  form { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
  input[type=text] { width: 360px; padding: 6px 8px; font-size: 15px; border-radius: 4px; border: 1px solid #ccc; }
  button, label.up { padding: 6px 12px; font-size: 14px; border-radius: 4px; border: 0; background: #f0b429;
                     color: #222; cursor: pointer; }
  #status { padding: 8px 20px; font-size: 13px; color: #555; min-height: 18px; }
  #status.error { color: #b00020; font-weight: 600; }
  #grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; padding: 0 20px 20px; }
  .card { background: #fff; border-radius: 6px; box-shadow: 0 1px 3px rgba(0,0,0,.15); overflow: hidden; }
  .card img { width: 100%; aspect-ratio: 1; object-fit: cover; display: block; background: #ddd; }
  .card .meta { padding: 6px 8px; font-size: 12px; }
  .card .score { font-weight: 700; color: #1f3a5f; }
  .card .caption { margin-top: 3px; }
  .card .id { color: #888; margin-top: 3px; word-break: break-all; }
</style>
</head>
<body>
<header>
  <h1>mmzoo search</h1>
  <form id="form">
    <input id="q" type="text" name="q" placeholder="describe what you are looking for" autocomplete="off">
    <select id="k" title="results"><option>10</option><option selected>20</option><option>50</option></select>
    <label title="rerank the shortlist with the full model"><input id="rerank" type="checkbox"> rerank</label>
    <button type="submit">Search</button>
    <label class="up">Search by image<input id="file" type="file" accept="image/*" hidden></label>
  </form>
  <span id="info"></span>
</header>
<div id="status"></div>
<div id="grid"></div>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
function show(message, isError) { $("status").textContent = message; $("status").className = isError ? "error" : ""; }
let asked = "";
function render(data) {
  const grid = $("grid");
  grid.replaceChildren();
  for (const hit of data.results) {
    const card = document.createElement("div");
    card.className = "card";
    card.dataset.id = hit.id;
    if (hit.path) {
      const img = document.createElement("img");
      img.src = "/items/" + encodeURIComponent(hit.id) + "/image";
      img.alt = hit.caption || hit.key;
      card.append(img);
    }
    const meta = document.createElement("div");
    meta.className = "meta";
    const score = document.createElement("div");
    score.className = "score";
    score.textContent = hit.score === null ? "-" : hit.score.toFixed(4);
    const caption = document.createElement("div");
    caption.className = "caption";
    caption.textContent = hit.caption || "";
    const id = document.createElement("div");
    id.className = "id";
    id.textContent = "#" + hit.id + " " + hit.key;
    meta.append(score, caption, id);
    card.append(meta);
    grid.append(card);
  }
  const t = data.timings;
  show(data.results.length + " results of " + data.count + " for " + asked + (data.reranked ? " (reranked)" : "") + " in " +
       t.total.toFixed(1) + " ms (encode " + t.encode.toFixed(1) + ", ANN " + t.ann.toFixed(1) +
       (t.rerank !== undefined ? ", rerank " + t.rerank.toFixed(1) : "") + ")", false);
  document.body.dataset.state = "done";
}
async function post(body, contentType) {
  show("searching...", false);
  document.body.dataset.state = "busy";
  const k = Number($("k").value), rerank = $("rerank").checked;
  let response;
  try {
    if (contentType === "application/json") {
      response = await fetch("/search", {method: "POST", headers: {"Content-Type": contentType},
                                         body: JSON.stringify({...body, k: k, rerank: rerank})});
    } else {
      response = await fetch("/search?k=" + k + "&rerank=" + rerank, {method: "POST",
                             headers: {"Content-Type": contentType}, body: body});
    }
    const data = await response.json();
    if (!response.ok) { show(data.error || ("error " + response.status), true); document.body.dataset.state = "error"; return; }
    render(data);
  } catch (err) { show("The server did not answer: " + err, true); document.body.dataset.state = "error"; }
}
$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("q").value.trim();
  if (!text) { show("Type what to look for.", true); return; }
  history.replaceState(null, "", "?q=" + encodeURIComponent(text) + ($("rerank").checked ? "&rerank=1" : ""));
  asked = "\u201c" + text + "\u201d";
  post({text: text}, "application/json");
});
$("file").addEventListener("change", () => {
  const file = $("file").files[0];
  if (file) { asked = "the image " + file.name; post(file, file.type || "application/octet-stream"); }
});
fetch("/info").then((r) => r.json()).then((info) => {
  $("info").textContent = info.count + " " + info.kind + " \\u00b7 " + info.model;
  $("q").placeholder = info.kind === "texts" ? "upload an image to find captions" : "describe what you are looking for";
}).catch(() => {});
const params = new URLSearchParams(location.search);
if (params.get("rerank") === "1") $("rerank").checked = true;
if (params.get("k")) $("k").value = params.get("k");
if (params.get("q")) { $("q").value = params.get("q"); $("form").requestSubmit(); }
</script>
</body>
</html>
"""

__all__ = ["PAGE"]

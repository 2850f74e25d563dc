// dfdetect web page: upload files, follow their jobs, show explained verdicts. No build step, no
// dependencies. Everything is built with DOM calls (never innerHTML), so file names cannot inject markup.
"use strict";

const $ = (sel, el = document) => el.querySelector(sel);
const COLOURS = { fake: "#c62828", real: "#2e7d32", uncertain: "#e08600" };
const state = {
  key: localStorage.getItem("dfdetect.key") || "",
  health: null,
  cards: new Map(), // job id -> card element
  polling: new Set(),
};

function h(tag, attrs = {}, ...children) {
  const ns = attrs.svg ? "http://www.w3.org/2000/svg" : null;
  const el = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === null || v === undefined || v === false) continue;
    if (k === "class") el.setAttribute("class", v);
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c);
  return el;
}

const pct = (p) => (p === null || p === undefined ? "–" : `${(100 * p).toFixed(1)} %`);
const secs = (s) => `${Number(s).toFixed(1)} s`;

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error && body.error.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.error ? body.error.code : "http_error";
    this.retryAfter = retryAfter ? Number(retryAfter) : null;
  }
}

async function api(path, opts = {}) {
  const r = await fetch(path, { ...opts, headers: { ...authHeaders(), ...(opts.headers || {}) } });
  const isJson = (r.headers.get("content-type") || "").includes("json");
  const body = isJson ? await r.json().catch(() => null) : await r.text();
  if (!r.ok) {
    if (r.status === 401) showKeyBox();
    throw new ApiError(r.status, isJson ? body : null, r.headers.get("Retry-After"));
  }
  return body;
}

function showError(message) {
  const box = h("div", { class: "error" }, message);
  $("#errors").prepend(box);
  setTimeout(() => box.remove(), 15000);
}

function showKeyBox() {
  $("#key-box").hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Uploads: one request per file, so a bad file is refused alone and the others go on.
// ---------------------------------------------------------------------------------------------

function upload(file, explain, card, attempt = 0) {
  const form = new FormData();
  form.append("file", file, file.name);
  form.append("explain", explain ? "true" : "false");
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "/v1/scans");
  for (const [k, v] of Object.entries(authHeaders())) xhr.setRequestHeader(k, v);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) setProgress(card, e.loaded / e.total, `uploading ${pct(e.loaded / e.total)}`);
  };
  xhr.onerror = () => rejectCard(card, "the upload failed: the server could not be reached");
  xhr.onload = () => {
    let body = null;
    try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
    if (xhr.status === 202 && body && body.jobs) {
      const job = body.jobs[0];
      card.dataset.id = job.id;
      state.cards.set(job.id, card);
      renderJob(card, job);
      poll(job.id);
      return;
    }
    const err = new ApiError(xhr.status, body, xhr.getResponseHeader("Retry-After"));
    if (xhr.status === 401) showKeyBox();
    if (xhr.status === 429 && attempt < 5) {
      const wait = Math.min(60, err.retryAfter || 5);
      setProgress(card, 0, `${err.message} — retrying in ${wait} s`);
      setTimeout(() => upload(file, explain, card, attempt + 1), wait * 1000);
      return;
    }
    rejectCard(card, err.message);
  };
  xhr.send(form);
}

function addFiles(files) {
  const explain = $("#explain").checked;
  for (const file of files) {
    const card = newCard(file.name, "uploading");
    $("#jobs").prepend(card);
    upload(file, explain, card);
  }
  $("#empty").hidden = true;
}

function newCard(name, stateName) {
  const card = h("article", { class: "job" },
    h("div", { class: "head" },
      h("span", { class: "name", text: name }),
      h("span", { class: "meta" }, h("span", { class: `pill state ${stateName}`, text: stateName }))),
    h("div", { class: "progress" }, h("span")),
    h("div", { class: "detail muted small" }),
    h("div", { class: "body" }));
  return card;
}

function setProgress(card, fraction, text) {
  $(".progress > span", card).style.width = `${Math.round(100 * Math.max(0.02, fraction))}%`;
  $(".detail", card).textContent = text || "";
}

function setState(card, name) {
  const pill = $(".pill.state", card);
  pill.className = `pill state ${name}`;
  pill.textContent = name;
  card.dataset.state = name;
}

function rejectCard(card, message) {
  setState(card, "rejected");
  $(".progress", card).hidden = true;
  $(".detail", card).textContent = "";
  $(".body", card).replaceChildren(h("div", { class: "error", text: message }));
}

// ---------------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------------

async function poll(id) {
  if (state.polling.has(id)) return;
  state.polling.add(id);
  try {
    for (;;) {
      const job = await api(`/v1/scans/${id}`);
      const card = state.cards.get(id);
      if (!card) return;
      renderJob(card, job);
      if (job.state === "done" || job.state === "failed") return;
      await new Promise((r) => setTimeout(r, job.state === "running" ? 700 : 1200));
    }
  } catch (e) {
    const card = state.cards.get(id);
    if (card) rejectCard(card, e.message);
  } finally {
    state.polling.delete(id);
  }
}

function renderJob(card, job) {
  setState(card, job.state);
  const meta = $(".meta", card);
  meta.querySelectorAll(".verdict-pill").forEach((x) => x.remove());
  if (job.verdict) {
    const pill = h("span", { class: "pill verdict-pill", text: `${job.verdict} ${pct(job.p_fake)}` });
    pill.style.background = COLOURS[job.verdict];
    meta.prepend(pill);
  } else if (job.state === "done" && job.status) {
    meta.prepend(h("span", { class: "pill verdict-pill", text: job.status }));
  }
  const bar = $(".progress", card);
  if (job.state === "queued") setProgress(card, 0, `queued — ${job.queue_position} ahead`);
  else if (job.state === "running") setProgress(card, job.progress, `scanning… ${secs(job.elapsed || 0)}`);
  else { bar.hidden = true; $(".detail", card).textContent = jobLine(job); }
  const body = $(".body", card);
  if (job.state === "failed") body.replaceChildren(h("div", { class: "error", text: job.error || "failed" }));
  else if (job.prediction) body.replaceChildren(renderPrediction(job));
  else if (job.state === "done" && !body.childElementCount) {
    body.replaceChildren(h("details", { ontoggle: (e) => e.target.open && poll(job.id) },
      h("summary", { text: "show the result" })));
  }
}

function jobLine(job) {
  const when = new Date(job.created * 1000).toLocaleString();
  const took = job.scan_seconds !== undefined ? ` · scanned in ${secs(job.scan_seconds)}` : "";
  return `${job.media_kind} · ${(job.size / 1048576).toFixed(1)} MiB · ${when}${took}`;
}

function renderPrediction(job) {
  const p = job.prediction;
  const verdict = p.verdict || "none";
  const [lo, hi] = (state.health && state.health.thresholds) || [0.35, 0.65];
  const times = (p.timeline || []).map((t) => t[2]);
  const spread = times.length > 1
    ? `per-second p(fake) from ${pct(Math.min(...times))} to ${pct(Math.max(...times))}` : null;
  const banner = h("div", { class: `banner ${verdict}` },
    h("div", { class: "verdict", text: p.verdict || p.status }),
    p.p_fake !== null && p.p_fake !== undefined
      ? h("div", { class: "p-fake" }, pct(p.p_fake), h("small", { text: "p(fake), calibrated" })) : null,
    h("div", { class: "side" },
      h("div", { text: `status: ${p.status}${p.kind ? ` · ${p.kind}` : ""}` }),
      p.uncertainty !== undefined ? h("div", { text: `± ${pct(p.uncertainty)}` }) : null,
      spread ? h("div", { class: "uncertainty", text: spread }) : null,
      h("div", { text: `real ≤ ${lo} < uncertain < ${hi} ≤ fake` })));
  const out = [banner];
  if (p.message) out.push(h("p", { class: "message", text: p.message }));
  const left = [h("h3", { text: "Modality scores" }), modalities(p)];
  const right = [h("h3", { text: "Timeline" }), timeline(p, lo, hi)];
  out.push(h("div", { class: "grid2" }, h("div", {}, left), h("div", {}, right)));
  if ((p.tracks || []).length) out.push(h("h3", { text: "Faces" }), faces(p));
  const cams = heatmaps(p);
  if (cams) out.push(h("h3", { text: "Where the model looked" }), cams);
  if ((p.suspicious || []).length) {
    out.push(h("h3", { text: "Suspicious segments" }), h("ul", {},
      p.suspicious.map(([a, b, q]) => h("li", { text: `${a.toFixed(1)}–${b.toFixed(1)} s: p(fake) ${pct(q)}` }))));
  }
  out.push(h("div", { class: "actions" },
    h("button", { type: "button", class: "report", onclick: () => openReport(job.id), text: "HTML report" }),
    h("button", { type: "button", class: "delete", onclick: () => removeJob(job.id), text: "Delete" })));
  return h("div", {}, out);
}

function modalities(p) {
  const names = Object.keys(p.modality || {});
  if (!names.length) return h("p", { class: "muted small", text: "no modality scores" });
  return h("div", { class: "modalities" }, names.map((name) => {
    const v = p.modality[name];
    const fill = h("span");
    fill.style.width = `${Math.round(100 * v)}%`;
    fill.style.background = v >= 0.5 ? COLOURS.fake : COLOURS.real;
    return h("div", { class: "modrow" }, h("span", { text: name }), h("div", { class: "bar" }, fill),
      h("span", { class: "num", text: v.toFixed(2) }));
  }));
}

function timeline(p, lo, hi) {
  const rows = p.timeline || [];
  if (!rows.length) return h("p", { class: "muted small", text: "no timeline" });
  const W = 480, H = 150, pad = 24;
  const end = Math.max(...rows.map((r) => r[1]), 1);
  const x = (t) => pad + (t / end) * (W - 2 * pad);
  const y = (q) => H - pad - q * (H - 2 * pad);
  const s = { svg: true };
  const svg = h("svg", { ...s, class: "timeline", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "p(fake) per second" });
  svg.append(h("rect", { ...s, x: pad, y: y(hi), width: W - 2 * pad, height: y(lo) - y(hi), fill: "#fff3e0" }));
  for (const [a, b] of p.suspicious || []) {
    svg.append(h("rect", { ...s, x: x(a), y: pad, width: Math.max(1, x(b) - x(a)), height: H - 2 * pad,
      fill: "#fdecea" }));
  }
  for (const [a, b, q] of rows) {
    svg.append(h("rect", { ...s, class: "sec", x: x(a), y: y(q), width: Math.max(1, x(b) - x(a) - 1),
      height: y(0) - y(q), fill: q >= hi ? COLOURS.fake : q <= lo ? COLOURS.real : COLOURS.uncertain,
      opacity: 0.8 }, h("title", { ...s, text: `${a.toFixed(0)}–${b.toFixed(0)} s: ${pct(q)}` })));
  }
  svg.append(h("line", { ...s, x1: pad, x2: W - pad, y1: y(0), y2: y(0), stroke: "#8a96a8" }));
  for (const q of [0, 0.5, 1]) {
    svg.append(h("text", { ...s, x: 2, y: y(q) + 4, "font-size": 10, fill: "#5f6b7a", text: q.toFixed(1) }));
  }
  svg.append(h("text", { ...s, x: W - pad, y: H - 6, "font-size": 10, fill: "#5f6b7a",
    "text-anchor": "end", text: secs(end) }));
  return svg;
}

function faces(p) {
  const thumbs = (p.extras && p.extras.thumbnails) || {};
  return h("div", { class: "faces" }, p.tracks.map((t) => {
    const src = thumbs[String(t.track_id)];
    const img = src && src.startsWith("data:image/") ? h("img", { src, alt: `face ${t.track_id}` }) : null;
    return h("div", { class: `face${t.speaking ? " speaking" : ""}` }, img,
      h("div", {}, h("b", { text: `#${t.track_id} ` }), pct(t.p_fake)),
      h("div", { class: "muted", text: `${t.start.toFixed(1)}–${t.end.toFixed(1)} s` }),
      t.speaking ? h("span", { class: "badge", text: "speaking" }) : null);
  }));
}

function heatmaps(p) {
  const frames = (p.extras && p.extras.explain && p.extras.explain.frames) || [];
  const cards = frames.filter((f) => f.crop && f.crop.startsWith("data:image/")).map((f) =>
    h("div", { class: "cam" },
      h("div", { class: f.overlay ? "pair" : "" }, h("img", { src: f.crop, alt: "face crop" }),
        f.overlay && f.overlay.startsWith("data:image/") ? h("img", { src: f.overlay, alt: "heatmap" }) : null),
      h("div", { class: "cap" }, h("span", { text: `t = ${f.time.toFixed(2)} s · #${f.track_id}` }),
        h("b", { text: pct(f.score) }))));
  return cards.length ? h("div", { class: "cams" }, cards) : null;
}

async function openReport(id) {
  try {
    const r = await fetch(`/v1/scans/${id}/report`, { headers: authHeaders() });
    if (!r.ok) throw new ApiError(r.status, await r.json().catch(() => null));
    const url = URL.createObjectURL(new Blob([await r.text()], { type: "text/html" }));
    window.open(url, "_blank", "noopener");
  } catch (e) {
    showError(`report: ${e.message}`);
  }
}

async function removeJob(id) {
  try {
    await api(`/v1/scans/${id}`, { method: "DELETE" });
    const card = state.cards.get(id);
    if (card) card.remove();
    state.cards.delete(id);
  } catch (e) {
    showError(`delete: ${e.message}`);
  }
}

async function loadJobs() {
  try {
    const { jobs } = await api("/v1/scans?limit=50");
    for (const job of jobs.slice().reverse()) {
      let card = state.cards.get(job.id);
      if (!card) {
        card = newCard(job.filename, job.state);
        card.dataset.id = job.id;
        state.cards.set(job.id, card);
        $("#jobs").prepend(card);
      }
      renderJob(card, job);
      if (job.state === "queued" || job.state === "running") poll(job.id);
    }
    $("#empty").hidden = state.cards.size > 0 || $("#jobs").childElementCount > 0;
  } catch (e) {
    if (e.status !== 401) showError(`could not list the scans: ${e.message}`);
  }
}

async function init() {
  try {
    state.health = await api("/healthz");
    const hz = state.health;
    $("#server").textContent = `model ${hz.model} · ${hz.workers} worker(s) · ${hz.queued} queued · v${hz.version}`;
    if (hz.auth && !state.key) showKeyBox();
    const models = hz.auth && !state.key ? null : await api("/v1/models").catch(() => null);
    if (models) state.health.thresholds = models.loaded.thresholds;
  } catch (e) {
    $("#server").textContent = `server not reachable: ${e.message}`;
  }
  const drop = $("#drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    addFiles(e.dataTransfer.files);
  });
  $("#file-input").addEventListener("change", (e) => { addFiles(e.target.files); e.target.value = ""; });
  $("#save-key").addEventListener("click", () => {
    state.key = $("#api-key").value.trim();
    localStorage.setItem("dfdetect.key", state.key);
    $("#key-box").hidden = true;
    loadJobs();
  });
  $("#refresh").addEventListener("click", loadJobs);
  await loadJobs();
}

document.addEventListener("DOMContentLoaded", init);

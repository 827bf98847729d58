// The watch page: rows kept live from the server's Server-Sent Events, riskiest first.
// Every value from the server is set with textContent or as an attribute, never parsed as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const SPARK_W = 120, SPARK_H = 22;
const state = {
  meta: null, known: new Set(), seen: new Set(), rows: new Map(), dirty: new Set(), lastId: null, open: null,
  scheduled: false, fetching: false, refetch: false,
};
// Read by `dialoguellm bench watch`: when the first sync was on screen, and how long recent draws took
// (script, layout and paint).
const timings = window.watchTimings = { firstSyncMs: null, renderMs: [] };

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

// A context-only turn (a speaker the worker does not label, `--label-speakers`) has a null label:
// grey, "not labelled", no probabilities.
const NOT_LABELLED = "not labelled";

function emotionClass(label) {
  if (label === null) return "e-context";
  return state.known.has(label) ? "e-" + label : "e-other";
}

function setStatus(text, live) {
  const s = document.getElementById("status");
  s.textContent = text;
  s.classList.toggle("live", live);
}

async function start() {
  const reply = await fetch("/api/meta", { credentials: "same-origin" });
  state.meta = await reply.json();
  state.known = new Set(state.meta.labels);
  document.getElementById("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (ev) => { if (ev.key === "Escape") closeDetail(); });
  connect();
}

// The browser reconnects by itself with Last-Event-ID; a connection it gave up on (a refused
// request) is reopened here with the last id in the address, so nothing is missed either way.
function connect() {
  const source = new EventSource(state.lastId ? "/events?last=" + encodeURIComponent(state.lastId) : "/events");
  source.addEventListener("sync", (ev) => receive(ev, JSON.parse(ev.data), true));
  source.addEventListener("update", (ev) => receive(ev, JSON.parse(ev.data), false));
  source.onopen = () => setStatus("live", true);
  source.onerror = () => {
    setStatus("reconnecting…", false);
    if (source.readyState === EventSource.CLOSED) setTimeout(connect, 1000);
  };
}

function receive(ev, data, isSync) {
  state.lastId = ev.lastEventId;
  // The rows the server put in the page are replaced by live ones from the first sync on.
  if (isSync) document.querySelectorAll("#board .first-paint").forEach((row) => row.remove());
  for (const row of data.rows) {
    state.rows.set(row.id, { data: row, el: state.rows.get(row.id)?.el });
    state.dirty.add(row.id);
    for (const t of row.turns) state.seen.add(t[1]);
  }
  const keep = isSync ? new Set(data.keep) : null;
  const gone = isSync ? [...state.rows.keys()].filter((id) => !keep.has(id)) : data.drop;
  for (const id of gone) {
    state.rows.get(id)?.el?.remove();
    state.rows.delete(id);
  }
  if (state.open !== null && (state.dirty.has(state.open) || gone.includes(state.open))) refreshDetail();
  if (isSync) timings.pendingSync = true;
  if (!state.scheduled) {
    state.scheduled = true;
    requestAnimationFrame(render);
  }
}

// One draw per frame whatever the number of events: changed rows are taken out and rebuilt, so
// the others keep their relative order and putting each changed row back is one move.
function render() {
  const t0 = performance.now();
  state.scheduled = false;
  for (const id of state.dirty) {
    const entry = state.rows.get(id);
    if (!entry) continue;
    entry.el?.remove();
    entry.el = drawRow(entry.data, entry.el);
  }
  state.dirty.clear();
  const list = document.querySelector("#board .rows");
  const ordered = [...state.rows.values()].sort(byRisk);
  ordered.forEach((entry, i) => {
    if (list.children[i] !== entry.el) list.insertBefore(entry.el, list.children[i] || null);
  });
  drawLegend();
  document.getElementById("empty").hidden = ordered.length > 0;
  document.getElementById("count").textContent =
    `${ordered.length} conversation${ordered.length === 1 ? "" : "s"} in the last ${state.meta.window_min} min`;
  // A task queued now runs once this frame is laid out and painted.
  const firstSync = timings.pendingSync && timings.firstSyncMs === null;
  timings.pendingSync = false;
  setTimeout(() => {
    const now = performance.now();
    if (firstSync) timings.firstSyncMs = now;
    timings.renderMs.push(now - t0);
    if (timings.renderMs.length > 200) timings.renderMs.shift();
  }, 0);
}

// Risk comes from the server, highest first (open alert, latest negative score, recency).
function byRisk(a, b) {
  const x = a.data.risk, y = b.data.risk;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return y[i] - x[i];
  return a.data.id < b.data.id ? -1 : a.data.id > b.data.id ? 1 : 0;
}

function drawRow(row, div) {
  if (!div) {
    div = el("div", "row");
    div.setAttribute("role", "row");
    div.tabIndex = 0;
    div.addEventListener("click", () => openDetail(div.dataset.cid));
    div.addEventListener("keydown", (ev) => { if (ev.key === "Enter") openDetail(div.dataset.cid); });
  }
  div.dataset.cid = row.id;
  div.classList.toggle("selected", row.id === state.open);
  const label = cell("label");
  label.append(el("span", "swatch " + emotionClass(row.label)), el("span", "", row.label ?? NOT_LABELLED),
               el("span", "conf", row.confidence === null ? "" : row.confidence.toFixed(2)));
  const strip = cell("turns");
  for (const [turnId, turnLabel, negative] of row.turns) {
    const turn = el("span", "cell " + emotionClass(turnLabel));
    turn.dataset.turn = turnId;
    turn.title = turnLabel === null ? `turn ${turnId}: ${NOT_LABELLED} (context only)`
      : `turn ${turnId}: ${turnLabel} (negative ${negative.toFixed(2)})`;
    strip.append(turn);
  }
  const spark = cell("spark");
  const negatives = row.turns.filter((t) => t[1] !== null).map((t) => t[2]);
  if (negatives.length) spark.append(sparkline(negatives));
  const alert = cell("alert");
  for (const episode of row.alerts) alert.append(badge(episode));
  div.replaceChildren(cell("cid", row.id), cell("speaker", row.speaker), label, strip, spark, alert);
  return div;
}

function cell(className, text) {
  const c = el("span", className, text);
  c.setAttribute("role", "cell");
  return c;
}

function sparkline(values) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", SPARK_W);
  svg.setAttribute("height", SPARK_H);
  svg.setAttribute("class", "sparkline");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", "negative score per turn, latest " + values[values.length - 1].toFixed(2));
  const step = values.length > 1 ? (SPARK_W - 4) / (values.length - 1) : 0;
  const points = values.map((v, i) => [2 + i * step, SPARK_H - 2 - v * (SPARK_H - 4)]);
  const line = document.createElementNS(SVG, "polyline");
  line.setAttribute("points", points.map((p) => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" "));
  line.setAttribute("class", "spark-line");
  const dot = document.createElementNS(SVG, "circle");
  const [x, y] = points[points.length - 1];
  dot.setAttribute("cx", x.toFixed(1));
  dot.setAttribute("cy", y.toFixed(1));
  dot.setAttribute("r", "2.5");
  dot.setAttribute("class", values[values.length - 1] >= 0.5 ? "spark-dot high" : "spark-dot");
  svg.append(line, dot);
  return svg;
}

function turnRange(ids) {
  if (ids.length === 0) return "";
  const first = Math.min(...ids), last = Math.max(...ids);
  return first === last ? `turn ${first}` : `turns ${first}–${last}`;
}

function badge(episode) {
  const text = episode.closed ? `${episode.rule} closed`
    : `⚠ ${episode.rule} · ${turnRange(episode.turn_ids)} · ${episode.score.toFixed(2)}`;
  const b = el("span", "badge " + (episode.closed ? "closed" : "open"), text);
  b.dataset.rule = episode.rule;
  b.title = `${text}, opened ${new Date(episode.opened_at * 1000).toLocaleTimeString()}`;
  return b;
}

function drawLegend() {
  const names = state.meta.labels.filter((l) => state.seen.has(l));
  const context = state.seen.has(null);
  const legend = document.getElementById("legend");
  const key = names.join(",") + (context ? ";context" : "");
  if (legend.dataset.names === key) return;
  legend.dataset.names = key;
  const negative = new Set(state.meta.negative);
  const items = names.map((name) => {
    const item = el("span", "item" + (negative.has(name) ? " negative" : ""));
    item.append(el("span", "swatch " + emotionClass(name)), el("span", "", name));
    return item;
  });
  if (context) {
    const item = el("span", "item context");
    item.append(el("span", "swatch e-context"), el("span", "", NOT_LABELLED));
    items.push(item);
  }
  legend.replaceChildren(...items);
}

function openDetail(id) {
  state.open = id;
  for (const entry of state.rows.values()) entry.el?.classList.toggle("selected", entry.data.id === id);
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-title").textContent = id;
  refreshDetail();
}

function closeDetail() {
  state.open = null;
  document.getElementById("detail").hidden = true;
  for (const entry of state.rows.values()) entry.el?.classList.remove("selected");
}

// One request at a time; changes that come meanwhile ask for one more.
async function refreshDetail() {
  if (state.fetching) { state.refetch = true; return; }
  state.fetching = true;
  try {
    do {
      state.refetch = false;
      const id = state.open;
      if (id === null) return;
      const reply = await fetch("/api/conversation?id=" + encodeURIComponent(id), { credentials: "same-origin" });
      if (state.open !== id) continue;
      if (reply.ok) drawDetail(await reply.json());
      else closeDetail();
    } while (state.refetch);
  } finally {
    state.fetching = false;
  }
}

function drawDetail(conv) {
  const alerts = document.getElementById("detail-alerts");
  alerts.replaceChildren(...conv.alerts.map(badge));
  const tbody = document.querySelector("#turns tbody");
  const order = new Map(state.meta.labels.map((l, i) => [l, i]));
  tbody.replaceChildren(...conv.turns.map((t) => {
    const context = t.label === null;
    const tr = el("tr", context ? "turn context" : "turn");
    tr.dataset.turn = t.turn_id;
    const label = el("td", "label");
    label.append(el("span", "swatch " + emotionClass(t.label)), el("span", "", t.label ?? NOT_LABELLED),
                 el("span", "conf", context ? "" : t.confidence.toFixed(2)));
    // The served label stays; a correction shows beside it (the labels stream is never changed).
    if (t.corrected) {
      const fixed = el("div", "corrected");
      fixed.append(el("span", "", "→ "), el("span", "swatch " + emotionClass(t.corrected.label)),
                   el("span", "corrected-label", t.corrected.label), el("span", "who", " by " + t.corrected.who));
      label.append(fixed);
    }
    // Context-only turns have no emotion to correct (their speaker is not labelled).
    if (!context && state.meta.corrections && state.meta.label_sets[t.label_set]) {
      label.append(correctionPicker(conv.id, t));
    }
    const probs = el("td", "probs");
    if (context) probs.append(el("span", "context-note", "context only: no emotion inferred"));
    const names = Object.keys(t.probs).sort((a, b) => (order.get(a) ?? 1e9) - (order.get(b) ?? 1e9));
    for (const name of names) {
      const bar = el("div", "bar");
      bar.dataset.label = name;
      const track = el("span", "track");
      const fill = el("span", "fill " + emotionClass(name));
      fill.style.width = (100 * t.probs[name]).toFixed(1) + "%";
      track.append(fill);
      bar.append(el("span", "name", name), track, el("span", "value", t.probs[name].toFixed(2)));
      probs.append(bar);
    }
    const speaker = el("td", "speaker", t.speaker);
    if ("text" in t) speaker.append(el("div", "text", t.text ?? "(no longer kept)"));
    tr.append(el("td", "tid", String(t.turn_id)), speaker, label, probs);
    return tr;
  }));
}

// A supervisor's correction: one of the turn's label set's labels, sent as JSON with the write
// header (a cross-site form can send neither); the server takes who made it from the token.
function correctionPicker(cid, turn) {
  const select = el("select", "correct");
  select.setAttribute("aria-label", `correct the label of turn ${turn.turn_id}`);
  const prompt = el("option", "", "correct…");
  prompt.value = "";
  select.append(prompt, ...state.meta.label_sets[turn.label_set].map((name) => {
    const option = el("option", "", name);
    option.value = name;
    return option;
  }));
  select.addEventListener("change", () => {
    if (select.value) sendCorrection(cid, turn.turn_id, select.value, select);
  });
  return select;
}

async function sendCorrection(cid, turnId, label, select) {
  select.disabled = true;
  const note = document.getElementById("detail-note");
  try {
    const reply = await fetch("/api/corrections", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-DialogueLLM-Write": "1" },
      body: JSON.stringify({ conversation_id: cid, turn_id: turnId, label: label }),
    });
    const answer = await reply.json().catch(() => ({}));
    note.textContent = reply.ok ? `turn ${turnId}: corrected to ${label}` : `not saved: ${answer.error || reply.status}`;
    note.classList.toggle("error", !reply.ok);
  } catch (e) {
    note.textContent = "not saved: the server did not answer";
    note.classList.add("error");
  } finally {
    select.disabled = false;
  }
}

start();

"use strict";
// The recording browser's page. It asks the server for
//   api/recordings        the recordings found
//   api/recording/K       one recording: rows, problems, excluded spans, cameras
//   api/series/K          float32 [rows, 5]: time s, steering, throttle, speed mph, log line
//   frame/K/ROW/CAMERA    one camera image, on demand (cached by the browser)
// and posts api/excluded/K {spans: [[first, last], ...]} to save the excluded rows.
// Everything is drawn by hand on canvases; <body data-*> says what is shown.

const $ = (id) => document.getElementById(id);
const body = document.body;
const CAMERAS = ["left", "center", "right"];
const COLUMNS = 5;
const PAGE_ROWS = 150; // 10 s at the simulator's 15 frames a second
const KIND_COLOURS = { skipped: "#ff5c5c", still: "#8fa3ff", jump: "#ffb347", repeated: "#c98bff" };
const KIND_NAMES = { skipped: "skipped rows", still: "standing still", jump: "steering jumps", repeated: "repeated frames" };

let rec = null; // the shown recording's info
let series = null; // Float32Array [rows * COLUMNS]
let rows = 0;
let cursor = 0;
let selection = null; // [first, last], first <= last
let excluded = []; // sorted disjoint [first, last]
let saves = 0;
let base = null; // the timeline without cursor, selection or excluded shading
let framePending = false;

const value = (i, column) => series[i * COLUMNS + column];

function setState(state, text) {
  body.dataset.state = state;
  $("state").textContent = text || state;
}

async function getJSON(url) {
  const reply = await fetch(url);
  if (!reply.ok) throw new Error(`${url}: ${reply.status} ${await reply.text()}`);
  return reply.json();
}

// --- the timeline: problems band, three charts, time axis ---------------------------------------

const timeline = $("timeline");
const LEFT = 64;
const RIGHT = timeline.width - 8;
const BAND = { top: 6, height: 44 }; // one 11-px line per kind of problem
const CHARTS = [
  { column: 1, label: "steering", low: -1, high: 1, colour: "#ffb347", digits: 3 },
  { column: 2, label: "throttle", low: -1, high: 1, colour: "#6fd3ff", digits: 2 },
  { column: 3, label: "speed, mph", low: 0, high: 30, colour: "#8ee07f", digits: 1 },
];
const CHART_TOP = BAND.top + BAND.height + 8;
const CHART_HEIGHT = 78;
const CHART_GAP = 10;
const AXIS_TOP = CHART_TOP + 3 * CHART_HEIGHT + 2 * CHART_GAP;

const xOf = (i) => LEFT + ((i + 0.5) / rows) * (RIGHT - LEFT);
const spanX = (first, last) => [LEFT + (first / rows) * (RIGHT - LEFT), LEFT + ((last + 1) / rows) * (RIGHT - LEFT)];

function indexAt(clientX) {
  const box = timeline.getBoundingClientRect();
  const x = ((clientX - box.left) * timeline.width) / box.width;
  const i = Math.floor(((x - LEFT) / (RIGHT - LEFT)) * rows);
  return Math.min(Math.max(i, 0), rows - 1);
}

function drawBase() {
  base = document.createElement("canvas");
  base.width = timeline.width;
  base.height = timeline.height;
  const g = base.getContext("2d");
  const width = RIGHT - LEFT;
  g.font = "10px sans-serif";

  // problems: one line per kind, each span at least one pixel wide
  Object.keys(KIND_COLOURS).forEach((kind, k) => {
    const y = BAND.top + k * 11;
    g.fillStyle = "#8893a0";
    g.textAlign = "right";
    g.fillText(kind, LEFT - 4, y + 9);
    g.fillStyle = "#232a31";
    g.fillRect(LEFT, y, width, 9);
  });
  for (const [kind, first, last] of rec.problems.spans) {
    const k = Object.keys(KIND_COLOURS).indexOf(kind);
    const [x0, x1] = spanX(first, last);
    g.fillStyle = KIND_COLOURS[kind];
    g.fillRect(x0, BAND.top + k * 11, Math.max(x1 - x0, 1.5), 9);
  }

  // charts: min and max of the rows under each pixel column, so 50,000 rows draw as 800 lines
  CHARTS.forEach((chart, c) => {
    const top = CHART_TOP + c * (CHART_HEIGHT + CHART_GAP);
    const bottom = top + CHART_HEIGHT;
    let high = chart.high;
    for (let i = 0; i < rows; i++) high = Math.max(high, value(i, chart.column));
    const y = (v) => bottom - ((Math.min(Math.max(v, chart.low), high) - chart.low) / (high - chart.low)) * CHART_HEIGHT;
    g.strokeStyle = "#3a434d";
    g.lineWidth = 1;
    g.strokeRect(LEFT + 0.5, top + 0.5, width, CHART_HEIGHT);
    g.fillStyle = "#8893a0";
    g.textAlign = "right";
    g.fillText(String(Math.round(high * 10) / 10), LEFT - 4, top + 9);
    g.fillText(String(chart.low), LEFT - 4, bottom);
    if (chart.low < 0) {
      g.setLineDash([3, 3]);
      g.beginPath();
      g.moveTo(LEFT, y(0));
      g.lineTo(RIGHT, y(0));
      g.stroke();
      g.setLineDash([]);
      g.fillText("0", LEFT - 4, y(0) + 3);
    }
    g.textAlign = "left";
    g.fillStyle = chart.colour;
    g.fillText(chart.label, LEFT + 4, top + 11);
    g.strokeStyle = chart.colour;
    g.lineWidth = 1.2;
    g.beginPath();
    if (rows <= width) {
      for (let i = 0; i < rows; i++) (i ? g.lineTo : g.moveTo).call(g, xOf(i), y(value(i, chart.column)));
    } else {
      for (let px = 0; px < width; px++) {
        const first = Math.floor((px * rows) / width);
        const last = Math.max(first, Math.floor(((px + 1) * rows) / width) - 1);
        let low = Infinity;
        let top = -Infinity;
        for (let i = first; i <= last; i++) {
          const v = value(i, chart.column);
          low = Math.min(low, v);
          top = Math.max(top, v);
        }
        (px ? g.lineTo : g.moveTo).call(g, LEFT + px + 0.5, y(low));
        g.lineTo(LEFT + px + 0.5, y(top));
      }
    }
    g.stroke();
  });

  // time axis: about eight ticks, at the rows' own times
  g.fillStyle = "#8893a0";
  g.textAlign = "center";
  for (let t = 0; t <= 8; t++) {
    const i = Math.min(Math.round((t / 8) * (rows - 1)), rows - 1);
    g.fillText(`${value(i, 0).toFixed(1)} s`, Math.min(Math.max(xOf(i), LEFT + 14), RIGHT - 14), AXIS_TOP + 12);
  }
}

function drawTimeline() {
  const g = timeline.getContext("2d");
  g.clearRect(0, 0, timeline.width, timeline.height);
  g.drawImage(base, 0, 0);
  const height = AXIS_TOP - BAND.top;
  g.fillStyle = "rgba(230, 70, 70, 0.28)";
  for (const [first, last] of excluded) {
    const [x0, x1] = spanX(first, last);
    g.fillRect(x0, BAND.top, Math.max(x1 - x0, 1), height);
  }
  if (selection) {
    const [x0, x1] = spanX(...selection);
    g.fillStyle = "rgba(255, 210, 63, 0.22)";
    g.fillRect(x0, BAND.top, Math.max(x1 - x0, 1), height);
    g.strokeStyle = "#ffd23f";
    g.lineWidth = 1;
    g.strokeRect(x0 + 0.5, BAND.top + 0.5, Math.max(x1 - x0 - 1, 1), height - 1);
  }
  g.strokeStyle = "#ffffff";
  g.lineWidth = 1.5;
  g.beginPath();
  g.moveTo(xOf(cursor), BAND.top);
  g.lineTo(xOf(cursor), AXIS_TOP);
  g.stroke();
}

// --- the steering histogram: rows kept, and rows excluded stacked on them (log scale) -----------

function drawHistogram() {
  const c = $("histogram");
  const g = c.getContext("2d");
  const bins = 41;
  const kept = new Array(bins).fill(0);
  const out = new Array(bins).fill(0);
  const isOut = excludedFlags();
  for (let i = 0; i < rows; i++) {
    const b = Math.min(Math.max(Math.floor(((value(i, 1) + 1) / 2) * bins), 0), bins - 1);
    (isOut[i] ? out : kept)[b]++;
  }
  const [left, right, top, bottom] = [34, c.width - 6, 8, c.height - 18];
  const most = Math.max(...kept.map((k, b) => k + out[b]), 1);
  const h = (n) => (n > 0 ? (Math.log10(n + 1) / Math.log10(most + 1)) * (bottom - top) : 0);
  const w = (right - left) / bins;
  g.clearRect(0, 0, c.width, c.height);
  g.font = "10px sans-serif";
  g.fillStyle = "#8893a0";
  g.textAlign = "right";
  g.fillText(String(most), left - 4, top + 8);
  g.fillText("0", left - 4, bottom);
  g.textAlign = "center";
  g.fillText("-1", left, c.height - 4);
  g.fillText("0", (left + right) / 2, c.height - 4);
  g.fillText("+1", right, c.height - 4);
  for (let b = 0; b < bins; b++) {
    const x = left + b * w;
    const hk = h(kept[b]);
    g.fillStyle = "#3465a4";
    g.fillRect(x + 0.5, bottom - hk, w - 1, hk);
    const ht = h(kept[b] + out[b]);
    g.fillStyle = "rgba(230, 70, 70, 0.6)";
    g.fillRect(x + 0.5, bottom - ht, w - 1, ht - hk);
  }
  const s = value(cursor, 1);
  g.strokeStyle = "#ffffff";
  g.beginPath();
  g.moveTo(left + ((s + 1) / 2) * (right - left), top);
  g.lineTo(left + ((s + 1) / 2) * (right - left), bottom);
  g.stroke();
  const keptRows = kept.reduce((a, b) => a + b, 0);
  $("histogram-title").textContent = `steering: ${keptRows.toLocaleString()} rows kept (log scale; red: excluded)`;
}

// --- exclusions ----------------------------------------------------------------------------------

function excludedFlags() {
  const flags = new Uint8Array(rows);
  for (const [first, last] of excluded) flags.fill(1, first, last + 1);
  return flags;
}

function spansOf(flags) {
  const spans = [];
  for (let i = 0; i < flags.length; i++) {
    if (!flags[i]) continue;
    const first = i;
    while (i + 1 < flags.length && flags[i + 1]) i++;
    spans.push([first, i]);
  }
  return spans;
}

async function changeExcluded(on) {
  if (!selection) return;
  const flags = excludedFlags();
  flags.fill(on ? 1 : 0, selection[0], selection[1] + 1);
  const spans = spansOf(flags);
  $("saved").textContent = "saving...";
  try {
    const reply = await fetch(`api/excluded/${rec.index}`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ spans }),
    });
    const answer = await reply.json();
    if (!reply.ok) throw new Error(answer.error);
    excluded = answer.excluded;
    saves++;
    body.dataset.saved = saves;
    $("saved").textContent =
      `saved: ${answer.excluded_rows.toLocaleString()} rows in ${excluded.length} range(s) excluded, in ${answer.file}`;
    $("saved").classList.remove("error");
  } catch (e) {
    $("saved").textContent = `not saved: ${e.message}`;
    $("saved").classList.add("error");
  }
  showExcluded();
}

function showExcluded() {
  body.dataset.excluded = excluded.reduce((n, [a, b]) => n + b - a + 1, 0);
  drawTimeline();
  drawHistogram();
  readout();
}

// --- the cursor, the frames and the figures ------------------------------------------------------

function readout() {
  const i = cursor;
  const flag = excluded.some(([a, b]) => a <= i && i <= b) ? " · excluded" : "";
  $("readout").textContent =
    `row ${(i + 1).toLocaleString()} of ${rows.toLocaleString()} · line ${value(i, 4)} · ${value(i, 0).toFixed(2)} s · ` +
    `steering ${value(i, 1).toFixed(3)} · throttle ${value(i, 2).toFixed(2)} · ${value(i, 3).toFixed(1)} mph${flag}`;
  if (selection) {
    const [a, b] = selection;
    $("selected").textContent =
      `selected ${value(a, 0).toFixed(2)}-${value(b, 0).toFixed(2)} s (${(b - a + 1).toLocaleString()} rows)`;
  } else {
    $("selected").textContent = "nothing selected";
  }
  $("exclude").disabled = $("include").disabled = $("clear").disabled = !selection;
}

function showFrames() {
  framePending = false;
  for (const camera of CAMERAS) {
    const img = $(camera);
    if (rec.cameras.includes(camera)) {
      img.classList.remove("missing");
      img.src = `frame/${rec.index}/${cursor}/${camera}`; // one request per image, cached by the browser
    } else {
      img.classList.add("missing");
      img.removeAttribute("src");
    }
  }
}

function moveTo(i, select = false) {
  if (!rows) return;
  const previous = cursor;
  cursor = Math.min(Math.max(i, 0), rows - 1);
  if (select) {
    const anchor = selection ? (selection[0] === previous ? selection[1] : selection[0]) : previous;
    selection = [Math.min(anchor, cursor), Math.max(anchor, cursor)];
    body.dataset.selection = `${selection[0]}:${selection[1]}`;
  }
  body.dataset.cursor = cursor;
  if (!framePending) {
    framePending = true;
    requestAnimationFrame(showFrames); // held keys and drags ask for one frame a screen refresh
  }
  drawTimeline();
  drawHistogram();
  readout();
}

function select(first, last) {
  selection = first === null ? null : [Math.min(first, last), Math.max(first, last)];
  body.dataset.selection = selection ? `${selection[0]}:${selection[1]}` : "";
  drawTimeline();
  readout();
}

// --- keyboard and mouse --------------------------------------------------------------------------

document.addEventListener("keydown", (e) => {
  if (!rows || e.target === $("recording") || e.ctrlKey || e.metaKey || e.altKey) return;
  const moves = {
    ArrowLeft: cursor - 1,
    ArrowRight: cursor + 1,
    PageUp: cursor - PAGE_ROWS,
    PageDown: cursor + PAGE_ROWS,
    Home: 0,
    End: rows - 1,
  };
  if (e.key in moves) {
    moveTo(moves[e.key], e.shiftKey);
  } else if (e.key === "[") {
    select(cursor, selection ? Math.max(selection[1], cursor) : cursor);
  } else if (e.key === "]") {
    select(selection ? Math.min(selection[0], cursor) : cursor, cursor);
  } else if (e.key === "x" || e.key === "Delete") {
    changeExcluded(true);
  } else if (e.key === "i") {
    changeExcluded(false);
  } else if (e.key === "Escape") {
    select(null);
  } else {
    return;
  }
  e.preventDefault();
});

let dragging = null; // {select: bool, from: index}

timeline.addEventListener("mousedown", (e) => {
  if (!rows) return;
  const i = indexAt(e.clientX);
  dragging = { select: e.shiftKey, from: i };
  if (e.shiftKey) select(i, i);
  else moveTo(i);
  e.preventDefault();
});
window.addEventListener("mousemove", (e) => {
  if (!dragging) return;
  const i = indexAt(e.clientX);
  if (dragging.select) select(dragging.from, i);
  else moveTo(i);
});
window.addEventListener("mouseup", () => {
  dragging = null;
});

$("exclude").addEventListener("click", () => changeExcluded(true));
$("include").addEventListener("click", () => changeExcluded(false));
$("clear").addEventListener("click", () => select(null));

// --- the problems list ---------------------------------------------------------------------------

function nextProblem(kind) {
  const spans = rec.problems.spans.filter((s) => s[0] === kind);
  if (!spans.length) return;
  const next = spans.find((s) => s[1] > cursor) || spans[0];
  moveTo(next[1]);
}

function listProblems() {
  const list = $("problems");
  list.replaceChildren();
  for (const kind of Object.keys(KIND_COLOURS)) {
    const count = rec.problems.counts[kind];
    const item = document.createElement("li");
    item.dataset.kind = kind;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = KIND_COLOURS[kind];
    const rule = document.createElement("span");
    rule.className = "rule";
    rule.textContent = rec.problems.rules[kind];
    item.append(swatch, `${KIND_NAMES[kind]}: ${count.spans.toLocaleString()} (${count.rows.toLocaleString()} rows)`, rule);
    item.addEventListener("click", () => nextProblem(kind));
    list.append(item);
  }
  const reasons = Object.entries(rec.skipped);
  $("skipped").textContent = reasons.length
    ? `the loader skipped: ${reasons.map(([r, n]) => `${r}: ${n}`).join(", ")}`
    : `the loader read all ${rec.read.toLocaleString()} rows`;
}

// --- opening a recording -------------------------------------------------------------------------

function startRow() {
  const hash = new URLSearchParams(location.hash.slice(1));
  const t = Number(hash.get("t"));
  if (!hash.has("t") || !Number.isFinite(t)) return 0;
  let i = 0;
  while (i < rows - 1 && value(i, 0) < t) i++;
  return i;
}

async function open(index) {
  setState("loading", "loading");
  try {
    rec = await getJSON(`api/recording/${index}`);
    if (rec.error) throw new Error(rec.error);
    const reply = await fetch(`api/series/${index}`);
    series = new Float32Array(await reply.arrayBuffer());
  } catch (e) {
    rows = 0;
    $("name").textContent = rec ? rec.name : "recordings";
    $("readout").textContent = e.message;
    $("readout").classList.add("error");
    setState("error", "cannot show it");
    return;
  }
  $("readout").classList.remove("error");
  rows = rec.rows;
  excluded = rec.excluded;
  selection = null;
  body.dataset.selection = "";
  $("name").textContent = rec.name;
  $("source").textContent = `${rec.folder} · ${rows.toLocaleString()} rows · ${rec.duration_s.toFixed(1)} s`;
  $("saved").textContent = rec.excluded_error ? `excluded ranges cannot be used: ${rec.excluded_error}` : "";
  $("saved").classList.toggle("error", Boolean(rec.excluded_error));
  drawBase();
  listProblems();
  cursor = -1;
  moveTo(startRow());
  showExcluded();
  setState("ready", "ready");
}

async function start() {
  const recordings = await getJSON("api/recordings");
  const choose = $("recording");
  for (const r of recordings) choose.append(new Option(r.name, r.index));
  choose.hidden = recordings.length < 2;
  choose.addEventListener("change", () => {
    choose.blur(); // the arrows are the cursor's again
    open(Number(choose.value));
  });
  await open(0);
}

start();

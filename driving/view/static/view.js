"use strict";
// The live view's page. One EventSource reads the server's /events stream:
//   hello   the drive: model, source, frame size and crop rows, the track map (or null), once
//   update  what is new: chart points, map path points and marks, the latest frame, the figures
//   end     the drive's metrics
// Everything is drawn by hand on canvases. Counters on <body data-*> say what has arrived, for
// people and for tests alike.

const $ = (id) => document.getElementById(id);
const body = document.body;
const counts = { frames: 0, points: 0, path: 0, marks: 0 };

let info = null; // the "hello" of the drive being shown
let points = []; // [time s, steering, throttle, mph], the last info.window_s seconds
let map = null; // the map's layers and its metres -> pixels transform
let drawPending = false;

function count(name, n) {
  counts[name] += n;
  body.dataset[name] = counts[name];
}

function setState(state, text) {
  body.dataset.state = state;
  $("state").textContent = text || state;
}

function fixed(value, digits, unit = "") {
  return value === null || value === undefined ? "-" : value.toFixed(digits) + unit;
}

// --- the camera frame, with the rows the model never sees shaded ----------------------------------

const frameCanvas = $("frame");
const frameContext = frameCanvas.getContext("2d");
const image = new Image();
let decoding = false; // one frame decodes at a time; the newest one waits, older ones are dropped
let waitingFrame = null;

function showFrame(base64) {
  if (decoding) {
    waitingFrame = base64;
    return;
  }
  decoding = true;
  waitingFrame = null;
  image.src = "data:image/jpeg;base64," + base64;
}

function frameDone() {
  decoding = false;
  if (waitingFrame) showFrame(waitingFrame);
}

image.onload = () => {
  drawFrame();
  count("frames", 1);
  frameDone();
};
image.onerror = frameDone;

function drawFrame() {
  const { width, height } = info.frame;
  const { top, bottom } = info.crop;
  const g = frameContext;
  g.drawImage(image, 0, 0, width, height);
  g.fillStyle = "rgba(0, 0, 0, 0.55)";
  g.fillRect(0, 0, width, top);
  g.fillRect(0, bottom, width, height - bottom);
  g.strokeStyle = "#ffd23f";
  g.lineWidth = 1;
  g.setLineDash([5, 3]);
  g.strokeRect(0.5, top + 0.5, width - 1, bottom - top - 1);
  g.setLineDash([]);
  g.fillStyle = "#ffd23f";
  g.font = "9px sans-serif";
  g.fillText(`model input: rows ${top}-${bottom}`, 4, top > 12 ? top - 3 : bottom + 10);
}

// --- charts: steering, throttle, speed over the last seconds -------------------------------------

const charts = [
  { canvas: $("steering-chart"), column: 1, label: "steering", low: -1, high: 1, colour: "#ffb347", digits: 3 },
  { canvas: $("throttle-chart"), column: 2, label: "throttle", low: -1, high: 1, colour: "#6fd3ff", digits: 3 },
  { canvas: $("speed-chart"), column: 3, label: "speed, mph", low: 0, high: 30, colour: "#8ee07f", digits: 1 },
];

function drawChart(chart) {
  const c = chart.canvas;
  const g = c.getContext("2d");
  const [left, right, top, bottom] = [40, c.width - 8, 6, c.height - 16];
  const span = info.window_s;
  const now = points.length ? points[points.length - 1][0] : 0;
  let high = chart.high;
  for (const p of points) high = Math.max(high, p[chart.column]); // speed may pass 30 mph
  const x = (t) => right - ((now - t) / span) * (right - left);
  const y = (v) => bottom - ((Math.min(Math.max(v, chart.low), high) - chart.low) / (high - chart.low)) * (bottom - top);

  g.clearRect(0, 0, c.width, c.height);
  g.strokeStyle = "#3a434d";
  g.lineWidth = 1;
  g.strokeRect(left + 0.5, top + 0.5, right - left, bottom - top);
  g.fillStyle = "#8893a0";
  g.font = "10px sans-serif";
  g.textAlign = "right";
  g.fillText(String(Math.round(high * 10) / 10), left - 4, top + 8);
  g.fillText(String(chart.low), left - 4, bottom);
  if (chart.low < 0) {
    g.setLineDash([3, 3]);
    g.beginPath();
    g.moveTo(left, y(0));
    g.lineTo(right, y(0));
    g.stroke();
    g.setLineDash([]);
    g.fillText("0", left - 4, y(0) + 3);
  }
  g.fillText("now", right, c.height - 3);
  g.textAlign = "left";
  g.fillText(`-${span} s`, left, c.height - 3);

  g.strokeStyle = chart.colour;
  g.lineWidth = 1.5;
  g.beginPath();
  points.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[chart.column])) : g.moveTo(x(p[0]), y(p[chart.column]))));
  g.stroke();
  const latest = points.length ? points[points.length - 1][chart.column] : null;
  g.fillStyle = chart.colour;
  g.font = "bold 11px sans-serif";
  g.fillText(`${chart.label} ${fixed(latest, chart.digits)}`, left + 6, top + 13);
}

// --- the map: road, path coloured by |cross-track error|, interventions ----------------------------

function layer(width, height) {
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  return c;
}

function cteColour(fraction) {
  // 0: on the centre line (green) ... 1: at the road's edge (red)
  return `hsl(${120 * (1 - Math.min(fraction, 1))}, 85%, 55%)`;
}

function setUpMap(track) {
  const canvas = $("map");
  map = null;
  canvas.hidden = !track;
  if (!track) {
    $("map-note").textContent = "no track map: the real simulator sends no road geometry";
    return;
  }
  const [top, margin] = [36, 14 + track.width]; // the top band holds the caption and the legend
  const xs = track.centre.map((p) => p[0]);
  const ys = track.centre.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const height = canvas.height - top;
  const scale = Math.min((canvas.width - 2 * margin) / (x1 - x0), (height - 2 * margin) / (y1 - y0));
  const dx = (canvas.width - (x1 - x0) * scale) / 2;
  const dy = (height - (y1 - y0) * scale) / 2;
  const pixel = (x, y) => [dx + (x - x0) * scale, canvas.height - dy - (y - y0) * scale]; // y points north

  const base = layer(canvas.width, canvas.height);
  const g = base.getContext("2d");
  g.lineJoin = "round";
  const outline = () => {
    g.beginPath();
    track.centre.forEach(([x, y], i) => (i ? g.lineTo(...pixel(x, y)) : g.moveTo(...pixel(x, y))));
    g.closePath();
  };
  outline();
  g.strokeStyle = "#4d545c";
  g.lineWidth = Math.max(track.width * scale, 3);
  g.stroke();
  outline();
  g.strokeStyle = "#6c757f";
  g.lineWidth = 0.7;
  g.setLineDash([4, 4]);
  g.stroke();
  g.setLineDash([]);
  const [sx, sy] = pixel(...track.centre[0]);
  g.fillStyle = "#ffffff";
  g.fillRect(sx - 3, sy - 3, 6, 6);
  g.fillStyle = "#8893a0";
  g.font = "10px sans-serif";
  g.fillText(`${track.name}, ${track.width} m wide; start: white square; x: intervention`, 10, 14);
  g.fillText("|cte|: centre", 10, 29);
  for (let i = 0; i <= 20; i++) {
    g.fillStyle = cteColour(i / 20);
    g.fillRect(74 + i * 5, 21, 5, 9);
  }
  g.fillStyle = "#8893a0";
  g.fillText("road edge", 182, 29);

  map = { canvas, base, path: layer(canvas.width, canvas.height), pixel, half: track.width / 2, last: null };
  $("map-note").textContent = "";
}

function addToMap(path, marks) {
  const g = map.path.getContext("2d");
  g.lineWidth = 2.5;
  g.lineCap = "round";
  for (const [x, y, cte, gap] of path) {
    const p = map.pixel(x, y);
    if (map.last && !gap) {
      g.strokeStyle = cteColour(Math.abs(cte) / map.half);
      g.beginPath();
      g.moveTo(...map.last);
      g.lineTo(...p);
      g.stroke();
    }
    map.last = p;
  }
  g.strokeStyle = "#ff3b3b";
  g.lineWidth = 2;
  for (const [x, y] of marks) {
    const [px, py] = map.pixel(x, y);
    g.beginPath();
    g.moveTo(px - 5, py - 5);
    g.lineTo(px + 5, py + 5);
    g.moveTo(px + 5, py - 5);
    g.lineTo(px - 5, py + 5);
    g.stroke();
  }
}

function drawMap() {
  const g = map.canvas.getContext("2d");
  g.clearRect(0, 0, map.canvas.width, map.canvas.height);
  g.drawImage(map.base, 0, 0);
  g.drawImage(map.path, 0, 0);
  if (map.last) {
    g.fillStyle = "#ffffff";
    g.strokeStyle = "#000000";
    g.lineWidth = 1.5;
    g.beginPath();
    g.arc(map.last[0], map.last[1], 5, 0, 2 * Math.PI);
    g.fill();
    g.stroke();
  }
}

// --- the stream ----------------------------------------------------------------------------------

function draw() {
  drawPending = false;
  charts.forEach(drawChart);
  if (map) drawMap();
}

function requestDraw() {
  if (!drawPending) {
    drawPending = true;
    requestAnimationFrame(draw); // at most once a screen refresh, and not at all in a hidden tab
  }
}

function hello(drive) {
  info = drive;
  points = [];
  $("model").textContent = drive.model || "(unnamed model)";
  $("source").textContent = drive.source;
  $("latency-label").textContent = `latency (${drive.latency})`;
  $("charts-title").textContent = `the last ${drive.window_s} s (${drive.clock} clock)`;
  $("summary").textContent = "";
  frameCanvas.width = drive.frame.width;
  frameCanvas.height = drive.frame.height;
  frameCanvas.style.height = `${(640 * drive.frame.height) / drive.frame.width}px`;
  $("crop-note").textContent =
    `dashed: rows ${drive.crop.top}-${drive.crop.bottom}, what the model is given; shaded: never seen`;
  setUpMap(drive.map);
  setState("waiting", "waiting for frames");
  requestDraw();
}

function update(u) {
  if (!info) return;
  setState("live");
  if (u.points.length) {
    points.push(...u.points);
    count("points", u.points.length);
    const oldest = points[points.length - 1][0] - info.window_s;
    const keep = points.findIndex((p) => p[0] >= oldest);
    if (keep > 0) points.splice(0, keep);
  }
  if (map) {
    addToMap(u.path, u.marks);
    count("path", u.path.length);
    count("marks", u.marks.length);
  }
  if (u.frame) showFrame(u.frame);
  const s = u.stats;
  $("fps").textContent = fixed(s.fps, 1);
  $("latency").textContent = fixed(s.latency_ms, 2, " ms");
  $("mph").textContent = fixed(s.mph, 1, " mph");
  $("laps").textContent = fixed(s.laps, 2);
  $("interventions").textContent = map ? String(s.interventions) : "-";
  $("cte").textContent = s.cte === null ? "-" : `${s.cte >= 0 ? "+" : ""}${s.cte.toFixed(2)} m`;
  $("clock").textContent = fixed(s.time_s, 1, " s");
  $("frames").textContent = String(s.frames);
  requestDraw();
}

function end(metrics) {
  events.close(); // the drive is over: no reconnecting
  setState("ended", "drive ended");
  if (metrics.laps !== undefined) {
    $("summary").textContent =
      `${metrics.laps.toFixed(2)} laps, ${metrics.interventions} interventions, ` +
      `autonomy ${metrics.autonomy_pct.toFixed(1)}%, mean |cte| ${metrics.mean_abs_cte_m.toFixed(2)} m ` +
      `(${metrics.end_reason})`;
  }
}

const events = new EventSource("events");
events.addEventListener("hello", (e) => hello(JSON.parse(e.data)));
events.addEventListener("update", (e) => update(JSON.parse(e.data)));
events.addEventListener("end", (e) => end(JSON.parse(e.data)));
events.onopen = () => setState(info ? "live" : "waiting", info ? "live" : "waiting for a drive");
events.onerror = () =>
  setState("disconnected", events.readyState === EventSource.CLOSED ? "disconnected" : "reconnecting");

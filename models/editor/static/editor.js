// ABN attention editor. The map edit is a base map plus a list of strokes in image pixel
// coordinates; the server applies them (models/correct.py) and returns the map and prediction.
"use strict";

const $ = (id) => document.getElementById(id);
const S = {
  meta: null, pos: 0, item: null, base: "model", strokes: [], redo: [], live: null,
  map: null, seq: 0, shown: 0, img: new Image(), dirty: false,
};

async function api(path, body) {
  const r = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}

function status(text) { $("status").textContent = text; }

// Jet colour map, value in [0, 1] -> [r, g, b].
function jet(v) {
  const c = (x) => Math.max(0, Math.min(1, x));
  return [c(1.5 - Math.abs(4 * v - 3)), c(1.5 - Math.abs(4 * v - 2)), c(1.5 - Math.abs(4 * v - 1))]
    .map((x) => Math.round(255 * x));
}

function mapCanvas(map, alpha) {
  const h = map.length, w = map[0].length;
  const small = document.createElement("canvas");
  small.width = w; small.height = h;
  const ctx = small.getContext("2d");
  const data = ctx.createImageData(w, h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const [r, g, b] = jet(map[y][x]);
    const k = 4 * (y * w + x);
    data.data.set([r, g, b, Math.round(255 * alpha)], k);
  }
  ctx.putImageData(data, 0, 0);
  return small;
}

function draw() {
  const img = $("image").getContext("2d"), ov = $("overlay").getContext("2d");
  const side = $("side").checked;
  img.imageSmoothingEnabled = false;
  img.clearRect(0, 0, 512, 512);
  if (S.img.complete && S.img.naturalWidth) img.drawImage(S.img, 0, 0, 512, 512);
  ov.clearRect(0, 0, 512, 512);
  const mo = $("map-only").getContext("2d");
  mo.clearRect(0, 0, 512, 512);
  if (!S.map) return;
  // Bilinear upsampling of the map, the same as models.correct.map_to_image.
  ov.imageSmoothingEnabled = true; mo.imageSmoothingEnabled = true;
  if (side) mo.drawImage(mapCanvas(S.map, 1), 0, 0, 512, 512);
  else ov.drawImage(mapCanvas(S.map, parseFloat($("opacity").value)), 0, 0, 512, 512);
  if (S.live) drawStroke(ov, S.live);
}

function scale() { return 512 / S.meta.image_size[1]; }

function drawStroke(ctx, s) {
  const k = scale();
  ctx.save();
  ctx.strokeStyle = s.mode === "erase" ? "rgba(0,0,0,0.35)" : "rgba(255,255,255,0.45)";
  ctx.fillStyle = ctx.strokeStyle;
  ctx.lineWidth = 2 * s.radius * k; ctx.lineCap = "round"; ctx.lineJoin = "round";
  ctx.beginPath();
  s.points.forEach(([x, y], i) => (i ? ctx.lineTo(x * k, y * k) : ctx.moveTo(x * k, y * k)));
  if (s.points.length === 1) { ctx.arc(s.points[0][0] * k, s.points[0][1] * k, s.radius * k, 0, 7); ctx.fill(); }
  else ctx.stroke();
  ctx.restore();
}

function showPred(el, p) {
  el.innerHTML = "";
  p.top.forEach((t, i) => {
    const d = document.createElement("div");
    d.textContent = `${t.class} ${(100 * t.p).toFixed(1)}%`;
    if (i === 0) d.className = p.correct ? "ok" : "bad";
    el.appendChild(d);
  });
  el.dataset.pred = p.pred_name;
}

async function update() {
  const seq = ++S.seq;
  const strokes = S.live ? [...S.strokes, S.live] : S.strokes;
  try {
    const r = await api("/api/predict", { item: S.item.item, base: S.base, strokes });
    if (seq < S.shown) return;  // a newer answer is already on screen
    S.shown = seq; S.map = r.map;
    showPred($("pred-after"), r.after);
    draw();
  } catch (e) { status(`error: ${e.message}`); }
}

let pending = false;
function liveUpdate() {  // at most one request in flight while drawing
  if (pending) return;
  pending = true;
  update().finally(() => { pending = false; });
}

function renderQueue() {
  const q = $("queue");
  q.innerHTML = "";
  S.meta.items.forEach((it, k) => {
    const b = document.createElement("button");
    b.textContent = `${it.key}`;
    b.title = `label ${it.label_name}; predicted ${S.meta.classes[it.pred]}`;
    b.className = [it.correct ? "" : "wrong", it.teacher ? "teacher" : "", k === S.pos ? "current" : ""].join(" ");
    b.onclick = () => open(k);
    q.appendChild(b);
  });
}

async function open(pos) {
  if (S.dirty && !confirm("The edit is not saved. Leave it?")) return;
  S.pos = Math.max(0, Math.min(S.meta.items.length - 1, pos));
  const it = S.meta.items[S.pos];
  S.item = await api(`/api/item/${it.item}`);
  S.base = "model"; S.strokes = []; S.redo = []; S.live = null; S.map = S.item.map; S.dirty = false;
  S.img = new Image();
  S.img.onload = draw;
  S.img.src = `/api/image/${it.item}`;
  showPred($("pred-before"), S.item.before);
  showPred($("pred-after"), S.item.before);
  $("item-info").textContent = `${it.key}: label ${it.label_name}${S.item.teacher ? " (teacher map saved)" : ""}`;
  renderQueue();
  draw();
}

function edit(fn) { fn(); S.redo = []; S.dirty = true; update(); }

function undo() {
  if (!S.strokes.length) return;
  S.redo.push(S.strokes.pop()); S.dirty = true; update();
}

function redo() {
  if (!S.redo.length) return;
  S.strokes.push(S.redo.pop()); S.dirty = true; update();
}

function setBase(base) {  // a new base starts a new edit history entry: strokes are kept on top of it
  edit(() => { S.base = base; S.strokes = []; });
}

async function save() {
  try {
    const r = await api("/api/save", { item: S.item.item, base: S.base, strokes: S.strokes });
    S.dirty = false;
    S.meta.items[S.pos].teacher = true;
    renderQueue();
    status(`saved ${r.saved} (${r.count} teacher maps)`);
  } catch (e) { status(`save failed: ${e.message}`); }
}

function pointer(e) {
  const r = $("cursor").getBoundingClientRect();
  const k = S.meta.image_size[1] / r.width;
  return [(e.clientX - r.left) * k, (e.clientY - r.top) * k];
}

function brush() {
  return {
    mode: document.querySelector("input[name=mode]:checked").value,
    radius: parseFloat($("size").value), strength: parseFloat($("strength").value),
  };
}

function drawCursor(e) {
  const c = $("cursor").getContext("2d");
  c.clearRect(0, 0, 512, 512);
  if (!e) return;
  const [x, y] = pointer(e), k = scale();
  c.strokeStyle = "#fff"; c.lineWidth = 1.5;
  c.beginPath(); c.arc(x * k, y * k, brush().radius * k, 0, 7); c.stroke();
}

function setupCanvas() {
  const cv = $("cursor");
  cv.addEventListener("pointerdown", (e) => {
    cv.setPointerCapture(e.pointerId);
    S.live = { ...brush(), points: [pointer(e)] };
    draw(); liveUpdate();
  });
  cv.addEventListener("pointermove", (e) => {
    drawCursor(e);
    if (!S.live) return;
    S.live.points.push(pointer(e));
    draw(); liveUpdate();
  });
  const end = () => {
    if (!S.live) return;
    const s = S.live; S.live = null;
    edit(() => S.strokes.push(s));
  };
  cv.addEventListener("pointerup", end);
  cv.addEventListener("pointercancel", end);
  cv.addEventListener("pointerleave", () => drawCursor(null));
}

function setSize(v) {
  $("size").value = Math.max(1, Math.min(64, v));
  $("size-val").textContent = $("size").value;
}

function keys(e) {
  if (e.target.tagName === "INPUT" && e.target.type === "file") return;
  const k = e.key.toLowerCase(), ctrl = e.ctrlKey || e.metaKey;
  if (ctrl && k === "z") { e.preventDefault(); e.shiftKey ? redo() : undo(); return; }
  if (ctrl && k === "y") { e.preventDefault(); redo(); return; }
  if (ctrl && k === "s") { e.preventDefault(); save(); return; }
  if (ctrl || e.altKey) return;
  const act = {
    e: () => ($("mode-erase").checked = true), a: () => ($("mode-add").checked = true),
    "[": () => setSize(+$("size").value - 2), "]": () => setSize(+$("size").value + 2),
    r: () => setBase("model"), 0: () => setBase("zeros"), 1: () => setBase("ones"),
    v: () => { $("side").checked = !$("side").checked; sideBySide(); },
    s: save, n: () => open(S.pos + 1), arrowright: () => open(S.pos + 1),
    p: () => open(S.pos - 1), arrowleft: () => open(S.pos - 1),
  }[k];
  if (act) { e.preventDefault(); act(); }
}

function sideBySide() { $("stack2").hidden = !$("side").checked; draw(); }

async function importMask(e) {
  const f = e.target.files[0];
  if (!f) return;
  const url = await new Promise((ok) => { const r = new FileReader(); r.onload = () => ok(r.result); r.readAsDataURL(f); });
  try {
    const r = await api("/api/mask", { item: S.item.item, png: url });
    setBase(r.map);
  } catch (err) { status(`mask import failed: ${err.message}`); }
  e.target.value = "";
}

async function main() {
  S.meta = await api("/api/items");
  $("model").textContent = `${S.meta.model_name} ${S.meta.model_id.slice(0, 12)}`;
  const wrong = S.meta.items.filter((it) => !it.correct).length;
  status(`${S.meta.items.length} images, ${wrong} misrecognized (first in the queue)`);
  $("undo").onclick = undo; $("redo").onclick = redo; $("save").onclick = save;
  $("reset").onclick = () => setBase("model"); $("clear").onclick = () => setBase("zeros");
  $("fill").onclick = () => setBase("ones");
  $("opacity").oninput = draw; $("side").onchange = sideBySide;
  $("size").oninput = () => setSize(+$("size").value);
  $("mask").onchange = importMask;
  document.addEventListener("keydown", keys);
  setupCanvas();
  await open(0);
  document.body.dataset.ready = "1";
}

main().catch((e) => status(`error: ${e.message}`));

// The page of python -m lenet5.serve: the canvas is sent to /api/predict while it is drawn on
// (one request at a time, the newest drawing next), and each answer is shown: the bars, the
// preprocessing's stages and every layer's output.
"use strict";

const $ = (id) => document.getElementById(id);
const pad = $("pad");
const pen = pad.getContext("2d");
const INK = 18; // stroke width on the 280-pixel canvas: about MNIST's, once a digit as tall as it is scaled into 20x20
const ZOOM = 5; // screen pixels per pixel of the 20x20 and 28x28 stages
const CENTRE = 14; // where the preprocessing puts the centre of mass (lenet5/images.py)

// window.lenet5.latencies: per stroke, the milliseconds from its last change to the canvas (the
// last move before the pointer was lifted) to the bars showing the answer to the whole stroke,
// painted. For the curious, and the browser test.
const state = {
  version: 0, // bumped by every change to the drawing
  sent: 0, // the version last sent
  epoch: 0, // bumped by Clear: answers to requests from before are dropped
  inFlight: 0, // requests sent and not yet answered
  rendered: -1, // the newest version whose answer is shown: older answers, arriving late, are dropped
  empty: true,
  upload: null,
  changedAt: 0, // when the drawing last changed
  shownVersion: -1, // the version whose answer the bars show, and since when
  shownAt: 0,
  strokeEnd: null,
  strokeVersion: 0,
  latencies: [],
  classes: [],
};
window.lenet5 = state;

function blank() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
}

function at(event) {
  const box = pad.getBoundingClientRect();
  return [((event.clientX - box.left) * pad.width) / box.width, ((event.clientY - box.top) * pad.height) / box.height];
}

function stroke(points) {
  pen.strokeStyle = "#000";
  pen.lineWidth = INK;
  pen.lineCap = pen.lineJoin = "round";
  pen.fillStyle = "#000";
  pen.beginPath();
  pen.arc(...points[0], INK / 2, 0, 2 * Math.PI); // a dot where the stroke starts: a zero-length line draws nothing
  pen.fill();
  pen.beginPath();
  pen.moveTo(...points[0]);
  for (const point of points.slice(1)) pen.lineTo(...point);
  pen.stroke();
  state.changedAt = performance.now();
  state.version++;
  state.empty = false;
  schedule();
}

let last = null; // the pointer's last point while a stroke is drawn
pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  last = at(event);
  stroke([last]);
});
pad.addEventListener("pointermove", (event) => {
  if (!last) return;
  const coalesced = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  const points = [last, ...(coalesced.length ? coalesced : [event]).map(at)];
  last = points[points.length - 1];
  stroke(points);
});
for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    if (!last) return;
    last = null;
    state.strokeEnd = state.changedAt;
    state.strokeVersion = state.version;
    timed(); // the answer may be shown already
    schedule(2);
  });
}

$("clear").addEventListener("click", () => {
  blank();
  state.epoch++;
  state.version++;
  state.sent = state.version;
  state.empty = true;
  state.upload = null;
  state.strokeEnd = null;
  showNothing();
});

$("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  event.target.value = ""; // the same file again is a change too
  blank();
  state.epoch++;
  state.version++;
  state.sent = state.version; // the picture itself is sent, not the canvas
  state.empty = false;
  state.upload = file;
  schedule(2);
  try {
    // Shown on the canvas, to draw on further; a format the browser cannot show is still sent.
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const [w, h] = [bitmap.width * scale, bitmap.height * scale];
    pen.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (error) {
    // The server reads more formats than the browser shows; its answer, or its error, follows.
  }
});

// One request at a time while drawing; the end of a stroke, or an upload, goes at once beside it.
async function schedule(most = 1) {
  if (state.inFlight >= most) return;
  const [version, epoch] = [state.version, state.epoch];
  let body = state.upload;
  state.upload = null;
  if (!body && (state.empty || state.sent === version)) return;
  state.inFlight++;
  state.sent = version;
  try {
    body = body || (await new Promise((done) => pad.toBlob(done, "image/png"))); // a copy of the canvas now
    const headers = { "Content-Type": body.type || "application/octet-stream" };
    const response = await fetch("api/predict", { method: "POST", body, headers });
    const answer = await response.json().catch(() => ({ error: `the server answered ${response.status}` }));
    if (epoch !== state.epoch || version < state.rendered) return;
    state.rendered = version;
    if (!response.ok) {
      say(answer.error, true);
      return;
    }
    show(answer);
    await new Promise(requestAnimationFrame); // the bars painted
    if (version < state.shownVersion) return;
    [state.shownVersion, state.shownAt] = [version, performance.now()];
    state.server = /dur=([\d.]+)/.exec(response.headers.get("Server-Timing") || "");
    timed();
  } catch (error) {
    say(`the server did not answer (${error.message})`, true);
  } finally {
    state.inFlight--;
    if (state.upload || (!state.empty && state.sent !== state.version)) schedule();
  }
}

function timed() {
  if (state.strokeEnd === null || state.shownVersion < state.strokeVersion) return;
  const ms = Math.max(0, state.shownAt - state.strokeEnd);
  state.latencies.push(ms);
  state.strokeEnd = null;
  $("timing").textContent =
    `bars updated ${Math.round(ms)} ms after the stroke's last move` +
    (state.server ? ` (the server took ${Math.round(state.server[1])} ms)` : "");
}

function say(text, problem = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", problem);
}

function bars(classes, probabilities) {
  const list = $("bars");
  if (list.children.length !== classes.length) {
    list.replaceChildren(
      ...classes.map((name) => {
        const item = document.createElement("li");
        item.dataset.class = name;
        item.innerHTML = '<span class="name"></span><span class="bar"><span class="fill"></span></span><span class="p"></span>';
        item.querySelector(".name").textContent = name;
        return item;
      })
    );
  }
  const best = probabilities.indexOf(Math.max(...probabilities));
  [...list.children].forEach((item, i) => {
    item.querySelector(".fill").style.width = `${(100 * probabilities[i]).toFixed(1)}%`;
    item.querySelector(".p").textContent = `${(100 * probabilities[i]).toFixed(1)}%`;
    item.classList.toggle("best", i === best && probabilities[i] > 0);
  });
}

function showNothing() {
  bars(state.classes, state.classes.map(() => 0));
  $("top").textContent = "";
  delete $("top").dataset.class;
  $("steps").replaceChildren();
  $("layer-list").replaceChildren();
  $("timing").textContent = "";
  say("Draw one digit with the mouse, a pen or a finger, as large as the square.");
}

function show(answer) {
  bars(answer.classes, answer.probabilities);
  const p = Math.max(...answer.probabilities);
  $("top").textContent = `${answer.prediction} (${(100 * p).toFixed(1)}%)`;
  $("top").dataset.class = answer.prediction;
  say(`LeNet-5 reads a ${answer.prediction}.`);
  steps(answer);
  layers(answer.layers);
  if (answer.note) $("layers-note").textContent = answer.note;
}

function figure(key, caption) {
  let item = $("steps").querySelector(`[data-step="${key}"]`);
  if (!item) {
    item = document.createElement("figure");
    item.dataset.step = key;
    item.innerHTML = "<canvas></canvas><figcaption></figcaption>";
    $("steps").append(item);
  }
  item.querySelector("figcaption").textContent = caption;
  return item.querySelector("canvas");
}

async function picture(src) {
  const image = new Image();
  image.src = src;
  await image.decode();
  return image;
}

async function steps(answer) {
  const s = answer.steps;
  const [ink, cropped, scaled, mnist] = await Promise.all([s.ink, s.cropped, s.scaled, s.mnist].map(picture));
  const [cy, cx] = s.centre_of_mass;
  const draw = (canvas, image, w, h, zoom, x = 0, y = 0) => {
    canvas.width = w * zoom;
    canvas.height = h * zoom;
    const c = canvas.getContext("2d");
    c.imageSmoothingEnabled = false;
    c.fillStyle = "#000";
    c.fillRect(0, 0, canvas.width, canvas.height);
    c.drawImage(image, x * zoom, y * zoom, image.width * zoom, image.height * zoom);
    return c;
  };
  draw(figure("ink", "light ink on black"), ink, ink.width, ink.height, 1);
  draw(figure("cropped", `cropped to the ink: ${s.cropped_size[1]}×${s.cropped_size[0]}`), cropped, cropped.width, cropped.height, 1);
  const box = draw(
    figure("scaled", `scaled into 20×20: ${s.scaled_size[1]}×${s.scaled_size[0]}`),
    scaled, 20, 20, ZOOM, (20 - scaled.width) / 2, (20 - scaled.height) / 2
  );
  box.strokeStyle = "#3a7";
  box.strokeRect(0.5, 0.5, 20 * ZOOM - 1, 20 * ZOOM - 1);
  const centred = draw(
    figure("centred", `centre of mass (${cx.toFixed(1)}, ${cy.toFixed(1)}) at (14, 14)`), mnist, 28, 28, ZOOM
  );
  centred.strokeStyle = "#3a7";
  centred.beginPath();
  centred.moveTo((CENTRE + 0.5) * ZOOM, 0);
  centred.lineTo((CENTRE + 0.5) * ZOOM, 28 * ZOOM);
  centred.moveTo(0, (CENTRE + 0.5) * ZOOM);
  centred.lineTo(28 * ZOOM, (CENTRE + 0.5) * ZOOM);
  centred.stroke();
  centred.fillStyle = "#e33";
  centred.beginPath();
  centred.arc((cx + 0.5) * ZOOM, (cy + 0.5) * ZOOM, 4, 0, 2 * Math.PI);
  centred.fill();
  draw(figure("mnist", "the 28×28 image the model sees"), mnist, 28, 28, ZOOM);
}

function layers(list) {
  const holder = $("layer-list");
  if (!list) {
    holder.replaceChildren();
    return;
  }
  for (const layer of list) {
    let item = holder.querySelector(`[data-layer="${layer.name}"]`);
    if (!item) {
      item = document.createElement("div");
      item.className = "layer";
      item.dataset.layer = layer.name;
      item.innerHTML = "<h3></h3><div class=\"maps\"></div>";
      holder.append(item);
    }
    const flat = layer.values.flat(2);
    const high = Math.max(...flat.map(Math.abs)) || 1;
    const [low, top] = [Math.min(...flat), Math.max(...flat)];
    const what =
      layer.kind === "maps"
        ? `${layer.shape[0]} maps of ${layer.shape[2]}×${layer.shape[1]}`
        : `${layer.shape[0]} ${layer.name === "output" ? "logits" : "units"}`;
    item.querySelector("h3").textContent = `${layer.name.toUpperCase()}: ${what}, from ${low.toFixed(2)} to ${top.toFixed(2)}`;
    if (layer.kind === "maps") maps(item.querySelector(".maps"), layer, high);
    else units(item.querySelector(".maps"), layer, low, high);
  }
}

function colour(value, high, pixel, i) {
  const v = Math.abs(value) / high;
  pixel[i] = value > 0 ? 255 * v : 0;
  pixel[i + 1] = value > 0 ? 255 * v : 115 * v;
  pixel[i + 2] = 255 * v;
  pixel[i + 3] = 255;
}

function maps(holder, layer, high) {
  const [count, h, w] = layer.shape;
  if (holder.children.length !== count) {
    const size = count <= 6 ? 84 : 56; // screen pixels per map: C1's and S2's six larger than C3's and S4's sixteen
    holder.replaceChildren(
      ...layer.values.map(() => {
        const canvas = document.createElement("canvas");
        canvas.className = "map";
        canvas.width = w;
        canvas.height = h;
        canvas.style.width = canvas.style.height = `${size}px`;
        return canvas;
      })
    );
  }
  layer.values.forEach((map, k) => {
    const c = holder.children[k].getContext("2d");
    const image = c.createImageData(w, h);
    map.forEach((row, y) => row.forEach((value, x) => colour(value, high, image.data, 4 * (y * w + x))));
    c.putImageData(image, 0, 0);
  });
}

function units(holder, layer, low, high) {
  const values = layer.values;
  let canvas = holder.querySelector("canvas.units");
  if (!canvas) {
    canvas = document.createElement("canvas");
    canvas.className = "units";
    holder.replaceChildren(canvas);
  }
  const bar = Math.max(3, Math.floor(480 / values.length));
  canvas.width = bar * values.length;
  canvas.height = 64;
  const c = canvas.getContext("2d");
  c.clearRect(0, 0, canvas.width, canvas.height);
  const zero = low < 0 ? canvas.height / 2 : canvas.height - 1; // negative values hang below the middle
  const reach = low < 0 ? canvas.height / 2 - 1 : canvas.height - 2;
  values.forEach((value, i) => {
    const length = (reach * value) / high;
    c.fillStyle = value >= 0 ? "#d98c1f" : "#3f7fe0";
    c.fillRect(i * bar, zero - Math.max(length, 0), bar - 1, Math.max(Math.abs(length), 1));
  });
  c.fillStyle = "#888";
  c.fillRect(0, zero, canvas.width, 1);
}

async function start() {
  blank();
  try {
    const info = await (await fetch("api/model")).json();
    state.classes = info.classes;
    $("model").textContent = info.what;
    $("layers-note").textContent = info.note || "";
  } catch (error) {
    say(`the server did not answer (${error.message})`, true);
  }
  showNothing();
}

start();

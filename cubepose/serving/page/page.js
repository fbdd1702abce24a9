// The page of `cubepose serve`: sends images (files or camera frames) to POST /predict, as any client does, and
// shows each answer. The service projects every pose (`outline=true`), so the page only draws the polylines it is
// given: cubepose's projection and lens model live in one place, on the server.
"use strict";

const COLOURS = { found: "rgb(255, 200, 0)", withheld: "rgb(140, 140, 140)" };
const AXIS_COLOURS = ["rgb(230, 40, 40)", "rgb(40, 200, 60)", "rgb(50, 90, 240)"]; // x, y, z
const CAMERA_KEYS = ["fx", "fy", "cx", "cy"];

const byId = (id) => document.getElementById(id);

function setStatus(text) {
  byId("status").textContent = text;
}

function element(tag, text, attributes = {}) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  return node;
}

// -- the model --------------------------------------------------------------------------------------

async function showModel() {
  const list = byId("model");
  let identity;
  try {
    const response = await fetch("/model");
    identity = await response.json();
  } catch (error) {
    list.replaceChildren(element("dt", "error"), element("dd", `GET /model failed: ${error}`));
    return;
  }
  const camera = identity.training_camera;
  const rows = [
    ["checkpoint", identity.checkpoint],
    ["SHA-256", identity.sha256],
    ["training step", identity.global_step],
    ["network", identity.network && identity.network.type],
    ["instances per image", identity.max_instances],
    [
      "training camera",
      camera
        ? `fx ${camera.intrinsics[0].toFixed(2)}, fy ${camera.intrinsics[1].toFixed(2)}, cx ${camera.intrinsics[2].toFixed(2)}, ` +
          `cy ${camera.intrinsics[3].toFixed(2)} in its ${camera.image_size} px input`
        : "not recorded: give the images' intrinsics",
    ],
  ];
  list.replaceChildren(...rows.flatMap(([name, value]) => [element("dt", name), element("dd", String(value))]));
  if (camera) {
    showCamera(camera.intrinsics, `the training camera in the model's ${camera.image_size} px input`);
  } else {
    byId("camera-own").checked = true;
    cameraModeChanged();
  }
}

// -- the camera query ---------------------------------------------------------------------------------

function cameraModeChanged() {
  const own = byId("camera-own").checked;
  for (const id of [...CAMERA_KEYS, "distortion"]) byId(id).disabled = !own;
}

// The query of one request; throws an Error naming the field to fix.
function requestQuery() {
  const query = new URLSearchParams({ outline: "true" });
  if (!byId("camera-own").checked) return query;
  const given = CAMERA_KEYS.filter((key) => byId(key).value.trim() !== "");
  if (given.length !== CAMERA_KEYS.length) {
    const missing = CAMERA_KEYS.filter((key) => !given.includes(key)).join(", ");
    throw new Error(`the camera needs fx, fy, cx and cy; fill in ${missing} or choose the training camera`);
  }
  for (const key of CAMERA_KEYS) query.set(key, byId(key).value.trim());
  const distortion = byId("distortion").value.replace(/\s+/g, "");
  if (distortion) query.set("distortion", distortion);
  return query;
}

// Fill the fields with ``camera`` (fx, fy, cx, cy[, lens]) and say what it is; never over what the user typed.
function showCamera(camera, source) {
  if (!camera || byId("camera-own").checked) return;
  CAMERA_KEYS.forEach((key, i) => (byId(key).value = String(Number(camera[i].toFixed(3)))));
  const lens = camera.slice(4);
  byId("distortion").value = lens.some((value) => value !== 0) ? lens.join(", ") : "";
  byId("camera-source").textContent = `The fields show ${source}.`;
}

// -- predicting -------------------------------------------------------------------------------------

// Predict one image and show the answer, which is returned.
async function predict(blob, name) {
  let query;
  try {
    query = requestQuery();
  } catch (error) {
    const answer = { error: error.message };
    await showResult(name, null, answer);
    return answer;
  }
  let answer;
  try {
    const response = await fetch(`/predict?${query}`, {
      method: "POST",
      body: blob,
      headers: { "Content-Type": blob.type || "application/octet-stream" },
    });
    try {
      answer = await response.json();
    } catch {
      answer = { error: `the service answered ${response.status} ${response.statusText} without a message` };
    }
  } catch (error) {
    answer = { error: `the service did not answer (${error.message}); is cubepose serve still running?` };
  }
  showCamera(answer.camera, `the camera ${name}'s poses were solved with`);
  await showResult(name, blob, answer);
  return answer;
}

async function predictFiles(files) {
  const list = Array.from(files);
  for (const [index, file] of list.entries()) {
    setStatus(`Predicting ${file.name} (${index + 1} of ${list.length})…`);
    await predict(file, file.name);
  }
  setStatus(`Done: ${list.length} image${list.length === 1 ? "" : "s"} predicted.`);
}

// -- showing an answer --------------------------------------------------------------------------------

async function decoded(blob) {
  try {
    return await createImageBitmap(blob);
  } catch {
    return null; // a format the browser cannot show (PPM) or a broken file: the answer is shown without it
  }
}

function drawPolyline(context, points) {
  context.beginPath();
  points.forEach(([u, v], i) => (i ? context.lineTo(u, v) : context.moveTo(u, v)));
  context.stroke();
}

function drawPoses(image, poses) {
  const canvas = element("canvas", null, { role: "img" });
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  context.lineWidth = Math.max(1.5, image.width / 320);
  for (const pose of poses) {
    if (!pose.outline) continue;
    context.strokeStyle = pose.found === false ? COLOURS.withheld : COLOURS.found;
    pose.outline.box.forEach((edge) => drawPolyline(context, edge));
    pose.outline.axes.forEach((axis, i) => {
      context.strokeStyle = AXIS_COLOURS[i];
      drawPolyline(context, axis);
    });
  }
  return canvas;
}

const centimetres = (metres) => (100 * metres).toFixed(2);

function poseTable(name, poses) {
  const table = element("table", null, { class: "poses" });
  table.append(element("caption", `Poses in ${name}`));
  const header = element("tr");
  const columns = ["#", "x (cm)", "y (cm)", "z (cm)", "rotation (x, y, z, w)", "confidence", "reprojection error (px)", "status"];
  columns.forEach((column) => header.append(element("th", column, { scope: "col" })));
  table.append(header);
  poses.forEach((pose, index) => {
    const row = element("tr", null, { class: pose.found === false ? "withheld" : "found" });
    row.append(element("th", String(index + 1), { scope: "row" }));
    pose.translation.forEach((metres, axis) => row.append(element("td", centimetres(metres), { "data-axis": "xyz"[axis] })));
    row.append(element("td", pose.quaternion.map((value) => value.toFixed(4)).join(", ")));
    row.append(element("td", "confidence" in pose ? pose.confidence.toFixed(3) : "—"));
    row.append(element("td", "reprojection_error" in pose ? pose.reprojection_error.toFixed(2) : "—"));
    row.append(element("td", pose.found === false ? pose.reason : "found"));
    table.append(row);
  });
  return table;
}

function describe(name, poses) {
  if (!poses.length) return `${name}: no object found`;
  const each = poses.map((pose, i) => {
    const [x, y, z] = pose.translation.map(centimetres);
    return `pose ${i + 1}${pose.found === false ? " (withheld)" : ""} at x ${x}, y ${y}, z ${z} cm`;
  });
  return `${name} with ${poses.length} pose${poses.length === 1 ? "" : "s"} drawn: ${each.join("; ")}`;
}

async function showResult(name, blob, answer) {
  const article = element("article", null, { class: "result" });
  article.append(element("h3", name));
  if (answer.error) {
    article.append(element("p", `${name}: ${answer.error}`, { role: "alert", class: "error" }));
  } else {
    const poses = answer.poses || [];
    const image = blob ? await decoded(blob) : null;
    if (image) {
      const canvas = drawPoses(image, poses);
      canvas.setAttribute("aria-label", describe(name, poses));
      article.append(canvas);
    } else {
      article.append(element("p", "(this browser cannot show the image; its poses are below)", { class: "note" }));
    }
    article.append(poses.length ? poseTable(name, poses) : element("p", "No object found in this image."));
  }
  byId("results").prepend(article);
}

// -- the browser's camera -----------------------------------------------------------------------------

let stream = null;
let live = false;

async function startCamera() {
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: false });
  } catch (error) {
    setStatus(`The camera is not available (${error.name || error}); choose image files instead.`);
    return;
  }
  const view = byId("camera-view");
  view.srcObject = stream;
  view.hidden = false;
  await view.play();
  for (const id of ["camera-capture", "camera-live", "camera-stop"]) byId(id).disabled = false;
  byId("camera-start").disabled = true;
  setStatus("The camera is on: predict a frame, or predict continuously.");
}

function stopCamera() {
  live = false;
  byId("camera-live").checked = false;
  if (stream) stream.getTracks().forEach((track) => track.stop());
  stream = null;
  byId("camera-view").hidden = true;
  for (const id of ["camera-capture", "camera-live", "camera-stop"]) byId(id).disabled = true;
  byId("camera-start").disabled = false;
  setStatus("The camera is off.");
}

async function captureFrame() {
  const view = byId("camera-view");
  const canvas = element("canvas");
  canvas.width = view.videoWidth;
  canvas.height = view.videoHeight;
  canvas.getContext("2d").drawImage(view, 0, 0);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  const answer = await predict(blob, `camera frame ${new Date().toLocaleTimeString()}`);
  const shown = byId("results").children; // keep the newest few frames of a live stream
  while (live && shown.length > 5) shown[shown.length - 1].remove();
  if (live && answer.error) {
    live = false; // a refused frame would be refused again: stop rather than ask in a loop
    byId("camera-live").checked = false;
    setStatus(`Stopped predicting continuously: ${answer.error}`);
  }
}

async function predictLive() {
  live = byId("camera-live").checked;
  while (live && stream) await captureFrame(); // one request in flight at a time
}

// -- wiring -------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  byId("request").addEventListener("submit", (event) => event.preventDefault());
  for (const id of ["camera-training", "camera-own"]) byId(id).addEventListener("change", cameraModeChanged);
  byId("files").addEventListener("change", async (event) => {
    await predictFiles(event.target.files);
    event.target.value = ""; // the same file chosen again is predicted again
  });
  byId("camera-start").addEventListener("click", startCamera);
  byId("camera-stop").addEventListener("click", stopCamera);
  byId("camera-capture").addEventListener("click", captureFrame);
  byId("camera-live").addEventListener("change", predictLive);
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
    byId("camera-start").disabled = true;
    byId("camera-start").title = "this browser gives pages no camera here (it needs https or localhost)";
  }
  showModel();
});

// The page's script: it talks to the public API only (no build step, no third-party code). The key lives in
// sessionStorage (this tab only): it survives a reload, not the browser session.
"use strict";
const $ = (id) => document.getElementById(id);
const FINAL = ["succeeded", "failed", "canceled"];
let models = {};
const sleep = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

// ---- API ----------------------------------------------------------------------------------------------
/** The key as typed in the field: an upload goes with it (and its card keeps it, ``li.dataset.key``). */
const apiKey = () => $("key").value.trim();
/** The key in use: the page's own reads (models, history) go with it, and only the field's change event sets it.
 * They took the field's text as it was being typed: a half-edited key got 401s, and the history stopped for good. */
let keyInUse = "";

class ApiError extends Error {
  constructor(status, message, retryAfter = 0, code = "") {
    super(message);
    this.status = status; // 0: the server could not be reached
    this.retryAfter = retryAfter; // seconds, from the answer's Retry-After
    this.code = code; // the API's stable error code
  }
}

/** ``path`` asked with ``key`` (a card's requests go with the key it was sent with, not the key in use). */
async function api(path, options = {}, key = keyInUse) {
  if (/[^\x21-\x7e]/.test(key)) { // fetch refuses such a header, which read as "server unreachable"
    throw new ApiError(401, "the API key holds a space or an invisible character (often copied along with it): " +
                            "type or paste it again under Options");
  }
  let response;
  try {
    const auth = key ? { Authorization: `Bearer ${key}` } : {};
    response = await fetch(path, { ...options, headers: { ...auth, ...(options.headers || {}) } });
  } catch {
    throw new ApiError(0, "the server could not be reached; check the connection and try again");
  }
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    throw new ApiError(response.status, plainError(response.status, body, key),
                       Number(response.headers.get("Retry-After")) || 0, body.code || "");
  }
  return body;
}

/** A random Idempotency-Key: ``crypto.getRandomValues`` works on a plain-HTTP page (``crypto.randomUUID`` exists
 * only on HTTPS and localhost, so every upload from http://server.lan failed). */
const idempotencyKey = () => [...crypto.getRandomValues(new Uint8Array(16))]
  .map((byte) => byte.toString(16).padStart(2, "0")).join("");

/** The words for a refusal: the API's own ``detail`` wherever it gives one (a 413's names the limit it hit), but a
 * 401's speaks of headers, so the page says where the key goes (``key``: the one the request went with). */
function plainError(status, body, key) {
  if (status === 401) {
    return key ? "this API key was not accepted: check it under Options"
      : "this server needs an API key: enter it under Options";
  }
  if (status === 413) return body.detail || "the file is larger than this server accepts"; // a proxy's: no JSON
  if (status === 429) return `limit reached: ${body.detail || "too many requests"}; try again later`;
  return body.detail || `the server answered ${status}`;
}

// ---- options ------------------------------------------------------------------------------------------
$("key").value = sessionStorage.getItem("upscalerKey") || "";
keyInUse = apiKey();
$("key").addEventListener("change", () => {
  sessionStorage.setItem("upscalerKey", $("key").value);
  keyInUse = apiKey();
  // another key is another customer: the previous key's jobs leave the page (those already sent with this key,
  // typed before the field lost focus, stay), with the picture open in Compare, and the history goes at once,
  // whether or not the key is accepted. Only photos refused for their key (none, or a mistyped one) stay, sent
  // again with this one (they were dropped, and the whole batch had to be picked again; a refused key owns no
  // job): another customer's jobs and refused files never do, nor an upload still on its way under the previous
  // key (its job would be that key's)
  closeViewer(false);
  for (const li of [...$("cards").children]) {
    if (li.awaitingKey) {
      li.awaitingKey();
    } else if (li.dataset.key !== keyInUse) {
      li.remove();
    }
  }
  clearHistory();
  clearUsage();
  loadModels();
  loadHistory(true);
});
const syncSize = () => {
  // a hidden fieldset is disabled too: a value left in it (a width of 0) no longer blocks every upload unseen
  for (const id of ["target", "print"]) $(id).hidden = $(id).disabled = $("size").value !== id;
  // a box of two sides, in pixels or in print units, is filled one of three ways (a 6 x 4 in print of a 4:3
  // photo came out 5.33 x 4 in: the print size had no fit to choose)
  $("fit").hidden = $("fit").disabled = $("fit-label").hidden = !["target", "print"].includes($("size").value);
};
$("size").addEventListener("change", syncSize);
syncSize();
const syncQuality = () => {
  const lossy = ["jpeg", "webp", "avif"].includes($("format").value);
  $("quality").disabled = !lossy;
};
$("format").addEventListener("change", syncQuality);
syncQuality();
const syncDenoise = () => {
  const offered = Boolean(models[$("model").value] && models[$("model").value].denoise);
  $("denoise").disabled = !offered;
  if (!offered) $("denoise").value = "auto";
};
$("model").addEventListener("change", syncDenoise);

async function loadModels() {
  try {
    const { data } = await api("v1/models");
    // the model chosen stays chosen where the list still offers it: another key's list put the default back, and
    // the next photos went with a model nobody chose
    const chosen = $("model").value;
    $("model").length = 0;
    models = {};
    for (const m of data) {
      models[m.name] = m;
      const option = new Option(`${m.name}${m.default ? " (default)" : ""}`, m.name, m.default, m.default);
      const what = modelSummary(m);
      if (what && what !== m.name) option.text += ` — ${what.length > 48 ? `${what.slice(0, 47)}…` : what}`;
      option.title = m.description || "";
      $("model").add(option);
    }
    if (Object.hasOwn(models, chosen)) $("model").value = chosen;
    syncDenoise();
    notice("");
  } catch (error) {
    notice(error.message);
    // an outage or a rate limit passes: try again (a refused key waits for another one)
    if (error.status !== 401) setTimeout(loadModels, Math.max(5, error.retryAfter) * 1000);
  }
}

/** A model's few words on the menu: its description up to the first ':' says what it is ("Fidelity network"), but
 * a model that picks one of its networks per input begins with how ("Per input: ..."), and the default model
 * read "auto — Per input": its routes say what it is. */
function modelSummary(m) {
  if (m.routes) {
    const networks = Object.keys(m.routes).join(" or ");
    return `${networks.charAt(0).toUpperCase()}${networks.slice(1)} network, chosen per input`;
  }
  return (m.description || "").split(/[:;(]/)[0].trim();
}

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

/** A number field's value written as the API reads numbers: the browser takes "1e3" as 1000, and sent as
 * typed the API refused it ("unable to parse string as an integer"). */
const numberIn = (id) => String($(id).valueAsNumber);

/** The job fields for one file, from the options form (validated by the API, which explains any refusal). */
function jobForm(file) {
  const form = new FormData();
  form.append("image", file, file.name);
  if ($("size").value === "target") {
    for (const name of ["width", "height"]) if ($(name).value) form.append(name, numberIn(name));
    if ($("width").value && $("height").value) form.append("fit", $("fit").value);
  } else if ($("size").value === "print") {
    for (const name of ["width", "height"]) {
      if ($(`print-${name}`).value) form.append(`print_${name}`, numberIn(`print-${name}`));
    }
    form.append("print_unit", $("print-unit").value);
    if ($("print-width").value && $("print-height").value) form.append("fit", $("fit").value);
  } else {
    form.append("scale", $("size").value);
  }
  if ($("dpi").value) form.append("dpi", numberIn("dpi"));
  form.append("format", $("format").value);
  if (!$("quality").disabled && $("quality").value) form.append("quality", numberIn("quality"));
  if ($("model").value) form.append("model", $("model").value);
  if (!$("denoise").disabled) form.append("denoise", $("denoise").value);
  return form;
}

// ---- files in ----------------------------------------------------------------------------------------
$("files").addEventListener("change", () => {
  submitAll([...$("files").files]);
  $("files").value = ""; // each selection submits once; choosing again is a new, deliberate submission
});
for (const kind of ["dragenter", "dragover"]) {
  $("drop").addEventListener(kind, (event) => { event.preventDefault(); $("drop").classList.add("over"); });
}
for (const kind of ["dragleave", "drop"]) {
  $("drop").addEventListener(kind, () => $("drop").classList.remove("over"));
}
$("drop").addEventListener("drop", (event) => {
  event.preventDefault();
  dropped(event.dataTransfer).then(submitAll);
});
// files dropped beside the zone: the browser would open the image in this tab, and every card would be lost
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => {
  event.preventDefault();
  if (!$("drop").contains(event.target)) dropped(event.dataTransfer).then(submitAll);
});

// The suffixes a folder's images are known by: shared/formats.py's INPUT_SUFFIXES, mirrored exactly (a test compares
// the two). A name starting with "." is the system's (macOS's ._IMG_0001.jpg beside each photo), never a photo.
const IMAGE_SUFFIXES = [".avif", ".bmp", ".gif", ".heic", ".heif", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff",
  ".webp"];
const isImageName = (name) => !name.startsWith(".")
  && IMAGE_SUFFIXES.includes(name.slice(name.lastIndexOf(".")).toLowerCase());

/** The files of a drop, a dropped folder's images included (its sub-folders too): a folder came through as an
 * unreadable file and was said to be "the server could not be reached". The entries are taken at once (a drop's
 * items are gone once its handler returns), then read. */
async function dropped(transfer) {
  if (!transfer.items) return [...transfer.files]; // no items in this browser: as given
  // the files only: a link or text dragged along has no entry, and the whole drop was then taken as given (a
  // folder in it sent as an unreadable file); a link or text alone did nothing, without a word
  const items = [...transfer.items].filter((item) => item.kind === "file");
  const entries = items.map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry());
  if (entries.some((entry) => !entry)) return [...transfer.files]; // no entries: as given
  const files = [];
  const visit = async (entry, inFolder) => {
    if (inFolder && entry.name.startsWith(".")) return; // hidden files and folders: the system's, not photos
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject)).catch(() => null);
      // a folder's other files (sidecars, notes) are not photos sent on purpose: only its images go, as the CLI
      // takes them from a folder (shared.formats.is_image_name)
      if (file && (!inFolder || isImageName(file.name))) files.push(file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) { // readEntries gives a folder in pieces (Chromium: 100 at a time) until an empty one
        const some = await new Promise((resolve, reject) => reader.readEntries(resolve, reject)).catch(() => []);
        if (!some.length) break;
        for (const inner of some.sort((a, b) => a.name.localeCompare(b.name))) await visit(inner, true);
      }
    }
  };
  for (const entry of entries) await visit(entry, false);
  if (!files.length) {
    dropSays(items.length ? "no images in what was dropped"
      : "a link or text was dropped, not a file: save the image, then drop or choose the file");
  }
  return files;
}

/** The drop's own notice (nothing to send in it): the next files chosen or dropped take it away, as the history's
 * next load takes its own; it once stayed on screen above every later card. Another part's notice is left alone. */
let dropNotice = "";
function dropSays(text) {
  if (text || $("notice").textContent === dropNotice) notice(text);
  dropNotice = text;
}

/** The options the browser can check itself, said at the field before any upload (the API explains the rest). */
function optionsReady() {
  const size = $("size").value;
  const target = size === "target" && !$("width").value && !$("height").value;
  $("width").setCustomValidity(target ? "give a width or a height (or both)" : "");
  const print = size === "print" && !$("print-width").value && !$("print-height").value;
  $("print-width").setCustomValidity(print ? "give a print width or height (or both)" : "");
  $("dpi").required = size === "print"; // a print size is pixels = length × DPI
  return $("options").reportValidity();
}

function submitAll(files) {
  if (!files.length) return;
  dropSays("");
  if (!optionsReady()) return;
  let previous = null; // one drop keeps its order: each card after the one before, the batch on top
  for (const file of files) previous = submit(file, previous);
}

// ---- one card per file -------------------------------------------------------------------------------
function makeCard(file, after) {
  const li = document.createElement("li");
  li.className = "card";
  li.innerHTML = `<img alt="" class="thumb"><div class="body"><strong class="name"></strong>
    <progress max="1" value="0"></progress><span class="state" role="status"></span>
    <div class="actions"><button type="button" class="cancel" hidden>Cancel</button>
    <button type="button" class="retry" hidden>Try again</button>
    <button type="button" class="compare" hidden>Compare</button>
    <a class="download" hidden>Download</a></div></div>`;
  li.querySelector(".name").textContent = file.name;
  li.querySelector(".name").title = file.name; // the whole name, where the card shows it cut
  li.querySelector(".cancel").setAttribute("aria-label", `Cancel ${file.name}`);
  li.querySelector(".compare").setAttribute("aria-label", `Compare ${file.name}`);
  // its visible words first (WCAG 2.5.3): "click Try again" by voice did not reach "Send photo.png again"
  li.querySelector(".retry").setAttribute("aria-label", `Try again: ${file.name}`);
  li.dataset.key = apiKey();
  const thumb = li.querySelector(".thumb");
  // the object URL keeps the whole file registered until the tab closes: the drawn thumbnail no longer needs it
  const url = URL.createObjectURL(file);
  thumb.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  thumb.addEventListener("error", () => { // not an image: no broken icon
    thumb.hidden = true;
    URL.revokeObjectURL(url);
  }, { once: true });
  thumb.src = url;
  li.querySelector("progress").setAttribute("aria-label", `progress of ${file.name}`);
  if (after) after.after(li); else $("cards").prepend(li);
  return {
    li, file, job: null, started: null,
    set(text, isError = false) {
      const state = li.querySelector(".state");
      state.textContent = text;
      state.classList.toggle("error", isError);
      li.classList.toggle("failed", isError);
    },
  };
}

/** Show the file's card at once (after ``after``, a card of the same drop) and send it; returns the card. */
function submit(file, after) {
  const card = makeCard(file, after);
  card.set("uploading…");
  send(card);
  return card.li;
}

/** Refusals of the file itself (docs/errors.md): the same file is refused again however often it is sent, so they
 * offer no Try again (a 413 from a proxy comes without a code). */
const FILE_REFUSALS = ["unsupported_image", "image_too_large", "payload_too_large", "missing_image"];
const refusesFile = (error) => error.status === 413 || FILE_REFUSALS.includes(error.code);

/** Send the card's file again, with the options and the key as they are now. */
function sendAgain(card) {
  card.li.awaitingKey = null;
  card.li.dataset.key = apiKey();
  card.li.querySelector(".retry").hidden = true;
  card.started = null;
  card.set("uploading…");
  keepFocusOn(card.li.querySelector(".state"));
  send(card);
}

/** Failures of a job caused by its file or its options (docs/errors.md): sent again, it fails again. */
const JOB_FILE_FAILURES = ["input_unreadable", "image_too_large", "output_too_large", "unsupported_scale",
                           "input_url_refused", "input_too_large"];

/** Try again on a card whose job failed for another cause (a worker lost, storage down, a time limit): the file
 * sent again as a new job (a new Idempotency-Key: the card's first one would answer with the failed job). A failed
 * job's card offered nothing, although it still held the file. */
function offerAgain(card, job) {
  const retry = card.li.querySelector(".retry");
  retry.hidden = JOB_FILE_FAILURES.includes(job.error && job.error.code);
  retry.onclick = () => {
    card.idempotency = idempotencyKey();
    sendAgain(card);
  };
}

async function send(card) {
  const { file } = card;
  const retry = card.li.querySelector(".retry");
  card.li.querySelector("progress").hidden = false;
  // one key per card: "Try again" after an answer that was lost on the way finds the job the first send made
  card.idempotency = card.idempotency || idempotencyKey();
  let job;
  try {
    const headers = { "Idempotency-Key": card.idempotency };
    job = await api("v1/jobs", { method: "POST", body: jobForm(file), headers }, card.li.dataset.key);
  } catch (error) {
    if (error.code === "idempotency_conflict") { // the options changed since the first send: a new request
      card.idempotency = idempotencyKey();
      send(card);
      return;
    }
    if (WAIT_FOR_PLACE.includes(error.code)) {
      waitForPlace(card, error);
      return;
    }
    leavePlaceQueue(card);
    card.set(error.message, true);
    card.li.querySelector("progress").hidden = true;
    // the file is still in hand: send it again (with the options and the key as they are now)
    retry.hidden = refusesFile(error);
    const again = () => sendAgain(card);
    retry.onclick = again;
    card.li.awaitingKey = error.status === 401 ? again : null; // a key given later sends it
    return;
  }
  leavePlaceQueue(card);
  card.job = job;
  card.li.dataset.job = job.id;
  const cancel = card.li.querySelector(".cancel");
  cancel.onclick = async () => {
    cancel.disabled = true;
    try { // with the card's key: the field may hold a key half typed
      await cancelJob(job.id, card.li.dataset.key); // it shows the card
    } catch (error) {
      card.set(error.message, true);
    }
    cancel.disabled = false; // a failure (the API away for a moment) leaves it usable; an ended job hides it
    if (cancel.hidden) keepFocusOn(card.li.querySelector(".state"));
  };
  show(card, job);
  refreshHistorySoon();
  watch(card);
}

// ---- cards waiting for a place under the key's limits ------------------------------------------------
/** Refusals that only mean "later": the key's active-job limit, or its request rate. A drop of 150 photos against
 * a limit of 100 left 50 red cards, each to be clicked (Try again) as jobs ended. */
const WAIT_FOR_PLACE = ["too_many_active_jobs", "rate_limited"];
/** Cards so refused, oldest first. Each is sent again by itself, one at a time, when one of the page's jobs ends
 * or the refusal's Retry-After has passed; sending them all every few seconds would upload every file each time. */
const waitingForPlace = [];
let placeTimer = null;
let placeSending = false;

function waitForPlace(card, error) {
  card.set(`waiting for a free place: ${error.message}`);
  card.li.querySelector("progress").hidden = true;
  if (!waitingForPlace.includes(card)) waitingForPlace.push(card); // a card sent again keeps its turn
  clearTimeout(placeTimer);
  placeTimer = setTimeout(sendWaiting, 1000 * (error.retryAfter || 10));
  // a waiting photo can be withdrawn: it had no Cancel, and each job canceled freed the place that sent the next
  // one, so a batch dropped by mistake could not be stopped
  const cancel = card.li.querySelector(".cancel");
  cancel.hidden = false;
  cancel.onclick = () => {
    leavePlaceQueue(card);
    cancel.hidden = true;
    card.set("canceled (never sent)");
    keepFocusOn(card.li.querySelector(".state"));
  };
}

function leavePlaceQueue(card) {
  const at = waitingForPlace.indexOf(card);
  if (at >= 0) waitingForPlace.splice(at, 1);
}

/** Send the oldest waiting card; once it is taken (or refused for good), the next, as more places may be free. */
function sendWaiting() {
  while (waitingForPlace.length && !waitingForPlace[0].li.isConnected) waitingForPlace.shift(); // another key's
  if (placeSending || !waitingForPlace.length) return;
  clearTimeout(placeTimer);
  placeSending = true;
  const card = waitingForPlace[0];
  card.set("uploading…");
  const cancel = card.li.querySelector(".cancel"); // on its way: its job's Cancel comes with the answer
  const hadFocus = document.activeElement === cancel;
  cancel.hidden = true;
  if (hadFocus) keepFocusOn(card.li.querySelector(".state"));
  send(card).finally(() => {
    placeSending = false;
    if (!waitingForPlace.includes(card)) sendWaiting();
  });
}

/** Keyboard focus onto ``element`` (a status line, a table cell): the button that had it is gone (Cancel, Try
 * again), and focus would fall to the page. */
function keepFocusOn(element) {
  element.tabIndex = -1;
  element.focus();
}

/** The history once for a batch of uploads: a refresh per upload spent a key's request limit, and its 429 then
 * held every card's poll (a batch of twenty showed "waiting in the queue" a minute after all were done). */
let historySoon = null;
function refreshHistorySoon() {
  clearTimeout(historySoon);
  historySoon = setTimeout(() => loadHistory(true), 1000);
}

/** Cancel job ``id`` (with ``key``: a card's, or the key in use); its card, if one watches it, shows the answer. */
async function cancelJob(id, key = keyInUse) {
  const job = await api(`v1/jobs/${id}/cancel`, { method: "POST" }, key);
  for (const card of watched) if (card.job.id === id) show(card, job);
  return job;
}

/** Each card by its job's id, ended ones too (``watched`` lets go of a card once its job ends): a history row's
 * Delete takes the card's Download and Compare away as well. */
const cardsByJob = new Map();

/** Delete ``id``'s input and result now (``DELETE /v1/jobs/<id>``); its card, and Compare if it shows the job, stop
 * offering a result that is gone. */
async function deleteJob(id, key = keyInUse) {
  const job = await api(`v1/jobs/${id}`, { method: "DELETE" }, key);
  const card = cardsByJob.get(id);
  if (card && card.li.isConnected) show(card, job);
  if (view.job && view.job.id === id) closeViewer(false);
  return job;
}

// ---- watching the cards' jobs: one poller for all of them ---------------------------------------------
// One loop, not one per card: each round asks about the POLL_BATCH cards looked at longest ago, every POLL_MS
// (the Retry-After the API gives a job still in progress), so twenty cards cost what four do and a page full of
// photos stays within its key's request limit (a loop per card, every second, reached 600 a minute with twelve
// cards); a 429 holds every poll until its Retry-After, and says so on the cards without failing them.
const POLL_MS = 2000;
const POLL_BATCH = 4;
const watched = new Set();
let holdUntil = 0;
let polling = false;

/** A 429 (a poll's or the history's) holds every poll and history refresh until its Retry-After (10 s when it
 * gives none), and the cards say so: held without a word, done jobs read as queued for a minute. They say until
 * when, which stays true: "checking again in 37 s", written once, stood still for the whole hold (the page looked
 * hung), and a second 429 with a shorter Retry-After understated the hold. */
function holdFor(error) {
  holdUntil = Math.max(holdUntil, Date.now() + 1000 * (error.retryAfter || 10));
  const until = new Date(holdUntil).toLocaleTimeString();
  for (const held of watched) {
    if (!FINAL.includes(held.job.status)) {
      held.set(`${held.job.status}: checking again after ${until} (this key's request limit)`);
    }
  }
}

function watch(card) {
  card.polledAt = Date.now();
  watched.add(card);
  if (!polling) poll();
}

async function poll() {
  polling = true;
  while (watched.size) {
    await sleep(Math.max(POLL_MS, holdUntil - Date.now()));
    for (const card of watched) {
      if (!card.li.isConnected || FINAL.includes(card.job.status)) watched.delete(card); // gone, or ended
    }
    const due = [...watched].sort((a, b) => a.polledAt - b.polledAt).slice(0, POLL_BATCH);
    let ended = false;
    for (const card of due) {
      if (Date.now() < holdUntil) break;
      card.polledAt = Date.now();
      try {
        const job = await api(`v1/jobs/${card.job.id}`, {}, card.li.dataset.key);
        // a Cancel answered while this answer was on its way ended the card: it would bring "upscaling" back
        if (!FINAL.includes(card.job.status)) show(card, job);
      } catch (error) {
        if (error.status === 429) {
          holdFor(error);
        } else if (!FINAL.includes(card.job.status)) {
          card.set(error.message, true);
          if (error.status === 401 || error.status === 404) watched.delete(card); // not this key's job any more
        }
      }
      if (FINAL.includes(card.job.status)) { watched.delete(card); ended = true; }
    }
    if (ended) refreshHistorySoon();
  }
  polling = false;
}

const seconds = (s) => (s < 90 ? `${Math.max(1, Math.round(s))} s` : `${Math.round(s / 60)} min`);

function show(card, job) {
  card.job = job;
  cardsByJob.set(job.id, card);
  const bar = card.li.querySelector("progress");
  bar.value = job.progress;
  const size = `${dims(job.input)} → ${dims(job.output)}`;
  card.li.querySelector(".cancel").hidden = FINAL.includes(job.status);
  if (FINAL.includes(job.status)) sendWaiting(); // a place under the active-job limit may be free now
  if (job.status === "queued") {
    card.set(`waiting in the queue${job.queue_position ? ` (position ${job.queue_position})` : ""} · ${size}`);
  } else if (job.status === "running") {
    card.started = card.started || { at: Date.now(), progress: job.progress };
    const rate = (job.progress - card.started.progress) / ((Date.now() - card.started.at) / 1000);
    const left = rate > 0 ? ` · about ${seconds((1 - job.progress) / rate)} left` : "";
    const bands = job.split ? ` · ${job.split.done}/${job.split.total} bands` : "";
    card.set(`upscaling ${Math.round(job.progress * 100)} %${left}${bands} · ${size}`);
  } else if (job.status === "succeeded") {
    bar.value = 1;
    // no network ran (a same-size job with a model that cannot restore): "· resample" read as a model's name, and
    // "same size (clean up ...)" gave the file back unchanged without a word; the API's reason says so
    const ran = !job.ran ? "" : job.ran.model === "resample" ? ` · ${job.ran.reason}`
      : ` · ${job.ran.model}${job.ran.strength !== null ? ` at strength ${job.ran.strength}` : ""}`;
    const done = `done in ${seconds(job.timings.total_s)} · ${job.output.width}×${job.output.height}, ` +
                 `${(job.output.bytes / 1e6).toFixed(2)} MB${ran}`;
    card.set(done);
    const link = card.li.querySelector(".download");
    const compare = card.li.querySelector(".compare");
    if (!job.result_url) { // deleted meanwhile (retention, or a Delete): a link would point at "null"
      card.set(`${done} · ${job.expired_at ? "its images were deleted" : "the result is no longer kept"}`, true);
      link.hidden = compare.hidden = true;
      return;
    }
    resultLink(link, job, (error) => card.set(`${done} · ${error.message}`, true), card.li.dataset.key);
    link.textContent = `Download ${job.output.filename}`;
    link.hidden = false;
    const why = undrawable(job); // said on the card: a Compare that vanished, or failed "(try again)" for ever
    compare.hidden = Boolean(why);
    if (why) card.set(`${done} · no Compare: ${why}`);
    compare.onclick = () => freshResult(job, card.li.dataset.key)
      .then((fresh) => openViewer(card.file, fresh, compare)).catch((error) => {
        // an original the browser cannot draw (a HEIC, in most) never will be: the result still downloads
        compare.disabled = Boolean(error.undrawable);
        card.set(`${done} · ${error.message}`);
      });
  } else if (job.status === "failed") {
    card.set(`failed: ${job.error ? job.error.message : "unknown error"}`, true);
    bar.hidden = true;
    offerAgain(card, job);
  } else {
    card.set("canceled");
    bar.hidden = true;
  }
}

/** The most pixels a browser decodes into one image: Chromium refuses an image of 2^31 bytes of RGBA or more (a
 * 23000×23000 PNG loads, a 23200×23200 one fails), while the API makes up to UPSCALER_MAX_OUTPUT_PIXELS (1 GP): a
 * 36 MP photo at ×4 (576 MP) said "the result could not be loaded (try again)" at every try. */
const BROWSER_MAX_PIXELS = 2 ** 29;

/** Whether ``url`` is of this page's own origin: only such a result may the page read (its CSP's connect-src, and
 * object storage answers another site's reads only where its CORS rules say so). */
const ownOrigin = (url) => new URL(url, window.location.href).origin === window.location.origin;

/** Why Compare cannot show ``job``'s result in this browser, or "" when it can. */
function undrawable(job) {
  // a TIFF is read by the page itself (tiff.js), which it may do with a result the API serves (local storage)
  if (job.output.format === "tiff" && !ownOrigin(job.result_url)) {
    return "browsers do not draw TIFF, and this one is served by object storage, which the page may not read; " +
           "download it to look at it";
  }
  const pixels = job.output.width * job.output.height;
  if (pixels >= BROWSER_MAX_PIXELS) {
    return `at ${Math.round(pixels / 1e6)} megapixels the result is larger than a browser can draw (about ` +
           `${Math.floor(BROWSER_MAX_PIXELS / 1e6)}); download it to look at it`;
  }
  return "";
}

/** "W×H", or nothing while the size is unknown (a job by image_url before its fetch). */
const dims = (side) => (side.width && side.height ? `${side.width}×${side.height}` : "size not known yet");

/** Whether ``job``'s result link expires within a minute: links expire (an hour by default), and a page left
 * open kept the one it was given, so Download and Compare failed for good. */
const stale = (job) => Date.parse(job.result_url_expires_at || "") - Date.now() < 60_000;

/** ``job``, fetched again (with a fresh link, asked with ``key``) when its result link is about to expire. */
const freshResult = async (job, key = keyInUse) => (stale(job) ? api(`v1/jobs/${job.id}`, {}, key) : job);

/** Point ``link`` at ``job``'s result; a click on a link about to expire fetches a fresh one first (with ``key``). */
function resultLink(link, job, onError, key = keyInUse) {
  link.href = job.result_url;
  link.download = job.output.filename;
  let refreshed = false;
  link.onclick = (event) => {
    // the link in hand still works, or was just fetched (a server whose links live under a minute): follow it
    if (refreshed || !stale(job)) { refreshed = false; return; }
    event.preventDefault();
    api(`v1/jobs/${job.id}`, {}, key).then((fresh) => {
      job = fresh;
      link.href = fresh.result_url;
      refreshed = true;
      link.click();
    }).catch(onError);
  };
}

// ---- before/after viewer at 1:1 ------------------------------------------------------------------------
const view = { input: null, result: null, job: null, zoom: 1, cx: 0, cy: 0, sides: null };

/** ``job``'s result as Compare draws it: an image the browser decodes, or a TIFF's pixels read by tiff.js. */
function loadResult(job) {
  if (job.output.format === "tiff") return tiffResult(job);
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve({ drawable: image, width: image.naturalWidth, height: image.naturalHeight });
    image.onerror = () => reject(new Error("the result could not be loaded (try again)"));
    image.src = job.result_url;
  });
}

/** A TIFF result's pixels as they are in the file: tiff.js applies no colour profile, so ``openViewer`` draws the
 * original without its own too and the two sides agree (the worker keeps the input's profile and its numbers). */
async function tiffResult(job) {
  const response = await fetch(job.result_url).catch(() => null);
  if (!response || !response.ok) throw new Error("the result could not be loaded (try again)");
  const buffer = await response.arrayBuffer();
  let pixels;
  try {
    pixels = await decodeTiff(buffer);
  } catch (error) {
    const failure = new Error(error instanceof TiffUnsupported
      ? `this page cannot draw this TIFF (${error.message}); download it to look at it`
      : "the result could not be read (try again)");
    failure.undrawable = error instanceof TiffUnsupported;
    throw failure;
  }
  const drawable = await createImageBitmap(pixels);
  return { drawable, width: drawable.width, height: drawable.height };
}

async function openViewer(file, job, opener) {
  const raw = job.output.format === "tiff";
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image",
                                                 colorSpaceConversion: raw ? "none" : "default" }).catch(() => {
    const error = new Error("this browser cannot draw the original, so there is nothing to compare with");
    error.undrawable = true;
    throw error;
  });
  const result = await loadResult(job);
  // both images in hand: only now does the viewer change, so a failure leaves it as it was
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d");
  context.drawImage(bitmap, 0, 0);
  view.input = context.getImageData(0, 0, bitmap.width, bitmap.height);
  view.inputCanvas = canvas;
  bitmap.close();
  view.result = result;
  const same = view.input.width === result.width && view.input.height === result.height;
  nameSides(same ? SIDES.same : SIDES.enlarged);
  $("viewer").hidden = false;
  $("viewer-caption").textContent = `${file.name}: ${job.input.width}×${job.input.height} → ` +
    `${job.output.width}×${job.output.height}. Drag or use the arrow keys to move, the slider to compare.`;
  view.job = job;
  view.opener = opener;
  view.zoom = 1;
  view.cx = view.result.width / 2;
  view.cy = view.result.height / 2;
  $("stage").scrollIntoView({ block: "nearest" });
  $("stage").focus();
  draw();
}

function draw() {
  if (!view.result) return;
  const stage = $("stage");
  const width = stage.clientWidth;
  const height = stage.clientHeight;
  const outW = view.result.width;
  const outH = view.result.height;
  const sw = width / view.zoom;
  const sh = height / view.zoom;
  view.cx = Math.min(Math.max(view.cx, Math.min(sw / 2, outW / 2)), Math.max(outW - sw / 2, outW / 2));
  view.cy = Math.min(Math.max(view.cy, Math.min(sh / 2, outH / 2)), Math.max(outH - sh / 2, outH / 2));
  const sx = view.cx - sw / 2;
  const sy = view.cy - sh / 2;
  // a backing pixel per screen pixel, drawn in CSS pixels: one per CSS pixel, the browser stretched the canvases
  // and 1:1 was blurred at devicePixelRatio 2 (phones, Retina screens)
  const dpr = window.devicePixelRatio || 1;
  for (const canvas of [$("before-canvas"), $("after-canvas")]) {
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.getContext("2d").setTransform(dpr, 0, 0, dpr, 0, 0);
  }
  // only the part of the image in view is drawn (an image smaller than the stage sits in its middle)
  const x0 = Math.max(0, sx);
  const y0 = Math.max(0, sy);
  const dw = Math.round((Math.min(outW, sx + sw) - x0) * view.zoom);
  const dh = Math.round((Math.min(outH, sy + sh) - y0) * view.zoom);
  const dx = Math.round((x0 - sx) * view.zoom);
  const dy = Math.round((y0 - sy) * view.zoom);
  if (dw > 0 && dh > 0) {
    const after = $("after-canvas").getContext("2d");
    after.imageSmoothingEnabled = view.zoom < 1; // at 1:1 and closer, every result pixel as it is
    after.drawImage(view.result.drawable, x0, y0, dw / view.zoom, dh / view.zoom, dx, dy, dw, dh);
    const { scaleX, scaleY, left, top } = geometry(view.job, view.input, outW, outH);
    const before = $("before-canvas").getContext("2d");
    if (view.zoom < 1) { // an overview: both sides drawn by the browser's smoothing (point samples read as moiré)
      before.imageSmoothingEnabled = true;
      before.imageSmoothingQuality = "high";
      before.drawImage(view.inputCanvas, (x0 + left) / scaleX, (y0 + top) / scaleY, dw / view.zoom / scaleX,
                       dh / view.zoom / scaleY, dx, dy, dw, dh);
    } else { // each bicubic pixel shown as the result's are (putImageData would write it unscaled)
      const patch = new OffscreenCanvas(dw, dh);
      patch.getContext("2d").putImageData(bicubic(view.input, scaleX, scaleY, x0 + left, y0 + top, dw, dh), 0, 0);
      before.imageSmoothingEnabled = false;
      before.drawImage(patch, dx, dy);
    }
  }
  $("zoom-level").textContent = `${Math.round(view.zoom * 100)} %`;
  split();
}

/** How the result's pixels sit on the input's: a scale per axis and, for fit=cover, the centred crop (as
 * shared/sizing.py plans it). Stretching the whole input onto the result showed a cover job's two halves framed
 * apart. */
function geometry(job, input, outW, outH) {
  if (job.fit !== "cover") return { scaleX: outW / input.width, scaleY: outH / input.height, left: 0, top: 0 };
  const factor = Math.max(outW / input.width, outH / input.height);
  const resizedW = Math.max(1, Math.floor(input.width * factor + 0.5));
  const resizedH = Math.max(1, Math.floor(input.height * factor + 0.5));
  return { scaleX: resizedW / input.width, scaleY: resizedH / input.height,
           left: Math.floor((resizedW - outW) / 2), top: Math.floor((resizedH - outH) / 2) };
}

/** The screen region (sx, sy, zoom) of the input enlarged by bicubic interpolation (a = -0.5, edges clamped). */
function bicubic(input, scaleX, scaleY, sx, sy, width, height) {
  const out = new ImageData(width, height);
  const taps = (count, start, scale, size) => {
    const index = new Int32Array(count * 4);
    const weight = new Float32Array(count * 4);
    for (let i = 0; i < count; i++) {
      const x = (start + (i + 0.5) / view.zoom) / scale - 0.5;
      const base = Math.floor(x);
      for (let k = 0; k < 4; k++) {
        const d = Math.abs(x - (base - 1 + k));
        weight[i * 4 + k] = d < 1 ? 1.5 * d ** 3 - 2.5 * d ** 2 + 1 : d < 2 ? -0.5 * d ** 3 + 2.5 * d ** 2 - 4 * d + 2 : 0;
        index[i * 4 + k] = Math.min(Math.max(base - 1 + k, 0), size - 1);
      }
    }
    return { index, weight };
  };
  const cols = taps(width, sx, scaleX, input.width);
  const rows = taps(height, sy, scaleY, input.height);
  const src = input.data;
  const dst = out.data;
  for (let j = 0; j < height; j++) {
    for (let i = 0; i < width; i++) {
      let r = 0; let g = 0; let b = 0; let a = 0;
      for (let ky = 0; ky < 4; ky++) {
        const wy = rows.weight[j * 4 + ky];
        const rowStart = rows.index[j * 4 + ky] * input.width;
        for (let kx = 0; kx < 4; kx++) {
          const w = wy * cols.weight[i * 4 + kx];
          const p = (rowStart + cols.index[i * 4 + kx]) * 4;
          r += w * src[p]; g += w * src[p + 1]; b += w * src[p + 2]; a += w * src[p + 3];
        }
      }
      const q = (j * width + i) * 4;
      dst[q] = r; dst[q + 1] = g; dst[q + 2] = b; dst[q + 3] = a; // clamped by Uint8ClampedArray
    }
  }
  return out;
}

/** The two sides' names: short on the tags and the slider, whole in the stage's label. A same-size clean-up
 * enlarged nothing (bicubic at ×1 is the original itself): "bicubic" against "upscaled" misnamed both. */
const SIDES = {
  enlarged: { before: "bicubic", after: "upscaled",
              whole: "the input enlarged with bicubic interpolation; right: the upscaled result" },
  same: { before: "original", after: "cleaned up", whole: "the original; right: the cleaned-up result" },
};

function nameSides(sides) {
  view.sides = sides;
  $("tag-before").textContent = sides.before;
  $("tag-after").textContent = sides.after;
  $("stage").setAttribute("aria-label", `Left of the line: ${sides.whole}. Arrow keys pan, + and − zoom.`);
}

function split() {
  const percent = Number($("split").value);
  $("split").setAttribute("aria-valuetext",
                          `${percent} % ${view.sides.before} on the left, ${100 - percent} % ${view.sides.after}`);
  // each side only where it belongs: with transparency, the other side would show through
  $("after-canvas").style.clipPath = `inset(0 0 0 ${percent}%)`;
  $("before-canvas").style.clipPath = `inset(0 ${100 - percent}% 0 0)`;
  $("divider").style.left = `${percent}%`;
}
$("split").addEventListener("input", split);
const zoomBy = (factor) => { view.zoom = Math.min(16, Math.max(1 / 16, view.zoom * factor)); draw(); };
$("zoom-in").addEventListener("click", () => zoomBy(2));
$("zoom-out").addEventListener("click", () => zoomBy(0.5));
$("zoom-one").addEventListener("click", () => { view.zoom = 1; draw(); });
$("zoom-fit").addEventListener("click", () => {
  view.zoom = Math.min($("stage").clientWidth / view.result.width, $("stage").clientHeight / view.result.height, 1);
  draw();
});
/** Close Compare and forget both pictures (``refocus``: back to the button that opened it). */
function closeViewer(refocus = true) {
  $("viewer").hidden = true;
  if (view.result && view.result.drawable.close) view.result.drawable.close(); // a TIFF's bitmap: its memory now
  view.result = view.input = view.inputCanvas = view.job = null;
  for (const canvas of [$("before-canvas"), $("after-canvas")]) canvas.width = canvas.height = 0;
  $("viewer-caption").textContent = "";
  if (refocus && view.opener && view.opener.isConnected) view.opener.focus(); // back where the user was
}
$("viewer-close").addEventListener("click", () => closeViewer());
$("viewer").addEventListener("keydown", (event) => {
  if (event.key === "Escape") { event.preventDefault(); closeViewer(); }
});
$("stage").addEventListener("keydown", (event) => {
  const step = 64 / view.zoom;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  if (moves[event.key]) {
    view.cx += moves[event.key][0];
    view.cy += moves[event.key][1];
    draw();
  } else if (event.key === "+" || event.key === "=") {
    zoomBy(2);
  } else if (event.key === "-") {
    zoomBy(0.5);
  } else {
    return;
  }
  event.preventDefault();
});
let dragging = null;
$("stage").addEventListener("pointerdown", (event) => {
  dragging = { x: event.clientX, y: event.clientY };
  try { $("stage").setPointerCapture(event.pointerId); } catch { /* that pointer is gone already */ }
});
$("stage").addEventListener("pointermove", (event) => {
  if (!dragging) return;
  view.cx -= (event.clientX - dragging.x) / view.zoom;
  view.cy -= (event.clientY - dragging.y) / view.zoom;
  dragging = { x: event.clientX, y: event.clientY };
  draw();
});
// a touch the browser takes over (a pinch that zooms the page) ends without pointerup: still "dragging", plain
// mouse or pen moves with no button pressed then panned the picture
for (const kind of ["pointerup", "pointercancel", "lostpointercapture"]) {
  $("stage").addEventListener(kind, () => { dragging = null; });
}
window.addEventListener("resize", draw);

// ---- history (this key's jobs, from the API: it survives a reload) ---------------------------------------
let historyCursor = null;
let historyLoads = 0; // each load from the start supersedes those still in flight (sent with an older key)
let historyRefresh = null;
const HISTORY_REFRESH_MS = 5000;
const HISTORY_STALE_ROWS = 3; // unfinished rows below the first page looked at per refresh

/** The first page (``fromStart``: refreshed in place, older pages stay) or the next older one. */
async function loadHistory(fromStart = false) {
  const load = fromStart ? ++historyLoads : historyLoads;
  const path = `v1/jobs?limit=10${!fromStart && historyCursor ? `&cursor=${encodeURIComponent(historyCursor)}` : ""}`;
  let page;
  try { page = await api(path); } catch (error) { // a missing key is said by the notice already
    if (error.status === 429) holdFor(error);
    if (error.status !== 401) scheduleHistory(true); // an outage or a rate limit passes: look again
    return;
  }
  if (load !== historyLoads) return; // superseded meanwhile: its rows may be another key's
  historySays("");
  if (fromStart) usageAfter(page.data);
  const body = $("history").querySelector("tbody");
  const shown = (id) => [...body.children].find((row) => row.dataset.job === id);
  if (fromStart) {
    if (!page.data.some((job) => shown(job.id))) { // nothing in common with the rows shown: start over
      body.textContent = "";
      historyCursor = page.next_cursor;
    } else if (body.children.length <= page.data.length) {
      historyCursor = page.next_cursor; // no older page loaded yet
    }
    let above = null; // newest first: rows shown are brought up to date where they stand, new ones go above them
    for (const job of page.data) {
      let row = shown(job.id);
      if (row) {
        fillRow(row, job);
      } else {
        row = historyRow(job);
        if (above) above.after(row); else body.prepend(row);
      }
      above = row;
    }
    const seen = new Set(page.data.map((job) => job.id));
    const older = [...body.children].filter((row) => row.dataset.final === "no" && !seen.has(row.dataset.job));
    for (const row of older.slice(0, HISTORY_STALE_ROWS)) {
      const job = await api(`v1/jobs/${row.dataset.job}`).catch(() => null);
      if (load !== historyLoads) return;
      if (job && row.isConnected) fillRow(row, job);
    }
  } else {
    for (const job of page.data) if (!shown(job.id)) body.append(historyRow(job));
    historyCursor = page.next_cursor;
  }
  const moreHadFocus = document.activeElement === $("history-more");
  $("history-more").hidden = !historyCursor;
  if (moreHadFocus && !historyCursor) $("history").focus(); // its button is gone: focus stays in the history
  $("history").hidden = body.children.length === 0;
  $("history-empty").hidden = body.children.length > 0;
  scheduleHistory();
}

/** Look again while any row shown is unfinished (whichever page it came from), or ``always``. */
function scheduleHistory(always = false) {
  clearTimeout(historyRefresh);
  const body = $("history").querySelector("tbody");
  if (always || [...body.children].some((row) => row.dataset.final === "no")) {
    historyRefresh = setTimeout(() => loadHistory(true),
                                Math.max(HISTORY_REFRESH_MS, holdUntil - Date.now()));
  }
}

function clearHistory() {
  clearTimeout(historyRefresh);
  historyCursor = null;
  $("history").querySelector("tbody").textContent = "";
  $("history").hidden = true;
  $("history-more").hidden = true;
}

// ---- usage (what the key in use has used of its limits) ---------------------------------------------------
let usageOf = null; // the newest jobs' ids and states when the usage was last asked; null: ask at the next look
let usageAgain = null;
const USAGE_SETTLES_MS = 2000;

/** Ask for the usage when the history's newest jobs changed (one appeared, or ended), and once more a moment later:
 * a job that ends making nothing gives its megapixels back just after its new state is stored, and a read in
 * between showed the charge until the next change. Its own request at every history refresh would spend twice
 * the key's requests on the same news. */
function usageAfter(jobs) {
  const seen = jobs.map((job) => `${job.id}:${job.status}`).join(" ");
  if (seen === usageOf) return;
  usageOf = seen;
  loadUsage();
  clearTimeout(usageAgain);
  usageAgain = setTimeout(loadUsage, USAGE_SETTLES_MS);
}

/** The key's limits and today's use, said under Options: a customer learnt of a daily quota only by its 429. */
async function loadUsage() {
  const key = keyInUse;
  let usage;
  try {
    usage = await api("v1/usage", {}, key);
  } catch (error) { // a key refused is said by the notice; an outage or a 429 leaves the last figures up
    if (error.status === 401 || error.status === 404) {
      $("usage").hidden = true;
      $("usage").style.visibility = "";
    }
    if (error.status !== 401 && error.status !== 404) usageOf = null; // asked again at the next look
    return;
  }
  if (key !== keyInUse) return; // another key meanwhile: these are the previous customer's figures
  $("usage").textContent = usageText(usage);
  $("usage").hidden = false;
  $("usage").style.visibility = "";
}

/** The previous key's figures off the screen, their line kept until the new key's come: the field's change event
 * fires as it loses focus, often to a click on a card's Cancel below, and a line taken away under the pointer
 * moved the button between the press and the release (no click, the job not canceled). */
function clearUsage() {
  usageOf = null;
  clearTimeout(usageAgain);
  $("usage").style.visibility = "hidden";
}

const count = (number) => number.toLocaleString(undefined, { maximumFractionDigits: 1 });

/** "This key: 2 jobs queued or running (at most 100 at once); 41.5 of 20,000 output megapixels used today (the
 * count starts again at 01:00)." */
function usageText({ active_jobs: active, daily }) {
  const busy = active.queued + active.running;
  const jobs = `${busy} ${busy === 1 ? "job" : "jobs"} queued or running` +
               (active.limit === null ? "" : ` (at most ${count(active.limit)} at once)`);
  const until = new Date(daily.resets_at).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  let today;
  if (daily.limit_megapixels === null) {
    today = "no daily limit";
  } else if (daily.used_megapixels === null) {
    today = `at most ${count(daily.limit_megapixels)} output megapixels a day (today's count not known now)`;
  } else {
    today = `${count(daily.used_megapixels)} of ${count(daily.limit_megapixels)} output megapixels used today ` +
            `(the count starts again at ${until})`;
  }
  return `This key: ${jobs}; ${today}.`;
}

/** The history's own notice (a Cancel refused): its next successful load or cancel takes it away, as the models'
 * next load takes theirs; a 409 once stayed on screen for good. Another part's notice shown since is left alone. */
let historyNotice = "";
function historySays(text) {
  if (text || $("notice").textContent === historyNotice) notice(text);
  historyNotice = text;
}

function historyRow(job) {
  const row = document.createElement("tr");
  row.dataset.job = job.id;
  for (let index = 0; index < 5; index++) row.insertCell();
  row.cells[1].className = "file";
  row.cells[4].className = "result";
  fillRow(row, job);
  return row;
}

/** Show ``job`` in its ``row``, in place: the 5 s refresh replaced every row, and keyboard focus on a Cancel went
 * with it (Enter then did nothing). The result's control is replaced only when the job's state changes what it is;
 * focus on it then moves to the status (the button is gone, and focus would fall to the page). */
function fillRow(row, job) {
  row.dataset.final = FINAL.includes(job.status) ? "yes" : "no";
  const state = job.status === "failed" && job.error ? `failed: ${job.error.message}`
    : job.status === "running" ? `running ${Math.round(job.progress * 100)} %` : job.status;
  const status = job.expired_at ? `${state} · images deleted` : state;
  const texts = [new Date(job.created_at).toLocaleString(),
                 `${job.input.filename || job.input.url || "?"} (${dims(job.input)})`,
                 `${dims(job.output)} ${job.output_format}`, status];
  for (const [index, text] of texts.entries()) row.cells[index].textContent = text;
  const result = row.cells[4];
  // an ended job's images can be deleted now, as retention would later; once deleted, nothing is left to offer
  const kind = job.status === "succeeded" && job.result_url ? "link" : !FINAL.includes(job.status) ? "cancel"
    : job.expired_at ? "none" : "delete";
  if (result.dataset.kind === kind) {
    if (kind === "link") showLink(result.firstChild, job); // a fresh signed link
    return;
  }
  const hadFocus = result.contains(document.activeElement);
  result.dataset.kind = kind;
  result.textContent = "";
  if (kind === "link") result.append(showLink(document.createElement("a"), job), " ", deleteButton(row, job));
  if (kind === "delete") result.append(deleteButton(row, job));
  if (kind === "cancel") result.append(cancelButton(row, job)); // after a reload too, it can still be stopped here
  if (hadFocus) keepFocusOn(row.cells[3]);
}

/** ``link``, pointed at ``job``'s result and named after it. */
function showLink(link, job) {
  resultLink(link, job, (error) => { link.textContent = error.message; });
  link.textContent = job.output.filename;
  return link;
}

/** A history row's button: ``act`` answers the job as it is now, which the row then shows (null: nothing was done,
 * such as a Delete declined); a refusal is said in the history's notice, and ``refused`` may fetch the job's real
 * state for the row. */
function rowButton(row, text, label, act, refused = () => null) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = text;
  button.setAttribute("aria-label", label);
  button.onclick = async () => {
    button.disabled = true;
    try {
      const job = await act();
      button.disabled = false;
      if (!job) return;
      fillRow(row, job);
      historySays("");
    } catch (error) {
      button.disabled = false;
      historySays(error.message);
      const now = await refused(error);
      if (now && row.isConnected) fillRow(row, now);
    }
  };
  return button;
}

const jobName = (job) => job.input.filename || job.input.url || job.id;

function cancelButton(row, job) {
  // the job ended meanwhile (it succeeded or failed): the row shows how, not a Cancel that can never work
  return rowButton(row, "Cancel", `Cancel ${jobName(job)}`, () => cancelJob(job.id),
                   (error) => error.code === "not_cancelable" && api(`v1/jobs/${job.id}`).catch(() => null));
}

/** A row's Delete: asked first, since a result not yet downloaded is gone for good. */
function deleteButton(row, job) {
  const question = `Delete ${jobName(job)} and its result from the server now? This cannot be undone.`;
  return rowButton(row, "Delete", `Delete the images of ${jobName(job)}`,
                   () => (window.confirm(question) ? deleteJob(job.id) : null));
}

$("history-more").addEventListener("click", () => loadHistory(false));

loadModels();
loadHistory(true);

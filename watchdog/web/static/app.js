// Printer watchdog dashboard. Hand-written, no dependencies: polls the daemon's JSON API
// every 2 s, draws the score timeline and the mask editor on <canvas> itself.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
// the daemon's start this page was made by: another one means its token is stale (reload)
const BOOT = document.querySelector('meta[name="boot"]').content;
const POLL_MS = 2000;
const MARK = { ANOMALOUS: 1, CALIBRATING: 2, ACTION: 4, NEW_PRINT: 8 };
const DAY_S = 24 * 3600;
const MASK_POLYGONS = 32, MASK_POINTS = 100; // the config's bounds (watchdog/config.py)
const SAME_REGION = 0.01;  // a region this close to the model's is its own (detection/detector.py)
// the states in which the card's picture and score are of now (watchdog.detection.decide.Label;
// paused: the print stands still as the picture shows it; a camera offline gives no picture)
const WATCHED_NOW = new Set(["calibrating", "watching", "anomaly", "paused", "cooldown"]);

const S = {
  printers: [],
  // keyed by printer name: no prototype, so a printer called "constructor" is a printer
  timelines: Object.create(null),  // name -> {t, score, threshold, marks} (oldest first)
  ranges: Object.create(null),     // name -> "print" | "day"
  incidentsKey: "",
  view: "printers",
  edit: null,        // the mask editor's draft
  down: 0,           // polls in a row the daemon did not answer
  toSay: [],         // state changes a render found, said together
  lastUpdate: null,  // the daemon's clock at its last answer
  title: "Printer watchdog",  // the view's own title (showTitle adds what needs the owner)
};

// ------------------------------------------------------------------ helpers

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

function fmt(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return Number(x).toPrecision(digits);
}

function clock(t) {
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function when(iso) {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

async function getJSON(path) {
  const r = await fetch(path, { credentials: "same-origin", cache: "no-store" });
  // the login brings the owner back to this view (static/login.js)
  if (r.status === 401) { location.href = "/login?expired" + location.hash; throw new Error("logged out"); }
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// {ok, detail, underWay}: never throws, so a button is given back and says why
async function post(path, body) {
  let r, raw;
  try {
    r = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(body || {}),
    });
    raw = await r.text();
  } catch (e) {  // no answer (Wi-Fi, the daemon restarting): it may or may not have been done
    return { ok: false, detail: "no answer from the watchdog (network, or it is restarting): check, then try again" };
  }
  let answer;
  // the server's own words when it answers in text (a stale page: "reload it")
  try { answer = JSON.parse(raw); } catch (e) { answer = { ok: false, detail: raw.trim() || `${r.status} ${r.statusText}` }; }
  answer.underWay = r.status === 202;  // started, not finished: not a refusal
  return answer;
}

// A control disabled while its request runs: the browser moved the keyboard's focus to the
// page's top (a disabled element cannot hold it); given back to it, or to ``fallback`` when
// the answer hid it.
async function hold(controls, work, fallback = null) {
  const focused = controls.find((c) => c === document.activeElement);
  controls.forEach((c) => { c.disabled = true; });
  try { return await work(); } finally {
    controls.forEach((c) => { c.disabled = false; });
    if (focused && (document.activeElement === document.body || document.activeElement === null)) {
      (focused.hidden || !focused.isConnected ? fallback : focused)?.focus();
    }
  }
}

// What a screen reader should hear as it happens (a printer paused, the daemon away): the
// page's one polite live region, not each badge (it would not say which printer).
function say(text) {
  const said = document.getElementById("said");
  said.textContent = said.textContent === text ? `${text}.` : text;
}

let toastTimer = null;
function toast(message, ok = true) {
  const t = document.getElementById("toast");
  t.className = ok ? "" : "bad";
  t.textContent = message;
  t.hidden = false;
  say(message);  // the page's live region, there from the start: read by every screen reader
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 6000);
}

// The watcher's state label (watchdog.detection.decide.Label) with its progress, in words.
// the states of a print going on: after an alert that did not stop it (notify only, or a
// pause that failed), that alert stands until answered, through its cooldown, the next
// print's look learnt and a restart; the badge said "watching" over it in green
const GOING_ON = ["watching", "calibrating", "cooldown", "anomaly"];
const ALERTED_GOING_ON = "alerted, not stopped";

function stateOf(p) {
  const s = p.state || "starting";
  if (p.failure && GOING_ON.includes(s) && !(s === "anomaly" && p.consecutive)) {
    return ["anomaly", ALERTED_GOING_ON];
  }
  if (s === "calibrating") return [s, p.calibration ? `calibrating ${p.calibration}` : s];
  if (s === "anomaly") return [s, `anomaly ${p.consecutive}/${p.needed}`];
  if (s === "camera_offline") return [s, "camera offline"];
  if (s === "printer_offline") return [s, "printer unreachable"];
  if (s === "skipping_print") return [s, "not watching this print"];
  // after an alert, or a resume of the print it paused: no new alert until it ends
  // learning the print's look again meanwhile (a resume, watching switched on): said too
  if (s === "cooldown") return [s, p.calibrating && p.calibration ? `cooldown, learning the print ${p.calibration}` : "cooldown: no new alert for now"];
  return [s, s];
}

// ------------------------------------------------------------------ routing

const VIEW_NAMES = { printers: "printers", incidents: "incidents", edit: "where to look" };

// ``ev``: the owner went to another view (a link, Back): the keyboard and a screen reader
// start at that view, not wherever the focus was left (the page's top).
function route(ev) {
  const hash = location.hash || "#/";
  const m = hash.match(/^#\/edit\/([A-Za-z0-9_-]+)$/);
  const incidents = hash.match(/^#\/incidents(?:\/([A-Za-z0-9_-]+))?$/);
  S.view = m ? "edit" : incidents ? "incidents" : "printers";
  S.showIncident = incidents ? incidents[1] || null : null;  // a card's "See the alert"
  S.title = `Printer watchdog: ${VIEW_NAMES[S.view]}${m ? ", " + m[1] : ""}`;
  showTitle();
  document.getElementById("view-printers").hidden = S.view !== "printers";
  document.getElementById("view-incidents").hidden = S.view !== "incidents";
  document.getElementById("view-edit").hidden = S.view !== "edit";
  document.getElementById("nav-printers").classList.toggle("active", S.view === "printers");
  document.getElementById("nav-incidents").classList.toggle("active", S.view === "incidents");
  if (S.view === "edit") {
    // straight to another's editor: this one's draft dropped, and the editor let go first (its
    // picture, losing the keyboard as it goes, would draw and keep the draft again)
    if (S.edit && S.edit.name !== m[1]) { dropDraft(S.edit.name); S.edit = null; }
    openEditor(m[1]);
  }
  else if (S.edit) { dropDraft(S.edit.name); S.edit = null; }  // left unsaved, as the owner chose
  if (S.view === "incidents") { S.incidentsKey = ""; loadIncidents(); }
  // the view takes the keyboard (and a screen reader's place) without scrolling the header,
  // its menu and its clock away: on a phone the focus scrolled the page past them
  if (ev) { document.getElementById(`view-${S.view}`).focus({ preventScroll: true }); window.scrollTo(0, 0); }
}

// ------------------------------------------------------------------ polling

async function poll() {
  const conn = document.getElementById("conn");
  try {
    const asked = performance.now();  // settings saved after this are newer than its answer
    const state = await getJSON("/api/state");
    if (state.boot !== BOOT) { location.reload(); return; }  // restarted: this page's token is stale
    S.printers = state.printers;
    S.lastUpdate = state.now;
    S.reloadRefused = state.reload_refused || "";
    const waiting = state.waiting_for_restart || [];
    S.mqtt = state.mqtt_enabled;
    S.perPrint = state.per_print;
    // one printer's timeline not read this time is not the daemon gone: drawn at the next poll
    await Promise.all(state.printers.map((p) => loadTimeline(p, state.now).catch(() => {})));
    conn.textContent = `updated ${clock(state.now)}` + (state.mqtt_enabled && !state.mqtt_connected ? " · MQTT offline" : "")
      + (S.reloadRefused ? " · new settings not applied (see a printer's settings)" : "")
      + (waiting.length ? ` · ${waiting.join(", ")} changed: applied at the next restart` : "");
    conn.classList.remove("offline");
    sayNotifyFailing(state.notify_failing || []);
    S.down = 0;
    renderPrinters();
    if (S.view === "incidents") await loadIncidents();
    if (S.view === "edit") refreshEditor(asked);
  } catch (e) {
    conn.textContent = "daemon not answering";
    conn.classList.add("offline");
    // twice in a row (one lost answer is Wi-Fi): every card says so, not as if live
    if (++S.down === 2) renderPrinters();
  } finally {
    const down = document.getElementById("down");
    down.hidden = S.down < 2;
    if (!down.hidden && !down.textContent) {
      down.textContent = `The watchdog is not answering (stopped, restarting, or the network): what the cards show is of ${S.lastUpdate ? clock(S.lastUpdate) : "before"}, and nothing here can act until it answers.`;
    } else if (down.hidden) down.textContent = "";
    setTimeout(poll, POLL_MS);
  }
}

// Phone notifications whose last try failed (a service down, a token refused): the alert is
// kept and retried, but the owner away from the page thinks the phone would ring.
function sayNotifyFailing(failing) {
  const box = document.getElementById("notify-failing");
  const text = failing.length
    ? "Phone notifications are not getting through: " + failing.map((f) =>
      `${f.target}${f.waiting ? ` (${f.waiting} waiting)` : ""}: ${f.error || "failed"}`).join("; ")
      + ". They are kept and tried again; see the watchdog's log."
    : "";
  if (box.textContent !== text) box.textContent = text;  // said once, not at every poll
  box.hidden = !text;
}

async function loadTimeline(p, now) {
  const tl = S.timelines[p.name] || (S.timelines[p.name] = { t: [], score: [], threshold: [], marks: [], seq: 0, clock: 0 });
  // by sequence number, not time: a clock set back must not hide the new points
  const fresh = await getJSON(`/api/printers/${p.name}/timeline?after=${tl.seq}&clock=${tl.clock}`);
  for (const k of ["t", "score", "threshold", "marks"]) {
    if (fresh.reset) tl[k] = [];  // the daemon's clock was set back: its points come again, shifted
    tl[k].push(...fresh[k]);
  }
  tl.seq = fresh.seq;
  tl.clock = fresh.clock;
  const cutoff = now - DAY_S;  // the daemon's clock: the browser's may be days apart
  let drop = 0;
  while (drop < tl.t.length && tl.t[drop] < cutoff) drop++;
  if (drop) for (const k of ["t", "score", "threshold", "marks"]) tl[k].splice(0, drop);
}

// ------------------------------------------------------------------ printers overview

const cards = Object.create(null);  // by printer name (see S.timelines)

function buildCard(p) {
  const c = {};
  c.badge = el("span", { class: "badge", "data-role": "state" });
  c.enabled = el("input", { type: "checkbox", "data-role": "enabled", "aria-label": `watching ${p.name}` });
  c.enabled.addEventListener("change", async () => {
    const verb = c.enabled.checked ? "enable" : "disable";
    const only = !c.skip.hidden ? " (To leave only the print under way unwatched: Stop watching this print.)" : "";
    if (verb === "disable" && !window.confirm(`Stop watching ${p.name}? It stays off, also after a restart, until switched on again.${only}`)) {
      c.enabled.checked = true;
      return;
    }
    // disabled: the poll leaves it alone until the daemon has answered
    await hold([c.enabled], async () => {
      const r = await post("/api/command", { printer: p.name, verb });
      toast(r.detail, r.ok);
      // not done (refused, or no answer: the daemon away): the switch shows what still holds
      const now = S.printers.find((x) => x.name === p.name);
      if (!r.ok && now) c.enabled.checked = switchedOn(now);
    });
  });
  // the print under way only: the next one is watched without anyone having to remember it
  c.skip = el("button", { type: "button", "data-role": "skip-print", hidden: true, "aria-label": `stop watching this print of ${p.name}` }, "Stop watching this print");
  c.skip.addEventListener("click", async () => {
    if (!window.confirm(`Stop watching this print of ${p.name}? Nothing is judged or paused until it ends; the next print is watched. Switching Watching on watches it again.`)) return;
    await hold([c.skip], async () => {
      const r = await post("/api/command", { printer: p.name, verb: "skip_print" });
      toast(r.detail, r.ok);
      // hidden now, not at the next poll: the keyboard goes on to the switch beside it
      const now = S.printers.find((x) => x.name === p.name);
      if (r.ok && now) updateCard(c, { ...now, skipping_print: true });
    }, c.enabled);
  });
  c.overlay = el("input", { type: "checkbox", checked: true, "data-role": "overlay", "aria-label": `heatmap over ${p.name}'s frame` });
  c.overlay.addEventListener("change", () => { c.imgKey = ""; updateCard(c, S.printers.find((x) => x.name === p.name)); });
  // hidden until a frame has loaded: before the first one its broken-image text showed
  c.img = el("img", { alt: `latest frame of ${p.name}`, "data-role": "frame", hidden: true });
  c.noimg = el("div", { class: "noimg", text: "no frame yet" });
  c.img.addEventListener("load", () => { c.noimg.hidden = true; c.img.hidden = false; });
  c.img.addEventListener("error", () => { c.noimg.hidden = false; c.img.hidden = true; });
  // a failure standing (a paused print): the way to its incident and its buttons
  c.seeAlert = el("a", { href: "#/incidents", class: "button danger", "data-role": "see-alert", hidden: true, "aria-label": `see the alert of ${p.name}` }, "See the alert");
  // what became of the last command, from here, Home Assistant or a phone: the toast said its
  // first answer only, and a Cancel "under way" may end "did NOT cancel" a minute later
  c.lastCmd = el("span", { "data-role": "last-command" });
  c.lastCmdRow = el("div", { class: "row", hidden: true }, c.lastCmd);
  c.api = el("span", { "data-role": "printer-state" });
  // why the camera is offline (a refused password, a wrong address): the badge said only that
  c.camera = el("span", { class: "bad", "data-role": "camera-problem" });
  c.cameraRow = el("div", { class: "row", hidden: true }, el("span", {}, "Camera: ", c.camera));
  c.job = el("span", { class: "muted", "data-role": "job" });
  c.score = el("span", { "data-role": "score" });
  c.barFill = el("span");
  c.barMark = el("i");
  // a slider to a keyboard and a screen reader: the arrows read the frames one by one
  c.canvas = el("canvas", {
    class: "timeline", "data-role": "timeline", "data-points": "0", tabindex: "0", role: "slider",
    "aria-label": `score timeline of ${p.name}`, "aria-valuemin": "0",
  });
  c.range = el("select", { "data-role": "range", "aria-label": `timeline of ${p.name}` },
    el("option", { value: "print", text: "this print" }), el("option", { value: "day", text: "24 h" }));
  c.range.addEventListener("change", () => { S.ranges[p.name] = c.range.value; drawTimeline(c.canvas, S.timelines[p.name], c.range.value); });
  attachTooltip(c.canvas);
  c.root = el("article", { class: "card printer", "data-printer": p.name },
    el("div", { class: "card-head" }, el("h2", { text: p.name }), c.badge,
      el("label", { class: "switch" }, c.enabled, "watching")),
    el("div", { class: "frame" }, c.img, c.noimg),
    el("div", { class: "row" }, el("label", {}, c.overlay, " heatmap"),
      el("a", { href: `#/edit/${p.name}`, class: "button", "data-role": "edit", "aria-label": `where to look and settings of ${p.name}` }, "Where to look & settings"), c.skip, c.seeAlert),
    el("div", { class: "row" }, el("span", {}, "Printer: ", c.api), c.job),
    c.cameraRow,
    c.lastCmdRow,
    el("div", { class: "row" }, c.score, el("div", { class: "scorebar" }, c.barFill, c.barMark)),
    el("div", { class: "tl-head" }, el("span", { text: "Score timeline" }), c.range),
    c.canvas,
    el("div", { class: "legend muted" },
      "— score, - - threshold, shaded: calibration, red: anomalous, ▲ action"),
    // a bare number told a first visitor nothing
    c.meaning = el("div", { class: "legend muted", "data-role": "score-meaning" }));
  return c;
}

// what the score is, by the model: one judging each print against its own start, or one
// judging each frame on its own
function scoreMeaning(perPrint) {
  return perPrint
    ? "The score: how far the watched region is from this print's own first frames (its normal); after its start (shaded, judged by the start's own rules), a frame above the threshold is anomalous."
    : "The score: how unlike the normal prints the model learnt the watched region is (each frame on its own); a frame above the threshold is anomalous.";
}

function updateCard(c, p) {
  c.meaning.textContent = scoreMeaning(S.perPrint !== false);
  const [cls, label] = S.down >= 2 ? ["offline", "watchdog not answering"]
    : p.recording_ended ? ["idle", "recording read to its end"] : stateOf(p);
  c.badge.className = `badge ${cls}`;
  // said when the state changes, not its counts ("calibrating 12/30"); renderPrinters says
  // every printer's at once (the live region keeps only its last words). An alert that did
  // not stop the print keeps the anomaly's colour: said too (a notify-only printer's one event)
  const said = label === ALERTED_GOING_ON ? label : cls;
  if (c.said && c.said !== said) S.toSay.push(`${p.name}: ${label}`);
  c.said = said;
  c.badge.textContent = label;
  // off while the print under way is skipped: switching it on watches that print again
  if (!c.enabled.disabled) c.enabled.checked = switchedOn(p);
  c.seeAlert.hidden = !(p.failure && p.last_alert);
  if (!c.seeAlert.hidden) c.seeAlert.href = `#/incidents/${p.last_alert.incident}`;
  c.skip.hidden = !(p.api && switchedOn(p) && ["printing", "paused"].includes(p.printer_state));
  const trouble = ["offline", "error"].includes(p.printer_state) && p.printer_detail;
  c.api.textContent = trouble ? `${p.printer_state}: ${p.printer_detail}` : p.printer_state || "unknown";
  // without an API nothing tells whether it prints: "printing" was the watchdog's assumption
  if (!p.api) c.api.textContent = "no printer API (watched all the time)";
  if (S.down >= 2) c.api.textContent += ` (at ${clock(S.lastUpdate)})`;
  c.api.className = trouble ? "bad" : "";
  c.api.title = p.printer_detail || "";
  // watched all night, and the one pause that matters refused: said where it is seen
  if (p.api && p.cannot_act) {
    c.api.textContent += ` (${p.cannot_act})`;
    c.api.className = "bad";
  }
  c.cameraRow.hidden = p.camera_online !== false;
  c.camera.textContent = p.camera_online === false ? `offline: ${p.camera_problem}` : "";
  // the job an idle printer names is the one it ran last (kept to tell it printed again);
  // an API away mid-print tells nothing of its end
  const ended = p.api && ["idle", "error"].includes(p.printer_state);
  c.job.textContent = p.job ? `${ended ? "last job" : "job"} ${p.job}` : "";
  showLastCommand(c, p);
  // not watched now (idle, off, this print skipped, the API away): the last picture and score
  // are of then, said and dimmed, not shown as if live
  const tl = S.timelines[p.name];
  const lastT = tl && tl.t.length ? tl.t[tl.t.length - 1] : null;
  // the daemon not answering: nothing on the card is live, whatever it shows
  const watched = WATCHED_NOW.has(p.state) || (p.state === "printer_offline" && p.watched);
  const stale = S.down >= 2 || (lastT !== null && (p.recording_ended || (p.score !== null && !watched)));
  c.root.classList.toggle("stale", !!stale);
  c.score.textContent = stale && lastT !== null
    ? `last score ${fmt(p.score)} at ${clock(lastT)} / threshold ${fmt(p.threshold)}`
    : `score ${fmt(p.score)} / threshold ${fmt(p.threshold)}`;
  if (p.score !== null && p.threshold) {
    const full = Math.max(p.threshold * 2, p.score);
    c.barFill.style.width = `${Math.min(100, (100 * p.score) / full)}%`;
    c.barFill.className = p.score > p.threshold ? "over" : "";
    c.barMark.style.left = `${(100 * p.threshold) / full}%`;
  } else {  // no score (none yet, or none since the watched region changed): an empty bar
    c.barFill.style.width = "0%";
    c.barFill.className = "";
  }
  const last = tl ? tl.seq : 0;  // the newest point's number: a new picture with each
  // no score: none since the region, mask or model changed, and its heatmap is gone with it
  // (an idle printer's point number stays: the browser would show its picture from cache)
  // ... but an alert that stands (a print paused by it, after a restart or a settings save:
  // not watched, so not scored) has its own heatmap: shown, not a black box
  const alerted = p.failure && p.last_alert && p.last_alert.incident
    ? `/api/incidents/${p.name}/${p.last_alert.incident}/heatmap.jpg` : "";
  const gone = c.overlay.checked && p.score === null;
  // a camera offline from the start has no picture to show: the place says why
  const offline = p.camera_online === false;
  const key = `${c.overlay.checked}:${last}:${gone}:${offline}:${alerted}`;
  // no point yet (an idle printer since the start): its picture is taken for the page
  if (key !== c.imgKey && (last || !c.overlay.checked || gone || offline)) {
    c.imgKey = key;
    c.noimg.textContent = offline ? "no picture: the camera is offline"
      : gone ? "no heatmap of the watched region yet" : "no frame yet";
    if (gone && alerted) c.img.src = alerted;
    else if (gone) { c.img.hidden = true; c.noimg.hidden = false; c.img.removeAttribute("src"); }
    else c.img.src = c.overlay.checked ? `/printers/${p.name}/latest.jpg?n=${last}` : `/api/printers/${p.name}/frame.jpg?n=${last}`;
    c.img.dataset.kind = c.overlay.checked ? "heatmap" : "frame";
    c.img.alt = gone && alerted ? `heatmap of the alert of ${p.name}`
      : c.overlay.checked ? `heatmap over the latest frame of ${p.name}` : `latest frame of ${p.name}`;
  }
  c.range.value = S.ranges[p.name] || "print";
  drawTimeline(c.canvas, tl, c.range.value);
}

// the card's watching switch: on unless watching is off or the print under way is skipped
function switchedOn(p) {
  return p.enabled !== false && !p.skipping_print;
}

function showLastCommand(c, p) {
  const lc = p.last_command;
  c.lastCmdRow.hidden = !lc;
  if (!lc) { c.lastCmdSeen = ""; return; }
  const state = lc.under_way ? " (under way)" : lc.unknown ? " (its end unknown)" : "";
  // older than the alert that stands: about an earlier alert or print (a Resume "answered
  // already" in red beside a new alert read as this one's answer)
  const raised = p.failure && p.last_alert ? Date.parse(p.last_alert.time) / 1000 : NaN;
  const older = raised > lc.time ? `; before the alert of ${clock(raised)}` : "";
  c.lastCmd.textContent = `Last command (${lc.source}, ${clock(lc.time)}${older}): ${lc.text}${state}`;
  c.lastCmd.className = older ? "muted" : lc.ok || lc.under_way ? "" : "bad";
  // said when it is the end of one answered "under way" (the toast said only that), or when
  // it came from elsewhere (Home Assistant, a phone); not at the page's first drawing
  const key = `${lc.time}|${lc.text}`;
  const before = c.lastCmdSeen;
  c.lastCmdSeen = key;
  if (before !== undefined && before !== key && (lc.told_again || lc.source !== "the page")) {
    S.toSay.push(`${p.name}: ${lc.text}`);
  }
}

// The tab's title says what needs the owner (a phone's tab switcher, a tab in the background):
// it read "Printer watchdog: printers" over a paused print.
function showTitle() {
  const alerted = S.printers.filter((p) => p.failure).map((p) => p.name);
  const trouble = S.down >= 2 ? "watchdog not answering" : alerted.length ? `alert on ${alerted.join(", ")}` : "";
  document.title = trouble ? `(!) ${trouble} · ${S.title}` : S.title;
}

function renderPrinters() {
  showTitle();
  const view = document.getElementById("view-printers");
  let grid = view.querySelector(".grid");
  if (!grid) { grid = el("div", { class: "grid" }); view.append(grid); }
  S.toSay = [];
  for (const p of S.printers) {
    if (!cards[p.name]) { cards[p.name] = buildCard(p); grid.append(cards[p.name].root); }
    updateCard(cards[p.name], p);
  }
  if (S.toSay.length) say(S.toSay.join(". "));
  // a printer a reload took out of the config: its card would stay with its last state
  for (const name of Object.keys(cards)) {
    if (S.printers.some((p) => p.name === name)) continue;
    cards[name].root.remove();
    delete cards[name];
    delete S.timelines[name];
  }
}

// ------------------------------------------------------------------ timeline

function visibleRange(tl, range) {
  let start = 0;
  if (range === "print") {
    for (let i = tl.t.length - 1; i >= 0; i--) if (tl.marks[i] & MARK.NEW_PRINT) { start = i; break; }
  }
  return start;
}

function drawTimeline(canvas, tl, range) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 300, h = canvas.clientHeight || 150;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  canvas._pts = [];
  if (!tl || !tl.t.length) {
    canvas.dataset.points = "0";
    settleCursor(canvas);
    g.fillStyle = "#5d6677"; g.font = "12px sans-serif";
    g.fillText("no scored frames yet", 10, h / 2);
    return;
  }
  const start = visibleRange(tl, range);
  const n = tl.t.length - start;
  const L = 44, R = 8, T = 8, B = 18;
  const t0 = tl.t[start], t1 = Math.max(tl.t[tl.t.length - 1], t0 + 1);
  let ymax = 0;
  for (let i = start; i < tl.t.length; i++) ymax = Math.max(ymax, tl.score[i], tl.threshold[i] * 1.5);
  ymax = ymax || 1;
  const X = (t) => L + ((t - t0) / (t1 - t0)) * (w - L - R);
  // no line across a time nothing was scored (paused, off, the camera away): it drew a slope
  // as if the score had fallen slowly; a gap is three usual steps, a minute at least
  const steps = [];
  for (let i = start + 1; i < tl.t.length; i++) steps.push(tl.t[i] - tl.t[i - 1]);
  steps.sort((a, b) => a - b);
  const gap = Math.max(60, 3 * (steps.length ? steps[steps.length >> 1] : 0));
  const joins = (i) => i > start && tl.t[i] - tl.t[i - 1] <= gap;
  let gaps = 0;
  for (let i = start + 1; i < tl.t.length; i++) if (!joins(i)) gaps++;
  canvas.dataset.gaps = String(gaps);
  const Y = (s) => T + (1 - Math.min(s, ymax) / ymax) * (h - T - B);
  // calibration windows, shaded
  g.fillStyle = "rgba(36, 87, 197, 0.12)";
  for (let i = start; i < tl.t.length; i++) {
    if (!(tl.marks[i] & MARK.CALIBRATING)) continue;
    let j = i;
    while (j + 1 < tl.t.length && tl.marks[j + 1] & MARK.CALIBRATING) j++;
    const x0 = X(tl.t[i]) - 2, x1 = X(tl.t[Math.min(j + 1, tl.t.length - 1)]);
    g.fillRect(x0, T, Math.max(4, x1 - x0), h - T - B);
    i = j;
  }
  // axes
  g.strokeStyle = "#d8dce3"; g.lineWidth = 1;
  g.beginPath(); g.moveTo(L, T); g.lineTo(L, h - B); g.lineTo(w - R, h - B); g.stroke();
  g.fillStyle = "#5d6677"; g.font = "10px sans-serif";
  g.fillText(fmt(ymax, 2), 2, T + 8);
  g.fillText("0", 2, h - B);
  g.fillText(clock(t0), L, h - 4);
  const endLabel = clock(t1);
  g.fillText(endLabel, w - R - g.measureText(endLabel).width, h - 4);
  // print boundaries
  g.setLineDash([2, 3]); g.strokeStyle = "#8a93a3";
  for (let i = start; i < tl.t.length; i++) {
    if (tl.marks[i] & MARK.NEW_PRINT && i > start) { g.beginPath(); g.moveTo(X(tl.t[i]), T); g.lineTo(X(tl.t[i]), h - B); g.stroke(); }
  }
  // threshold
  g.setLineDash([5, 4]); g.strokeStyle = "#c77700"; g.lineWidth = 1.5;
  g.beginPath();
  for (let i = start; i < tl.t.length; i++) {
    const x = X(tl.t[i]), y = Y(tl.threshold[i]);
    if (joins(i)) g.lineTo(x, y); else g.moveTo(x, y);
  }
  g.stroke(); g.setLineDash([]);
  // scores
  g.strokeStyle = "#2457c5"; g.lineWidth = 1.5;
  g.beginPath();
  for (let i = start; i < tl.t.length; i++) {
    const x = X(tl.t[i]), y = Y(tl.score[i]);
    if (joins(i)) g.lineTo(x, y); else g.moveTo(x, y);
  }
  g.stroke();
  // a point joined to neither side (alone between two gaps) is a dot: a line shows none
  g.fillStyle = "#2457c5";
  let lone = 0;
  for (let i = start; i < tl.t.length; i++) {
    if (joins(i) || (i + 1 < tl.t.length && joins(i + 1))) continue;
    lone++;
    g.beginPath(); g.arc(X(tl.t[i]), Y(tl.score[i]), 2.5, 0, 2 * Math.PI); g.fill();
  }
  canvas.dataset.lone = String(lone);
  let anomalous = 0, actions = 0;
  for (let i = start; i < tl.t.length; i++) {
    const x = X(tl.t[i]), y = Y(tl.score[i]), m = tl.marks[i];
    canvas._pts.push({ x, y, t: tl.t[i], s: tl.score[i], th: tl.threshold[i], m });
    if (m & MARK.ANOMALOUS) {
      anomalous++;
      g.fillStyle = "#c62828"; g.beginPath(); g.arc(x, y, 3, 0, 2 * Math.PI); g.fill();
    } else if (n <= 400) {
      g.fillStyle = "#2457c5"; g.beginPath(); g.arc(x, y, 1.6, 0, 2 * Math.PI); g.fill();
    }
    if (m & MARK.ACTION) {
      actions++;
      g.strokeStyle = "#c62828"; g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(x, T); g.lineTo(x, h - B); g.stroke();
      g.fillStyle = "#c62828"; g.beginPath(); g.moveTo(x - 5, T + 9); g.lineTo(x + 5, T + 9); g.lineTo(x, T); g.fill();
    }
  }
  canvas.dataset.points = String(n);
  settleCursor(canvas);
  canvas.dataset.anomalous = String(anomalous);
  canvas.dataset.actions = String(actions);
}

function describePoint(p) {
  const marks = [];
  if (p.m & MARK.CALIBRATING) marks.push("calibrating");
  if (p.m & MARK.ANOMALOUS) marks.push("anomalous");
  if (p.m & MARK.ACTION) marks.push("action taken");
  return `${clock(p.t)} · score ${fmt(p.s)} (threshold ${fmt(p.th)})${marks.length ? " · " + marks.join(", ") : ""}`;
}

function showTip(text, x, y) {
  const tip = document.getElementById("tooltip");
  tip.textContent = text;
  tip.hidden = false;
  // within the window, whatever its width (a phone's cut it off past its right edge)
  const room = document.documentElement.clientWidth;
  tip.style.left = `${Math.max(4, Math.min(x + 12, room - tip.offsetWidth - 4))}px`;
  tip.style.top = `${y + 14}px`;
}

// The keyboard's point (canvas._cursor, the time of the frame read; null: the newest) after
// each drawing: its words for a screen reader, and the tooltip over it while it has focus.
function settleCursor(canvas) {
  const pts = canvas._pts || [];
  if (!pts.length) {
    canvas.setAttribute("aria-valuemax", "0");
    canvas.setAttribute("aria-valuenow", "0");
    canvas.setAttribute("aria-valuetext", "no scored frames yet");
    return;
  }
  let i = pts.length - 1;
  if (canvas._cursor != null) {
    // the same frame while it is shown; one before the range shown now: its first
    i = pts.findIndex((p) => p.t >= canvas._cursor);
    if (i < 0) i = pts.length - 1;
  }
  const p = pts[i];
  canvas.setAttribute("aria-valuemax", String(pts.length - 1));
  canvas.setAttribute("aria-valuenow", String(i));
  canvas.setAttribute("aria-valuetext", describePoint(p));
  if (canvas._cursor != null && document.activeElement === canvas) {
    const rect = canvas.getBoundingClientRect();
    showTip(describePoint(p), rect.left + p.x, rect.top + p.y);
  }
}

const TIMELINE_KEYS = { ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1, PageDown: -10, PageUp: 10 };

function attachTooltip(canvas) {
  const tip = document.getElementById("tooltip");
  const show = (ev) => {
    const pts = canvas._pts || [];
    if (!pts.length) { tip.hidden = true; return; }
    const rect = canvas.getBoundingClientRect();
    const x = ev.clientX - rect.left;
    let best = pts[0];
    for (const p of pts) if (Math.abs(p.x - x) < Math.abs(best.x - x)) best = p;
    showTip(describePoint(best), ev.clientX, ev.clientY);
  };
  canvas.addEventListener("pointermove", show);
  canvas.addEventListener("pointerdown", show);
  // a finger lifted leaves it shown (Chromium says the pointer left then): a mouse that left
  // hides it; a scroll or a touch outside every timeline does (hideTooltip)
  canvas.addEventListener("pointerleave", (ev) => { if (ev.pointerType !== "touch") tip.hidden = true; });
  canvas.addEventListener("keydown", (ev) => {
    const pts = canvas._pts || [];
    if (ev.key === "Escape") { canvas._cursor = null; tip.hidden = true; settleCursor(canvas); return; }
    if (!pts.length || !(ev.key in TIMELINE_KEYS || ev.key === "Home" || ev.key === "End")) return;
    ev.preventDefault();  // the arrows would scroll the page
    const now = Number(canvas.getAttribute("aria-valuenow"));
    const to = ev.key === "Home" ? 0 : ev.key === "End" ? pts.length - 1 : now + TIMELINE_KEYS[ev.key];
    canvas._cursor = pts[Math.max(0, Math.min(pts.length - 1, to))].t;
    settleCursor(canvas);
  });
  // focus left: the newest frame again, and no tooltip over a timeline nobody reads
  canvas.addEventListener("blur", () => { canvas._cursor = null; tip.hidden = true; settleCursor(canvas); });
}

// one listener for every card's timeline (each card's own hid the tooltip another showed)
function hideTooltip(ev) {
  if (ev && ev.target instanceof Element && ev.target.closest("canvas.timeline")) return;
  document.getElementById("tooltip").hidden = true;
}
window.addEventListener("scroll", () => hideTooltip(), { passive: true });
document.addEventListener("pointerdown", hideTooltip);

// ------------------------------------------------------------------ incidents

async function loadIncidents() {
  const list = await getJSON("/api/incidents");
  // drawn again once the first poll tells whether MQTT is configured at all
  const key = JSON.stringify([S.mqtt, list]);
  if (key === S.incidentsKey) return;
  S.incidentsKey = key;
  const view = document.getElementById("view-incidents");
  // drawn anew (an answer elsewhere, a new alert): the keyboard stays where it was
  const had = document.activeElement && view.contains(document.activeElement) ? document.activeElement : null;
  const was = had && had.closest("article.incident");
  const keep = was && [was.dataset.incident, had.dataset.verb];
  view.replaceChildren();
  if (!list.length) { view.append(el("p", { class: "empty", text: "No incidents: nothing has been paused or alerted." })); return; }
  const grid = el("div", { class: "grid" });
  for (const i of list) grid.append(incidentCard(i));
  view.append(grid);
  if (keep) {
    const again = view.querySelector(`article.incident[data-incident="${keep[0]}"]`);
    const target = again && ((keep[1] && again.querySelector(`button[data-verb="${keep[1]}"]`)) || again);
    if (target) target.focus();
  } else if (had) view.focus();
  if (S.showIncident) {
    const asked = view.querySelector(`article.incident[data-incident="${S.showIncident}"]`);
    S.showIncident = null;
    if (asked) { asked.scrollIntoView({ block: "start" }); asked.focus(); }
  }
}

function incidentCard(i) {
  const base = `/api/incidents/${i.printer}/${i.incident}`;
  const heat = i.lead_up.filter((f) => f.endsWith("-heatmap.jpg"));
  const result = i.action_result || {};
  const verdict = i.verdict === "failure" ? "confirmed failure" : i.verdict === "not_failure" ? "not a failure" : "";
  const onWhat = `${i.printer}${i.job ? " (job " + i.job + ")" : ""}`;
  const act = (verb, label, cls, question) => el("button", {
    class: cls, "data-verb": verb, "aria-label": `${label}, ${onWhat}`,
    onclick: async (ev) => {
      if (question && !window.confirm(question)) return;
      ev.target.disabled = true;
      const r = await post("/api/command", { printer: i.printer, verb, incident: i.incident });
      ev.target.disabled = false;
      toast(r.detail || (r.ok ? "done" : "refused"), r.ok || r.underWay);
      S.incidentsKey = "";
      await loadIncidents();
      // the cards are drawn anew: the keyboard stays on this incident, not thrown to the top
      const again = document.querySelector(`article.incident[data-incident="${i.incident}"]`);
      const target = again && (again.querySelector(`button[data-verb="${verb}"]`) || again.querySelector("button"));
      if (target) target.focus();
    },
  }, label);
  return el("article", { class: "card incident", "data-incident": i.incident, "data-printer": i.printer,
    tabindex: "-1", "aria-label": `alert of ${i.printer} at ${when(i.time)}` },
    el("div", { class: "info" },
      el("div", { class: "card-head" }, el("h2", { text: `${i.printer}: ${i.action || "alert"}` }),
        el("span", { class: "muted", text: when(i.time) }),
        verdict ? el("span", { class: "badge verdict", "data-role": "verdict", text: verdict }) : null),
      el("div", { class: "row" },
        el("span", { text: `score ${fmt(i.score)} > threshold ${fmt(i.threshold)}, ${i.consecutive} frames in a row` })),
      el("div", { class: "row" },
        el("span", { text: `${i.action}: ${result.outcome || "?"}${result.detail ? " (" + result.detail + ")" : ""}` }),
        el("span", { class: "muted", "data-role": "delivery",
          text: S.mqtt === undefined ? "" : !S.mqtt ? "MQTT: not configured" : i.delivered ? "MQTT: delivered" : "MQTT: not delivered yet" })),
      i.job ? el("div", { class: "row muted", text: `job ${i.job}` }) : null,
      // resumed or cancelled since (a button, the printer itself): its Resume and Cancel are gone
      i.answered ? el("div", { class: "row", "data-role": "answered", text: i.answered === "ended" ? "its print has ended" : `answered: the print was ${i.answered}` }) : null,
      // renamed or removed in the config since: nothing watches a printer of that name
      i.earlier_printer ? el("div", { class: "row muted", "data-role": "earlier-printer", text: `${i.printer} is no longer in the config: this alert is kept, and nothing can be done on it here` }) : null),
    el("figure", { class: "frame" }, el("img", { src: `${base}/frame.jpg`, alt: `frame of the alert of ${i.printer}`, loading: "lazy", "data-role": "incident-frame" })),
    el("figure", { class: "frame" }, el("img", { src: `${base}/heatmap.jpg`, alt: `heatmap of the alert of ${i.printer}`, loading: "lazy", "data-role": "incident-heatmap" })),
    heat.length ? el("div", { class: "strip", "data-role": "lead-up" },
      heat.map((f, n) => el("figure", {}, el("img", { src: `${base}/lead_up/${f.split("/").pop()}`, alt: `heatmap of the frame ${heat.length - n} before the alert` }),
        el("figcaption", { text: `${heat.length - n} before` })))) : null,
    i.earlier_printer ? null : el("div", { class: "buttons info" },
      act("not_failure", "Not a failure", "good", null),
      act("failure", "Confirm failure", "danger", null),
      (i.answers || []).includes("resume") ? act("resume", "Resume print", "", `Resume the print on ${onWhat}?`) : null,
      (i.answers || []).includes("cancel") ? act("cancel", "Cancel print", "danger", `Cancel the print on ${onWhat}? This cannot be undone.`) : null));
}

// ------------------------------------------------------------------ where to look (mask editor)

function copy(x) { return JSON.parse(JSON.stringify(x)); }

function openEditor(name) {
  const p = S.printers.find((x) => x.name === name);
  const view = document.getElementById("view-edit");
  if (!p) {
    const known = S.printers.length > 0;  // the state has come: no such printer, not loading
    view.replaceChildren(el("p", { class: "empty", text: known ? `No printer named ${name} in this watchdog's config.` : "loading…" }));
    S.edit = known ? null : { name, pending: true };
    return;
  }
  const d = S.edit = {
    name,
    region: p.settings.region ? copy(p.settings.region) : null,
    masks: copy(p.settings.mask || []),
    // the settings as this editor found them: a save sends what the owner changed since, so
    // an editor left open never sends back values changed elsewhere (another tab, the file)
    base: editorValues(p.settings),
    current: [],
    mode: "mask",
    drag: null,
    modelRegion: p.model_region,
    modelGuard: p.model_guard,
  };
  // a frame of now, not the last print's: the masks land where the camera looks
  const frameOfNow = () => `/api/printers/${name}/frame.jpg?fresh=1&t=${Date.now()}`;
  d.img = el("img", { alt: `latest frame of ${name}`, "data-role": "edit-frame" });
  d.canvas = el("canvas", {
    "data-role": "edit-canvas", tabindex: "0", role: "application",
    "aria-label": `picture of ${name} to draw on: the arrow keys move a cross, Enter sets a corner there`,
  });
  d.cursor = [0.5, 0.5];  // the keyboard's cross (editorKey)
  d.img.addEventListener("load", () => {
    if (d.img.src.startsWith("blob:")) URL.revokeObjectURL(d.img.src);  // decoded: not needed
    d.frameNote.hidden = true;
    drawEditor();
  });
  d.frameNote = el("p", { class: "bad", "data-role": "edit-frame-note", hidden: true });
  // fetched, not given to the <img> as its address: an <img> cannot read why the camera gave
  // no frame (a refused password looked like a camera still starting), which the 503 says
  // each try asks the camera for a frame: one down all evening is asked less and less often
  // while the tab stays open (3 s, then half as long again each time, 30 s at most)
  let wait = 3000;
  const noFrame = (why) => {
    d.frameNote.textContent = `No frame from the camera yet${why ? ` (${why})` : ""}: trying again in ${Math.round(wait / 1000)} s.`;
    d.frameNote.hidden = false;
    setTimeout(loadFrame, wait);
    wait = Math.min(wait * 1.5, 30000);
  };
  const loadFrame = async () => {
    if (S.edit !== d) return;  // the editor was left
    let why = "";
    try {
      const r = await fetch(frameOfNow(), { credentials: "same-origin" });
      // the login brings the owner back to this editor (static/login.js)
      if (r.status === 401) { location.href = "/login?expired" + location.hash; return; }
      if (r.ok) {
        const blob = await r.blob();
        if (S.edit !== d) return;  // left meanwhile: nothing shows it
        d.img.src = URL.createObjectURL(blob);
        return;
      }
      why = (await r.text()).trim().replace(/^\d{3} (no frame of now: )?/, "").slice(0, 300);
    } catch (e) {
      why = "the watchdog did not answer";
    }
    noFrame(why);
  };
  d.img.addEventListener("error", () => {
    if (d.img.src.startsWith("blob:")) URL.revokeObjectURL(d.img.src);
    noFrame("the camera's picture could not be shown");
  });
  loadFrame();
  const mode = (value, label) => el("label", {},
    el("input", { type: "radio", name: "mode", value, checked: value === d.mode, "data-role": `mode-${value}`,
      onchange: () => { d.mode = value; d.current = []; d.drag = null; drawEditor(); } }), label);
  // the range holds the value set in the config file (up to 10), which the slider must not clip
  const sens = p.settings.sensitivity;
  d.sens = el("input", { type: "range", min: String(Math.min(0.5, sens)), max: String(Math.max(2, sens)), step: "0.05", value: String(sens), "data-role": "sensitivity" });
  d.sensOut = el("output", { text: String(sens) });
  d.sens.addEventListener("input", () => { d.sensOut.textContent = d.sens.value; d.sensMoved = true; keepDraft(); });
  d.cons = el("input", { type: "number", min: "1", max: "100", step: "1", value: String(p.settings.consecutive), "data-role": "consecutive" });
  d.judge = el("input", { type: "checkbox", checked: p.settings.judge_start !== false, "data-role": "judge-start" });
  d.cons.addEventListener("input", keepDraft);
  d.judge.addEventListener("change", keepDraft);
  d.yaml = el("pre", { class: "yaml", "data-role": "yaml" });
  d.origin = el("p", { class: "origin muted", "data-role": "origin" });
  d.status = el("p", { class: "muted", "data-role": "scored" });
  // the start guard judges a print's first frames by the model's own scores, of its own view
  d.guardNote = el("p", { class: "muted", "data-role": "guard-note", hidden: true,
    text: "With a region other than the model's, a print that looks wrong from its very first "
      + "frame is not caught: the model's start guard knows its own region only. \"Model's "
      + "region\" turns it back on." });
  d.draftNote = el("p", { class: "muted", "data-role": "draft-note", hidden: !restoreDraft(d),
    text: "Your unsaved changes are back (the page had reloaded): Save applies them." });
  view.replaceChildren(el("div", { class: "card" },
    el("div", { class: "card-head" }, el("h2", { text: `Where to look: ${name}` }), el("a", { href: "#/", class: "button" }, "Back")),
    el("div", { class: "editor" },
      el("div", {},
        el("div", { class: "tools" }, mode("mask", "Mask: click corners"), mode("region", "Watched region: drag"),
          el("button", { type: "button", "data-role": "finish", onclick: finishPolygon }, "Finish polygon"),
          el("button", { type: "button", "data-role": "undo", onclick: () => { if (d.current.length) d.current.pop(); else d.masks.pop(); drawEditor(); } }, "Undo"),
          el("button", { type: "button", "data-role": "clear", onclick: () => { d.masks = []; d.current = []; drawEditor(); } }, "Clear masks"),
          el("button", { type: "button", "data-role": "full", onclick: () => { d.region = null; drawEditor(); } }, "Model's region")),
        el("div", { class: "stage" }, d.img, d.canvas),
        d.frameNote,
        d.status,
        d.draftNote),
      el("div", {},
        el("fieldset", {}, el("legend", { text: "Settings" }),
          el("label", {}, "Sensitivity (higher: more alerts)", d.sens, d.sensOut),
          el("label", {}, "Anomalous frames in a row", d.cons),
          el("label", {}, d.judge, "Watch a print's first minutes too (against its first frames)"),
          d.guardNote),
        el("div", { class: "buttons" },
          el("button", { class: "primary", type: "button", "data-role": "save", onclick: saveEditor }, "Save"),
          el("button", { type: "button", "data-role": "reset", onclick: resetEditor }, "Reset to the config file")),
        d.origin,
        el("p", { class: "muted", text: "The same settings for a config file kept in git:" }),
        d.yaml))));
  d.canvas.addEventListener("pointerdown", editorDown);
  d.canvas.addEventListener("pointermove", editorMove);
  d.canvas.addEventListener("pointerup", editorUp);
  d.canvas.addEventListener("keydown", editorKey);
  // the cross, shown while the picture has the keyboard (this editor's, while it is open)
  const cross = () => { if (S.edit === d) drawEditor(); };
  d.canvas.addEventListener("focus", cross);
  d.canvas.addEventListener("blur", cross);
  refreshEditor();
  drawEditor();
}

// ``asked``: when the poll asked for the state (performance.now()): one asked before a save
// was answered shows the settings from before it, not changes made elsewhere.
function refreshEditor(asked = Infinity) {
  const d = S.edit;
  if (!d) return;
  if (d.pending) { if (S.printers.length) openEditor(d.name); return; }
  const p = S.printers.find((x) => x.name === d.name);
  if (!p) {  // a reload took the printer out of the config: nothing here can be saved now
    if (S.printers.length) { dropDraft(d.name); openEditor(d.name); }
    return;
  }
  // saved from here and not in force (a reload refused, or still to come): the editor shows
  // what is saved, as its origin line and YAML do
  const saved = p.saved && !p.saved.error ? p.saved : {};
  if (!(asked < (d.savedAt || 0))) adoptSettings(d, { ...p.settings, ...saved });
  const keys = Object.keys(p.saved || {});
  d.origin.textContent = (p.saved && p.saved.error ? p.saved.error
    : keys.length ? `Saved from this page: ${keys.join(", ")} (overrides the config file).` : "All settings come from the config file.")
    + refusedNote(saved, p.settings, S.reloadRefused);
  d.yaml.textContent = p.yaml || "# nothing saved from the page";
}

// A refused reload leaves the settings before it running: said until one is applied. The
// page's own settings already in force were said "not applied" where the config file's edit
// was what was refused, and the owner saved them again for nothing.
function refusedNote(saved, inForce, why) {
  if (!why) return "";
  const keys = Object.keys(saved);
  if (keys.every((k) => JSON.stringify(saved[k]) === JSON.stringify(inForce[k]))) {
    return ` A change of the config file was refused (${why}): the watchdog runs the settings it had${keys.length ? ", these included" : ""}.`;
  }
  return ` Not applied: the watchdog refused them (${why}) and runs the settings it had.`;
}

// Settings changed elsewhere while the editor is open (the config file reloaded, another
// tab): each one the owner has not changed here is shown as it is in force now; the owner's
// own changes stay, and a save still sends only those.
function adoptSettings(d, settings) {
  const fresh = editorValues(settings), now = editorNow(d);
  let drawn = false;
  for (const k of Object.keys(fresh)) {
    if (fresh[k] === d.base[k] || now[k] !== d.base[k]) continue;
    d.base[k] = fresh[k];
    if (k === "mask") { d.masks = JSON.parse(fresh.mask); drawn = true; }
    else if (k === "region") { d.region = JSON.parse(fresh.region); drawn = true; }
    else if (k === "sensitivity") {
      d.sens.min = String(Math.min(0.5, fresh.sensitivity));
      d.sens.max = String(Math.max(2, fresh.sensitivity));
      d.sens.value = String(fresh.sensitivity);
      d.sensOut.textContent = String(fresh.sensitivity);
    } else if (k === "consecutive") d.cons.value = String(fresh.consecutive);
    else if (k === "judge_start") d.judge.checked = fresh.judge_start;
  }
  if (drawn) drawEditor(); else keepDraft();
}

function norm(ev) {
  const r = S.edit.canvas.getBoundingClientRect();
  const cl = (v) => Math.max(0, Math.min(1, v));
  return [cl((ev.clientX - r.left) / r.width), cl((ev.clientY - r.top) / r.height)];
}

function editorDown(ev) {
  const d = S.edit;
  d.down = [ev.clientX, ev.clientY];
  if (d.mode === "region") { d.drag = norm(ev); d.dragTo = d.drag; d.canvas.setPointerCapture(ev.pointerId); }
}

function editorMove(ev) {
  const d = S.edit;
  if (d.mode === "region" && d.drag) { d.dragTo = norm(ev); drawEditor(); }
}

const round3 = (v) => Math.round(v * 1000) / 1000;

// The region between two corners, when it is more than a sliver.
function setRegion(d, [x0, y0], [x1, y1]) {
  d.drag = null;
  if (Math.abs(x1 - x0) > 0.02 && Math.abs(y1 - y0) > 0.02) {
    d.region = [Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1)].map(round3);
  }
}

// A mask's corner at ``pt``; on its first corner (within 12 px) it closes the mask.
function addCorner(d, pt) {
  const r = d.canvas.getBoundingClientRect();
  if (d.current.length >= 3) {
    const [fx, fy] = d.current[0];
    if (Math.hypot((fx - pt[0]) * r.width, (fy - pt[1]) * r.height) < 12) { finishPolygon(); return; }
  }
  if (!d.current.length && d.masks.length >= MASK_POLYGONS) {
    toast(`At most ${MASK_POLYGONS} masks: remove one first.`, false);
  } else if (d.current.length >= MASK_POINTS) {
    toast(`A mask has at most ${MASK_POINTS} corners: click its first corner to close it.`, false);
  } else {
    d.current.push(pt.map(round3));
  }
}

function editorUp(ev) {
  const d = S.edit;
  const pt = norm(ev);
  if (d.mode === "region" && d.drag) {
    setRegion(d, d.drag, pt);
  } else if (d.mode === "mask") {
    // a finger that moved was scrolling past the picture (on a phone it fills the screen's
    // width), not setting a corner where it lifted
    const moved = d.down ? Math.hypot(ev.clientX - d.down[0], ev.clientY - d.down[1]) : 0;
    d.down = null;
    if (moved > 10) return;
    addCorner(d, pt);
  }
  drawEditor();
}

// The keyboard draws too: the arrows move a cross over the picture (Shift: ten times as
// far), Enter or Space sets a mask's corner there (Finish polygon closes it), or the watched
// region's two corners one after the other; Escape drops what is half drawn.
function editorKey(ev) {
  const d = S.edit;
  const step = ev.shiftKey ? 0.1 : 0.01;
  const moves = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
  const at = () => `${Math.round(d.cursor[0] * 100)}% across, ${Math.round(d.cursor[1] * 100)}% down`;
  if (ev.key in moves) {
    const [dx, dy] = moves[ev.key];
    d.cursor = [d.cursor[0] + dx, d.cursor[1] + dy].map((v) => round3(Math.max(0, Math.min(1, v))));
    if (d.drag) d.dragTo = d.cursor;
    say(at());
  } else if (ev.key === "Enter" || ev.key === " ") {
    if (d.mode === "mask") {
      const before = d.current.length;
      addCorner(d, d.cursor);
      if (d.current.length > before) say(`corner ${d.current.length} at ${at()}`);
    } else if (!d.drag) {
      d.drag = d.dragTo = d.cursor;
      say(`region's first corner at ${at()}: move to the opposite corner, then Enter`);
    } else {
      setRegion(d, d.drag, d.cursor);
      say("region set");
    }
  } else if (ev.key === "Escape") {
    d.drag = null;
    d.current = [];
  } else return;
  ev.preventDefault();  // the arrows would scroll the page, Space too
  drawEditor();
}

function finishPolygon() {
  const d = S.edit;
  if (d.current.length >= 3) { d.masks.push(d.current); d.current = []; }
  else if (d.current.length) toast("A mask needs at least 3 corners.", false);
  drawEditor();
}

function drawEditor() {
  const d = S.edit;
  if (!d || !d.canvas) return;
  keepDraft();  // every change to the drawing comes through here
  const c = d.canvas, dpr = window.devicePixelRatio || 1;
  // a region is dragged, so the finger must not scroll then; masks are tapped: it may
  c.style.touchAction = d.mode === "region" ? "none" : "pan-y";
  const w = c.clientWidth, h = c.clientHeight;
  if (!w || !h) return;
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  const region = d.drag ? [Math.min(d.drag[0], d.dragTo[0]), Math.min(d.drag[1], d.dragTo[1]), Math.max(d.drag[0], d.dragTo[0]), Math.max(d.drag[1], d.dragTo[1])]
    : d.region || d.modelRegion || [0, 0, 1, 1];
  const model = d.modelRegion || [0, 0, 1, 1];
  d.guardNote.hidden = !d.modelGuard || region.every((v, i) => Math.abs(v - model[i]) <= SAME_REGION);
  // Everything outside the region is not scored: dark; masks inside are not scored: red.
  g.fillStyle = "rgba(0, 0, 0, 0.6)";
  g.beginPath();
  g.rect(0, 0, w, h);
  g.rect(region[0] * w, region[1] * h, (region[2] - region[0]) * w, (region[3] - region[1]) * h);
  g.fill("evenodd");
  g.strokeStyle = "#3ddc84"; g.lineWidth = 2;
  g.strokeRect(region[0] * w, region[1] * h, (region[2] - region[0]) * w, (region[3] - region[1]) * h);
  for (const poly of d.masks) {
    g.fillStyle = "rgba(198, 40, 40, 0.55)"; g.strokeStyle = "#ff8a80";
    g.beginPath();
    poly.forEach(([x, y], i) => (i ? g.lineTo(x * w, y * h) : g.moveTo(x * w, y * h)));
    g.closePath(); g.fill(); g.stroke();
  }
  if (d.current.length) {
    g.strokeStyle = "#ffd54f"; g.fillStyle = "#ffd54f";
    g.beginPath();
    d.current.forEach(([x, y], i) => (i ? g.lineTo(x * w, y * h) : g.moveTo(x * w, y * h)));
    g.stroke();
    for (const [x, y] of d.current) { g.beginPath(); g.arc(x * w, y * h, 4, 0, 2 * Math.PI); g.fill(); }
  }
  if (document.activeElement === c) {  // the keyboard's cross
    const [x, y] = [d.cursor[0] * w, d.cursor[1] * h];
    g.strokeStyle = "#ffffff"; g.lineWidth = 1.5;
    g.beginPath(); g.moveTo(x - 9, y); g.lineTo(x + 9, y); g.moveTo(x, y - 9); g.lineTo(x, y + 9); g.stroke();
  }
  d.status.textContent = `Scored: the clear part inside the green rectangle. ${d.masks.length} mask(s)` +
    (d.current.length ? `, drawing one (${d.current.length} corners)` : "") + ".";
  c.dataset.masks = String(d.masks.length);
}

// Save and Reset wait for the watchdog to apply them (seconds): one at a time.
async function busy(request) {
  return hold([...document.querySelectorAll("[data-role=save], [data-role=reset]")], request);
}

function editorValues(settings) {
  return {
    mask: JSON.stringify(settings.mask || []),
    region: JSON.stringify(settings.region ?? null),  // null: the model's region
    sensitivity: settings.sensitivity,
    consecutive: settings.consecutive,
    judge_start: settings.judge_start !== false,
  };
}

// An unsaved change in the editor outlives the page reloading itself (the watchdog restarted)
// and a login that expired: kept in this tab until it is saved, reset, or the editor is left.
const draftKey = (name) => `watchdog-editor:${name}`;

function editorNow(d) {
  return {
    mask: JSON.stringify(d.masks),
    region: JSON.stringify(d.region),
    // the slider's steps would round a value like 1.23: only a moved slider is a change
    sensitivity: d.sensMoved ? Number(d.sens.value) : d.base.sensitivity,
    consecutive: Number(d.cons.value),
    judge_start: d.judge.checked,
  };
}

function keepDraft() {
  const d = S.edit;
  if (!d || !d.cons) return;
  const now = editorNow(d);
  const unsaved = d.current.length > 0 || Object.keys(now).some((k) => now[k] !== d.base[k]);
  try {
    if (!unsaved) sessionStorage.removeItem(draftKey(d.name));
    else sessionStorage.setItem(draftKey(d.name), JSON.stringify({ base: d.base, now, current: d.current, moved: !!d.sensMoved }));
  } catch (e) { /* storage full or off: the draft lives as long as the page */ }
}

function dropDraft(name) {
  try { sessionStorage.removeItem(draftKey(name)); } catch (e) { /* storage off */ }
}

// Whether a draft of this printer was put back into ``d``: only over the settings it was drawn
// on (changed elsewhere since, it would undo that change: dropped, and said).
function restoreDraft(d) {
  let draft = null;
  try { draft = JSON.parse(sessionStorage.getItem(draftKey(d.name)) || "null"); } catch (e) { draft = null; }
  if (!draft || typeof draft !== "object" || !draft.now || !Array.isArray(draft.current)) return false;
  if (JSON.stringify(draft.base) !== JSON.stringify(d.base)) {
    dropDraft(d.name);
    toast("Your unsaved changes to this printer were dropped: its settings were changed elsewhere since.", false);
    return false;
  }
  let masks = null, region = null;
  try { masks = JSON.parse(draft.now.mask); region = JSON.parse(draft.now.region); } catch (e) { masks = null; }
  if (!Array.isArray(masks) || !(region === null || Array.isArray(region))) { dropDraft(d.name); return false; }
  d.masks = masks;
  d.region = region;
  d.current = draft.current;
  if (draft.moved) { d.sens.value = String(draft.now.sensitivity); d.sensOut.textContent = d.sens.value; d.sensMoved = true; }
  d.cons.value = String(draft.now.consecutive);
  d.judge.checked = draft.now.judge_start !== false;
  return true;
}

async function saveEditor() {
  const d = S.edit;
  if (d.current.length >= 3) finishPolygon();
  // Only what the owner changed in this editor becomes a saved setting (the daemon keeps
  // what was saved before): the rest keeps following the config file, or another tab.
  const now = editorNow(d);
  if (!Number.isInteger(now.consecutive) || now.consecutive < 1 || now.consecutive > 100) {
    toast("Anomalous frames in a row: a whole number from 1 to 100. Nothing was saved.", false);
    return;
  }
  const body = {};
  for (const k of Object.keys(now)) {
    if (now[k] !== d.base[k]) body[k] = k === "mask" || k === "region" ? JSON.parse(now[k]) : now[k];
  }
  if (!Object.keys(body).length) { toast("nothing changed", true); return; }
  // a mask or region is sent whole: saved only over what this page drew on, so that an
  // editor left open does not undo another tab's (the daemon answers "stale" otherwise)
  const drawn = ["mask", "region"].filter((k) => k in body);
  if (drawn.length) body.was = Object.fromEntries(drawn.map((k) => [k, JSON.parse(d.base[k])]));
  const r = await busy(() => post(`/api/printers/${d.name}/settings`, body));
  toast(r.detail, r.ok);
  if (r.stale) {  // shown again as it is in force now, to draw on again
    dropDraft(d.name);
    await editorAnew(d);
    return;
  }
  if (r.saved) {  // saved, applied or not (the toast says which)
    // a second save sends only what changed after this one; what it did not send keeps the
    // base it has (adopted from elsewhere meanwhile, perhaps)
    for (const k of Object.keys(now)) if (k in body) d.base[k] = now[k];
    d.savedAt = performance.now();
    keepDraft();  // nothing unsaved any more
    d.draftNote.hidden = true;
    d.yaml.textContent = r.yaml;
    d.origin.textContent = `Saved from this page: ${Object.keys(r.saved).join(", ")} (overrides the config file).`;
  }
}

async function resetEditor() {
  const d = S.edit;
  if (!window.confirm(`Forget the settings saved for ${d.name} on this page and use the config file's?`)) return;
  dropDraft(d.name);  // the owner chose the config file's, whatever the reset answers
  const r = await busy(() => post(`/api/printers/${d.name}/settings/reset`, {}));
  toast(r.detail, r.ok);
  // shown at once as the reset left it (answered once applied): the old drawing stayed for
  // a poll beside "All settings come from the config file", and what was drawn then was lost
  await editorAnew(d);
}

// The editor ``d`` drawn again on the settings in force now (after a reset, or a save refused
// as out of date), the keyboard at its top; not if the owner left it meanwhile.
async function editorAnew(d) {
  try { S.printers = (await getJSON("/api/state")).printers; } catch (e) { /* the next poll's */ }
  if (S.edit !== d) return;
  S.edit = { name: d.name, pending: true };
  refreshEditor();
  document.getElementById("view-edit").focus();
}

// ------------------------------------------------------------------ start

window.addEventListener("hashchange", (ev) => route(ev));
window.addEventListener("resize", () => { renderPrinters(); drawEditor(); });
const logout = document.getElementById("logout");
if (logout) logout.addEventListener("click", async () => {
  await post("/logout", {});
  try { sessionStorage.clear(); } catch (e) { /* storage off: nothing was kept */ }
  location.href = "/login";
});
route();
poll();

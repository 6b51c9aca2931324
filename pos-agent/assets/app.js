// The terminal's web UI: sign-in, my tasks, alerts, the manager's view and
// the sync indicator. Plain browser JavaScript against the local API (no
// build step, nothing loaded from elsewhere). The session token lives in
// sessionStorage; a restarted agent forgets sessions, and a 401 brings
// the sign-in screen back.
//
// Every word on screen comes from a message catalogue (/i18n/<lang>.json,
// key -> text with {name} placeholders), in the store's language (its
// locale, set by HQ: hub stores update --locale de-DE) or the one a
// worker picked for themselves on this terminal. Dates and times are
// formatted with Intl in the store's time zone and locale, never the
// browser's.
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = {
  token: sessionStorage.getItem("token"),
  me: null,
  tab: "mine",
  workers: [],
  lists: [],
  notices: null,
  pin: "",
  pinFor: null,
  lastError: "",
};

// ---- language and formats -----------------------------------------------

// The catalogues the terminal has; a store locale in another language
// gets English words with its own date and number formats.
const LANGS = ["en", "de"];
// Each language by its own name, in every catalogue.
const LANG_NAME_KEY = { en: "lang.en", de: "lang.de" };
const i18n = { lang: "en", locale: "en", timeZone: "UTC", store: "en", words: {}, fallback: {} };

async function catalogue(lang) {
  const r = await fetch("/i18n/" + lang + ".json");
  if (!r.ok) throw new Error("/i18n/" + lang + ".json: " + r.status);
  return r.json();
}

// The store's zone and locale, from the agent (which has them from HQ).
async function loadStore() {
  const s = await fetch("/api/store").then((r) => r.json());
  i18n.timeZone = s.time_zone;
  i18n.store = s.locale;
  if (!Object.keys(i18n.fallback).length) i18n.fallback = await catalogue("en");
}

// A worker's own language on this terminal, if they picked one.
function chosenLang(worker) {
  return worker ? localStorage.getItem("pos-lang:" + worker) : null;
}

// Speak `lang` (or the store's language): words from its catalogue, and
// formats of the store's locale when it is that language, else of `lang`.
async function useLang(lang) {
  const storeLang = i18n.store.split("-")[0];
  const want = lang || storeLang;
  const l = LANGS.includes(want) ? want : "en";
  i18n.words = l === "en" ? i18n.fallback : await catalogue(l);
  i18n.lang = l;
  i18n.locale = want === storeLang ? i18n.store : l;
  document.documentElement.lang = l;
  for (const e of document.querySelectorAll("[data-i18n]")) e.textContent = t(e.dataset.i18n);
  renderSync();
}

// The text of `key`, its {placeholders} filled from `params`.
function t(key, params) {
  const text = i18n.words[key] ?? i18n.fallback[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, p) => (params && p in params ? String(params[p]) : "{" + p + "}"));
}

// `key.one` or `key.other` by the language's plural rules, with {n}.
function tn(key, n) {
  const form = new Intl.PluralRules(i18n.locale).select(n) === "one" ? ".one" : ".other";
  return t(key + form, { n: num(n) });
}

function num(n) {
  return new Intl.NumberFormat(i18n.locale).format(n);
}

// "YYYY-MM-DD" of an instant on the store's clock.
function storeDay(ms) {
  return new Intl.DateTimeFormat("en-CA", { timeZone: i18n.timeZone, year: "numeric", month: "2-digit", day: "2-digit" })
    .format(new Date(ms));
}

// A due time on the store's clock: the time today, with the day before it
// on another day.
function dueText(iso) {
  if (!iso) return "—";
  const ms = Date.parse(iso);
  const opts = { timeZone: i18n.timeZone, hour: "2-digit", minute: "2-digit" };
  if (storeDay(ms) !== storeDay(Date.now())) Object.assign(opts, { weekday: "short", day: "numeric", month: "short" });
  return new Intl.DateTimeFormat(i18n.locale, opts).format(new Date(ms));
}

// A list's date (a calendar day, no zone).
function dateText(day) {
  return new Intl.DateTimeFormat(i18n.locale, { timeZone: "UTC", weekday: "short", day: "numeric", month: "short" })
    .format(new Date(day + "T00:00:00Z"));
}

// A moment (ms) on the store's clock, to the second.
function timeOf(ms) {
  if (!ms) return t("time.never");
  return new Intl.DateTimeFormat(i18n.locale, { timeZone: i18n.timeZone, hour: "2-digit", minute: "2-digit", second: "2-digit" })
    .format(new Date(ms));
}

// How late, in the engine's units (engine::due::Lateness).
function lateText(n) {
  const l = n.lateness;
  if (!l) return n.late;
  if (l.unit === "minutes") return t("late.minutes", { minutes: num(l.minutes) });
  if (l.unit === "hours") return t("late.hours", { hours: num(l.hours), minutes: num(l.minutes) });
  return tn("late.days", l.days);
}

// ---- API --------------------------------------------------------------

async function api(method, path, body) {
  const headers = { "content-type": "application/json" };
  if (state.token) headers.authorization = "Bearer " + state.token;
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await resp.json(); } catch (_) { data = null; }
  if (resp.status === 401 && state.token && path !== "/api/session") {
    signedOut(t("session.ended"));
    throw new Error("session-ended");
  }
  if (!resp.ok) {
    const err = new Error((data && data.error) || resp.statusText);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function toast(msg, bad) {
  const box = $("#toast");
  box.textContent = msg;
  box.className = "toast" + (bad ? " bad" : "");
  box.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(hideToast, 4000);
}

function hideToast() {
  clearTimeout(toast.timer);
  $("#toast").hidden = true;
}

const STATUS_KEY = {
  not_started: "status.not_started",
  in_progress: "status.in_progress",
  completed: "status.completed",
  reopened: "status.reopened",
};
const statusText = (s) => t(STATUS_KEY[s]);

const PRIORITY_KEY = { low: "priority.low", normal: "priority.normal", high: "priority.high", urgent: "priority.urgent" };
// A word with a mark, so priority never rests on colour alone.
const PRIORITY_MARK = { low: "▽", normal: "", high: "▲", urgent: "‼" };
const PRIORITY_RANK = { low: 0, normal: 1, high: 2, urgent: 3 };

const ROLE_KEY = { manager: "role.manager", cashier: "role.cashier", stocker: "role.stocker", clerk: "role.clerk" };
const roleText = (r) => (ROLE_KEY[r] ? t(ROLE_KEY[r]) : r);

// A row's priority; normal work carries no label, so the others stand out.
function priorityTag(task) {
  if (!task.priority || task.priority === "normal") return null;
  return el("span", { class: "prio " + task.priority, "data-priority": task.priority },
    PRIORITY_MARK[task.priority] + " " + t(PRIORITY_KEY[task.priority]));
}

// Work nobody holds is for anyone on shift (views::is_for): it is on
// every worker's home, so the row says so instead of "Unassigned".
function who(a) {
  if (!a) return t("assignee.anyone");
  if (a.kind === "group") return t("assignee.group", { group: a.id });
  const w = state.workers.find((x) => x.id === a.id);
  return w ? w.name : a.id;
}

function nameOf(id) {
  const w = state.workers.find((x) => x.id === id);
  return w ? w.name : id;
}

function assigneeCode(a) {
  return a ? a.kind + ":" + a.id : "";
}

// ---- sync indicator (always visible) -----------------------------------

async function pollSync() {
  try {
    state.sync = await fetch("/api/sync-status").then((r) => r.json());
    renderSync();
  } catch (_) {
    state.sync = null;
    $("#sync").className = "sync offline";
    $("#sync").dataset.online = "agent-down";
    $("#sync-text").textContent = t("sync.agent_down");
  }
}

// The last answer, in the current language (again after a switch).
function renderSync() {
  const s = state.sync;
  if (!s) return;
  const box = $("#sync");
  box.dataset.online = s.online ? "yes" : "no";
  box.dataset.unconfirmed = String(s.unconfirmed_changes);
  box.dataset.rejected = String(s.rejected.length);
  box.className = "sync " + (s.online ? "online" : "offline");
  const waiting = s.unconfirmed_changes === 0
    ? t("sync.confirmed")
    : tn("sync.waiting", s.unconfirmed_changes);
  box.dataset.lanPeers = String(s.lan_peers ?? 0);
  const last = timeOf(s.last_sync_ms);
  // Offline with peers: the store's terminals still keep each other current.
  $("#sync-text").textContent = !s.online && s.lan_peers > 0
    ? t("sync.lan", { terminals: tn("sync.terminals", s.lan_peers), last, waiting })
    : t(s.online ? "sync.online" : "sync.offline", { last, waiting });
  const rej = $("#rejections");
  // A peer's report of a refusal is shown apart: nothing is dropped for
  // it until this terminal's own connection to HQ refuses the change.
  const reported = s.reported_by_peers ?? [];
  box.dataset.reported = String(reported.length);
  if (s.rejected.length || reported.length) {
    rej.hidden = false;
    const part = (key, list) => list.length
      ? [
        el("strong", {}, tn(key, list.length)),
        ...list.map((r) => el("span", { class: "reason" }, r.reason)),
      ]
      : [];
    rej.replaceChildren(
      ...part("sync.refused", s.rejected),
      ...part("sync.reported", reported),
    );
  } else {
    rej.hidden = true;
  }
}

// ---- sign-in -----------------------------------------------------------

async function signedOut(msg) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem("token");
  $("#bell").hidden = true;
  $("#banner").hidden = true;
  await useLang(null).catch(() => {});
  $("#who").textContent = t("app.title");
  if (msg) toast(msg, true);
  renderSignIn();
}

async function renderSignIn() {
  const main = $("#main");
  try {
    state.workers = await api("GET", "/api/workers");
  } catch (e) {
    main.replaceChildren(el("p", { class: "empty" }, t("signin.no_roster", { error: e.message })));
    return;
  }
  if (!state.pinFor) {
    main.replaceChildren(
      el("h1", {}, t("signin.who")),
      state.workers.length === 0
        ? el("p", { class: "empty" }, t("signin.empty_roster"))
        : el("div", { class: "grid names" },
          state.workers.map((w) => el("button", {
            class: "name", "data-worker": w.id,
            onclick: () => { state.pinFor = w; state.pin = ""; renderSignIn(); },
          }, el("span", { class: "big" }, w.name), el("span", { class: "small" }, roleText(w.role))))),
    );
    return;
  }
  const w = state.pinFor;
  const dots = el("div", { class: "pin", id: "pin" }, "●".repeat(state.pin.length) || " ");
  const press = (d) => () => {
    if (state.pin.length < 8) state.pin += d;
    dots.textContent = "●".repeat(state.pin.length);
  };
  const keys = ["1", "2", "3", "4", "5", "6", "7", "8", "9"].map((d) =>
    el("button", { class: "key", "data-key": d, onclick: press(d) }, d));
  keys.push(el("button", { class: "key muted", onclick: () => { state.pin = ""; dots.textContent = " "; } }, t("signin.clear")));
  keys.push(el("button", { class: "key", "data-key": "0", onclick: press("0") }, "0"));
  keys.push(el("button", { class: "key go", id: "sign-in", onclick: signIn }, t("signin.go")));
  main.replaceChildren(
    el("h1", {}, t("signin.hello", { name: w.name })),
    el("p", {}, t("signin.enter_pin")),
    dots,
    el("div", { class: "keypad" }, keys),
    el("button", { class: "link", onclick: () => { state.pinFor = null; renderSignIn(); } }, t("signin.not_you", { name: w.name })),
  );
}

async function signIn() {
  try {
    const s = await api("POST", "/api/session", { worker: state.pinFor.id, pin: state.pin });
    state.token = s.token;
    sessionStorage.setItem("token", s.token);
    state.me = s;
    state.pinFor = null;
    state.pin = "";
    state.tab = "mine";
    // A refused PIN's toast belongs to the keypad, not to the next screen.
    hideToast();
    await showApp();
  } catch (e) {
    state.pin = "";
    // The refusals a worker meets at the keypad, in their language; any
    // other error as the agent words it.
    const why = { 401: "signin.wrong_pin", 403: "signin.no_pin" }[e.status];
    toast(why ? t(why) : e.message, true);
    renderSignIn();
  }
}

// ---- the signed-in app --------------------------------------------------

async function showApp() {
  if (!state.me) state.me = await api("GET", "/api/session");
  await useLang(chosenLang(state.me.id));
  state.workers = await api("GET", "/api/workers");
  $("#who").replaceChildren(
    el("span", { class: "big" }, state.me.name),
    el("span", { class: "small" }, " · " + (state.me.manager ? t("role.manager") : roleText(state.me.role))),
  );
  $("#bell").hidden = false;
  await refresh();
}

async function refresh() {
  if (!state.token) return;
  try {
    const scope = state.tab === "all" || state.tab === "manager" ? "all" : "mine";
    const [tasks, notices] = await Promise.all([
      api("GET", "/api/my-tasks?scope=" + scope),
      api("GET", "/api/notifications"),
    ]);
    state.lists = tasks.lists;
    state.today = tasks;
    state.notices = notices;
    // A manager's badge and banner count the conflicts waiting for them,
    // whichever tab is open.
    state.conflicts = state.me.manager ? await api("GET", "/api/conflicts") : [];
  } catch (e) {
    if (state.token) toast(e.message, true);
    return;
  }
  renderNoticesBar();
  render();
}

function renderNoticesBar() {
  const n = state.notices;
  const conflicts = state.conflicts || [];
  const count = n.upcoming.length + n.past_due.length + conflicts.length;
  $("#bell").classList.toggle("on", state.tab === "alerts");
  const badge = $("#badge");
  badge.hidden = count === 0;
  badge.textContent = num(count);
  const banner = $("#banner");
  const lines = [];
  if (conflicts.length) {
    lines.push(el("button", {
      class: "line conflict", id: "banner-conflicts",
      onclick: () => { state.tab = "manager"; refresh(); },
    }, t("banner.conflicts", { count: tn("count.conflicts", conflicts.length), titles: conflicts.map((c) => c.title).join(", ") })));
  }
  if (n.past_due.length) {
    lines.push(el("div", { class: "line late" }, t("banner.past_due", { n: num(n.past_due.length), titles: n.past_due.map((x) => x.title).join(", ") })));
  } else if (n.upcoming.length) {
    lines.push(el("div", { class: "line soon" }, t("banner.soon", { tasks: n.upcoming.map((x) => x.title + " (" + dueText(x.due) + ")").join(", ") })));
  }
  banner.replaceChildren(...lines);
  banner.hidden = lines.length === 0;
}

// The worker's own language on this terminal, kept per worker.
function langPicker() {
  const sel = el("select", { id: "lang", class: "lang", "aria-label": t("lang.label"),
    onchange: async () => {
      localStorage.setItem("pos-lang:" + state.me.id, sel.value);
      await showApp();
    } },
  LANGS.map((l) => el("option", { value: l, selected: l === i18n.lang }, t(LANG_NAME_KEY[l]))));
  return sel;
}

function tabs() {
  const tab = (id, label) => el("button", {
    class: "tab" + (state.tab === id ? " on" : ""), "data-tab": id,
    onclick: () => { state.tab = id; refresh(); },
  }, label);
  return el("nav", { class: "tabs" },
    tab("mine", t("tab.mine")),
    tab("all", t("tab.all")),
    state.me.manager ? tab("manager", t("tab.manager")) : null,
    langPicker(),
    el("button", { class: "tab out", onclick: async () => {
      try { await api("DELETE", "/api/session"); } catch (_) { /* signed out anyway */ }
      signedOut();
    } }, t("tab.sign_out")));
}

function tiles() {
  const n = state.notices;
  return el("div", { class: "tiles" },
    el("div", { class: "tile", id: "pending" }, el("span", { class: "num" }, num(n.pending)), el("span", {}, t("tile.pending"))),
    el("div", { class: "tile late" }, el("span", { class: "num" }, num(n.past_due.length)), el("span", {}, t("tile.past_due"))),
    el("div", { class: "tile soon" }, el("span", { class: "num" }, num(n.upcoming.length)), el("span", {}, t("tile.soon", { minutes: num(n.window_minutes) }))));
}

function render() {
  const main = $("#main");
  if (state.tab === "alerts") return main.replaceChildren(tabs(), tiles(), alertsView());
  if (state.tab === "manager") return main.replaceChildren(tabs(), managerView());
  main.replaceChildren(tabs(), tiles(), listsView(state.lists));
}

function statusChip(task) {
  const conflict = task.conflict || (task.assignee_conflict && task.assignee_conflict.length > 1);
  return el("span", { class: "chip " + task.status + (conflict ? " conflict" : "") },
    conflict ? t("status.conflict") : statusText(task.status));
}

function taskRow(task) {
  // The agent decides what is late (engine::due), with the store's clock.
  // Past due is said in words too: colour alone fails colour-blind workers.
  const late = task.past_due;
  return el("button", { class: "task" + (late ? " late" : ""), "data-task": task.task, onclick: () => openTask(task.task) },
    el("span", { class: "due" }, dueText(task.due), late ? el("span", { class: "late-mark" }, t("row.past_due")) : null),
    el("span", { class: "title" }, task.title, el("span", { class: "small assignee" }, assigneeText(task))),
    priorityTag(task),
    statusChip(task));
}

// Both sides of an assignment made twice at once, until a manager
// decides: showing one of them would tell the other person it is not theirs.
function assigneeText(task) {
  if (task.assignee_conflict && task.assignee_conflict.length > 1) {
    return t("assignee.twice", { names: task.assignee_conflict.map(who).join(t("assignee.and")) });
  }
  return who(task.assignee);
}

function listsView(lists) {
  if (!lists.length) {
    return el("p", { class: "empty" }, state.tab === "mine" ? t("home.nothing_mine") : t("home.nothing"));
  }
  return el("div", {}, lists.map((l) =>
    el("section", { class: "list" },
      el("h2", {}, l.name, el("span", { class: "small" }, " " + dateText(l.date))),
      l.tasks.map(taskRow))));
}

function alertsView() {
  const n = state.notices;
  const row = (x, text) => el("button", { class: "task", onclick: () => openTask(x.task) },
    el("span", { class: "due" }, dueText(x.due)), el("span", { class: "title" }, x.title, el("span", { class: "small" }, x.list_name)),
    priorityTag(x),
    el("span", { class: "chip" }, text));
  const conflicts = state.conflicts || [];
  return el("div", {},
    conflicts.length ? el("h2", {}, t("alerts.conflicts")) : null,
    conflicts.map((c) => el("button", {
      class: "task", "data-conflict-alert": c.task,
      onclick: () => { state.tab = "manager"; refresh(); },
    }, el("span", { class: "due" }, dueText(c.due)),
      el("span", { class: "title" }, c.title, el("span", { class: "small" }, c.list_name)),
      el("span", { class: "chip conflict" }, t("alerts.decide")))),
    el("h2", {}, t("alerts.past_due")),
    n.past_due.length ? n.past_due.map((x) => row(x, lateText(x))) : el("p", { class: "empty" }, t("alerts.nothing_past_due")),
    el("h2", {}, t("alerts.soon", { minutes: num(n.window_minutes) })),
    n.upcoming.length ? n.upcoming.map((x) => row(x, t("alerts.in_minutes", { minutes: num(x.minutes) }))) : el("p", { class: "empty" }, t("alerts.nothing_soon")));
}

// ---- task detail ---------------------------------------------------------

async function openTask(id) {
  let task;
  try { task = await api("GET", "/api/tasks/" + id); } catch (e) { return toast(e.message, true); }
  const modal = $("#modal");
  const note = el("textarea", { id: "note", placeholder: t("sheet.note"), rows: 2 });
  const act = (status, label, cls) => el("button", {
    class: "act " + cls, "data-action": status,
    onclick: async () => {
      try {
        await api("POST", "/api/tasks/" + id + "/status", { status, note: note.value });
        toast(t("sheet.saved", { title: task.title, status: statusText(status).toLowerCase() }));
        closeModal();
        refresh();
        pollSync();
      } catch (e) { toast(e.message, true); }
    },
  }, label);
  const me = state.me;
  const inGroup = task.assignee && task.assignee.kind === "group" &&
    (me.role === task.assignee.id || me.groups.includes(task.assignee.id));
  const buttons = [];
  if (task.status !== "in_progress" && task.status !== "completed") buttons.push(act("in_progress", t("sheet.start"), ""));
  if (task.status !== "completed") buttons.push(act("completed", t("sheet.complete"), "go"));
  if (task.status === "completed") buttons.push(act("reopened", t("sheet.reopen"), ""));
  if (inGroup) {
    buttons.push(el("button", { class: "act", "data-action": "claim", onclick: async () => {
      try {
        await api("POST", "/api/tasks/" + id + "/claim", {});
        toast(t("sheet.claimed", { title: task.title }));
        closeModal(); refresh(); pollSync();
      } catch (e) { toast(e.message, true); }
    } }, t("sheet.claim")));
  }
  // A manager assigns and reassigns from the sheet itself, and decides a
  // conflict on it: no trip to the Manager tab for one task.
  const managing = me.manager ? managerSheetActions(task, closeAfter) : null;
  const link = task.operation ? posOperation(task)
    : task.link && el("a", { class: "pos-op", href: task.link.target, target: "_blank", rel: "noopener" }, task.link.target);
  const by = task.status_by ? t("sheet.status_by", {
    status: statusText(task.status), name: nameOf(task.status_by), terminal: task.status_terminal, at: timeOf(task.status_at),
  }) + (task.status_note ? " — “" + task.status_note + "”" : "") : null;
  modal.replaceChildren(el("div", { class: "sheet", role: "dialog" },
    el("div", { class: "sheet-head" }, el("h2", {}, task.title), statusChip(task)),
    el("p", { class: "meta" }, task.list_name + (task.due ? " · " + t("sheet.due", { due: dueText(task.due) }) : "") + " · " + assigneeText(task)),
    el("p", { class: "meta prio-line", "data-priority": task.priority },
      t("sheet.priority", { priority: (PRIORITY_MARK[task.priority] ? PRIORITY_MARK[task.priority] + " " : "") + t(PRIORITY_KEY[task.priority]) })),
    by ? el("p", { class: "meta" }, by) : null,
    task.description ? el("p", { class: "desc" }, task.description) : null,
    link,
    note,
    el("div", { class: "actions" }, buttons, el("button", { class: "act muted", "data-close": "", onclick: closeModal }, t("sheet.close"))),
    managing));
  modal.hidden = false;
}

// A task's `pos:` operation: its name, and a button that has the agent
// hand it to the POS (pos-agent run --pos-callback). A name the agent
// will not hand on (views::pos_operation) is shown as text with why.
function posOperation(task) {
  const op = task.operation;
  if (op.refused) {
    return el("p", { class: "pos-op-refused", "data-operation-refused": op.name },
      t("pos.refused", { name: op.name }));
  }
  return el("button", { class: "pos-op", "data-operation": op.name, onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + task.task + "/pos-operation", {});
      toast(t("pos.opened", { name: op.name }));
    } catch (e) { toast(e.message, true); }
  } }, t("pos.open", { name: op.name }));
}

// After a write on the sheet: say what happened, close it, show the result.
function closeAfter(msg) {
  toast(msg);
  closeModal();
  refresh();
  pollSync();
}

// What only a manager does to one task: assign it (or reassign it) to a
// worker on the roster or a group, and decide its conflicts.
function managerSheetActions(task, done) {
  const current = assigneeCode(task.assignee);
  const sel = el("select", { id: "sheet-assign-to" }, assigneeOptions(current));
  const reassign = Boolean(task.assignee);
  const assign = el("button", { class: "act", "data-action": "assign", onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + task.task + "/assign", { to: sel.value || null });
      done(t(sel.value ? "toast.assigned" : "toast.unassigned", { title: task.title }));
    } catch (e) { toast(e.message, true); }
  } }, t(reassign ? "sheet.reassign" : "sheet.assign"));
  const resolve = (body, label) => el("button", { class: "act", "data-action": "resolve", onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + task.task + "/resolve", body);
      done(t("toast.decided", { title: task.title }));
    } catch (e) { toast(e.message, true); }
  } }, label);
  const statuses = [...new Set((task.conflict_statuses || []).map((e) => e.status))];
  const assignees = task.assignee_conflict && task.assignee_conflict.length > 1 ? task.assignee_conflict : [];
  return el("div", { class: "manage" },
    el("label", { class: "assign" }, t(reassign ? "sheet.reassign_to" : "sheet.assign_to"), sel),
    el("div", { class: "actions" }, assign),
    task.conflict && statuses.length ? el("div", { class: "actions" }, statuses.map((s) => resolve({ status: s }, t("manager.decide_status", { status: statusText(s) })))) : null,
    assignees.length ? el("div", { class: "actions" }, assignees.map((a) => resolve({ assignee: a ? assigneeCode(a) : null }, t("manager.give_to", { who: who(a) })))) : null);
}

function closeModal() {
  $("#modal").hidden = true;
  $("#modal").replaceChildren();
}

// ---- manager ---------------------------------------------------------------

function assigneeOptions(current) {
  const opts = [el("option", { value: "" }, t("assignee.anyone"))];
  for (const w of state.workers) {
    opts.push(el("option", { value: "worker:" + w.id, selected: current === "worker:" + w.id }, w.name + " (" + roleText(w.role) + ")"));
  }
  const groups = new Set();
  for (const w of state.workers) { groups.add(w.role); w.groups.forEach((g) => groups.add(g)); }
  for (const g of groups) {
    opts.push(el("option", { value: "group:" + g, selected: current === "group:" + g }, t("assignee.group", { group: g })));
  }
  return opts;
}

function managerView() {
  const conflicts = state.conflicts || [];
  const decide = (c, body, label) => el("button", { class: "act", onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + c.task + "/resolve", body);
      toast(t("toast.decided", { title: c.title }));
      refresh(); pollSync();
    } catch (e) { toast(e.message, true); }
  } }, label);
  const conflictCards = conflicts.map((c) => el("div", { class: "card conflict", "data-conflict": c.task },
    el("h3", {}, c.title, el("span", { class: "small" }, " · " + c.list_name)),
    c.statuses.length ? el("div", {},
      el("p", {}, t("manager.status_disagree")),
      c.statuses.map((e) => el("p", { class: "meta" }, t("manager.status_line", {
        status: statusText(e.status), name: nameOf(e.worker), terminal: e.terminal, at: timeOf(e.at),
      }) + (e.note ? " “" + e.note + "”" : ""))),
      el("div", { class: "actions" }, [...new Set(c.statuses.map((e) => e.status))].map((s) => decide(c, { status: s }, t("manager.decide_status", { status: statusText(s) }))))) : null,
    c.assignees.length ? el("div", {},
      el("p", {}, t("manager.assigned_twice")),
      el("div", { class: "actions" }, c.assignees.map((a) => decide(c, { assignee: a ? assigneeCode(a) : null }, t("manager.give_to", { who: who(a) }))))) : null));

  const all = [];
  for (const l of state.lists) for (const x of l.tasks) all.push(x);
  // Late work nobody holds first: the manager gives it to someone.
  const nobodysLate = (x) => x.past_due && !x.assignee;
  // Then the shift's order (views::due_order): by due time, undated
  // last, the more urgent first within one due time.
  const dueKey = (x) => (x.due ? Date.parse(x.due) : Infinity);
  all.sort((a, b) => nobodysLate(b) - nobodysLate(a) || dueKey(a) - dueKey(b) ||
    PRIORITY_RANK[b.priority] - PRIORITY_RANK[a.priority]);
  const assignRows = all.map((x) => {
    const sel = el("select", { "data-assign": x.task }, assigneeOptions(assigneeCode(x.assignee)));
    return el("div", { class: "row" + (nobodysLate(x) ? " late" : ""), "data-assign-row": x.task },
      el("span", { class: "title" }, x.title,
        nobodysLate(x) ? el("span", { class: "late-mark" }, t("manager.late_nobody")) : null,
        priorityTag(x),
        el("span", { class: "small" }, x.list_name + (x.due ? " · " + dueText(x.due) : ""))),
      sel,
      el("button", { class: "act", onclick: async () => {
        try {
          await api("POST", "/api/tasks/" + x.task + "/assign", { to: sel.value || null });
          toast(t("toast.assigned", { title: x.title })); refresh(); pollSync();
        } catch (e) { toast(e.message, true); }
      } }, t("sheet.assign")));
  });

  const listSel = el("select", { id: "new-task-list" },
    el("option", { value: "" }, t("new.a_new_list")),
    state.lists.map((l) => el("option", { value: l.list }, l.name + " (" + dateText(l.date) + ")")));
  const listName = el("input", { id: "new-list-name", placeholder: t("new.list_name_hint"), value: t("new.list_name_default") });
  const title = el("input", { id: "new-task-title", placeholder: t("new.title_hint") });
  const due = el("input", { id: "new-task-due", type: "time" });
  const to = el("select", { id: "new-task-to" }, assigneeOptions(""));
  const link = el("input", { id: "new-task-link", placeholder: t("new.link_hint") });
  const desc = el("textarea", { id: "new-task-desc", placeholder: t("new.details_hint"), rows: 2 });
  const add = el("button", { class: "act go", id: "new-task-save", onclick: async () => {
    const body = { title: title.value, due: due.value || null, assignee: to.value || null, link: link.value || null, description: desc.value };
    try {
      if (listSel.value) await api("POST", "/api/lists/" + listSel.value + "/tasks", body);
      else await api("POST", "/api/lists", { name: listName.value, tasks: [body] });
      toast(t("toast.added", { title: title.value }));
      state.tab = "all"; refresh(); pollSync();
    } catch (e) { toast(e.message, true); }
  } }, t("new.save"));

  return el("div", { class: "manager" },
    el("h2", {}, t("manager.conflicts", { n: num(conflicts.length) })),
    conflicts.length ? conflictCards : el("p", { class: "empty" }, t("manager.no_conflicts")),
    el("h2", {}, t("new.heading")),
    el("div", { class: "card form" },
      el("label", {}, t("new.list"), listSel), el("label", {}, t("new.list_name"), listName),
      el("label", {}, t("new.task"), title), el("label", {}, t("new.due"), due), el("label", {}, t("new.for"), to),
      el("label", {}, t("new.link"), link), el("label", {}, t("new.details"), desc), add),
    el("h2", {}, t("manager.assign_heading")),
    assignRows.length ? el("div", { class: "card" }, assignRows) : el("p", { class: "empty" }, t("home.nothing")));
}

// ---- start -----------------------------------------------------------------

async function start() {
  try { await loadStore(); } catch (_) { /* the sync line says the agent is down */ }
  $("#bell").addEventListener("click", () => { state.tab = "alerts"; refresh(); });
  $("#modal").addEventListener("click", (e) => { if (e.target.id === "modal") closeModal(); });
  if (state.token) {
    try { await showApp(); } catch (_) { await signedOut(); }
  } else {
    await useLang(null);
    renderSignIn();
  }
  pollSync();
  setInterval(pollSync, 1500);
  setInterval(() => { if (state.token && $("#modal").hidden && state.tab !== "manager") refresh(); }, 5000);
}

start();

// The terminal's web UI: sign-in, my tasks, alerts, the manager's view and
// the sync indicator. Plain browser JavaScript against the local API (no
// build step, nothing loaded from elsewhere). The session token lives in
// sessionStorage; a restarted agent forgets sessions, and a 401 brings
// the sign-in screen back.
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
    signedOut("Your session ended; please sign in again.");
    throw new Error("signed out");
  }
  if (!resp.ok) throw new Error((data && data.error) || resp.statusText);
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
  const t = $("#toast");
  t.textContent = msg;
  t.className = "toast" + (bad ? " bad" : "");
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(hideToast, 4000);
}

function hideToast() {
  clearTimeout(toast.timer);
  $("#toast").hidden = true;
}

const STATUS_TEXT = {
  not_started: "Not started",
  in_progress: "In progress",
  completed: "Completed",
  reopened: "Reopened",
};

const PRIORITY_TEXT = { low: "Low", normal: "Normal", high: "High", urgent: "Urgent" };
// A word with a mark, so priority never rests on colour alone.
const PRIORITY_MARK = { low: "▽", normal: "", high: "▲", urgent: "‼" };
const PRIORITY_RANK = { low: 0, normal: 1, high: 2, urgent: 3 };

// A row's priority; normal work carries no label, so the others stand out.
function priorityTag(t) {
  if (!t.priority || t.priority === "normal") return null;
  return el("span", { class: "prio " + t.priority, "data-priority": t.priority },
    PRIORITY_MARK[t.priority] + " " + PRIORITY_TEXT[t.priority]);
}

// Work nobody holds is for anyone on shift (views::is_for): it is on
// every worker's home, so the row says so instead of "Unassigned".
function who(a) {
  if (!a) return "Anyone on shift";
  if (a.kind === "group") return "Group: " + a.id;
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

function timeOf(ms) {
  if (!ms) return "never";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

// ---- sync indicator (always visible) -----------------------------------

async function pollSync() {
  try {
    const s = await fetch("/api/sync-status").then((r) => r.json());
    const box = $("#sync");
    box.dataset.online = s.online ? "yes" : "no";
    box.dataset.unconfirmed = String(s.unconfirmed_changes);
    box.dataset.rejected = String(s.rejected.length);
    box.className = "sync " + (s.online ? "online" : "offline");
    const waiting = s.unconfirmed_changes === 0
      ? "all changes confirmed"
      : s.unconfirmed_changes + (s.unconfirmed_changes === 1 ? " change" : " changes") + " waiting for HQ";
    $("#sync-text").textContent =
      (s.online ? "Online" : "Offline") + " · last sync " + timeOf(s.last_sync_ms) + " · " + waiting;
    const rej = $("#rejections");
    if (s.rejected.length) {
      rej.hidden = false;
      rej.replaceChildren(
        el("strong", {}, s.rejected.length + " change(s) refused by HQ: "),
        ...s.rejected.map((r) => el("span", { class: "reason" }, r.reason)),
      );
    } else {
      rej.hidden = true;
    }
  } catch (_) {
    $("#sync").className = "sync offline";
    $("#sync").dataset.online = "agent-down";
    $("#sync-text").textContent = "The terminal's agent is not answering";
  }
}

// ---- sign-in -----------------------------------------------------------

function signedOut(msg) {
  state.token = null;
  state.me = null;
  sessionStorage.removeItem("token");
  $("#bell").hidden = true;
  $("#banner").hidden = true;
  $("#who").textContent = "Store tasks";
  if (msg) toast(msg, true);
  renderSignIn();
}

async function renderSignIn() {
  const main = $("#main");
  try {
    state.workers = await api("GET", "/api/workers");
  } catch (e) {
    main.replaceChildren(el("p", { class: "empty" }, "Cannot read the roster: " + e.message));
    return;
  }
  if (!state.pinFor) {
    main.replaceChildren(
      el("h1", {}, "Who are you?"),
      state.workers.length === 0
        ? el("p", { class: "empty" }, "No workers on this store's roster yet. HQ adds them (hub workers add).")
        : el("div", { class: "grid names" },
          state.workers.map((w) => el("button", {
            class: "name", "data-worker": w.id,
            onclick: () => { state.pinFor = w; state.pin = ""; renderSignIn(); },
          }, el("span", { class: "big" }, w.name), el("span", { class: "small" }, w.role)))),
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
  keys.push(el("button", { class: "key muted", onclick: () => { state.pin = ""; dots.textContent = " "; } }, "Clear"));
  keys.push(el("button", { class: "key", "data-key": "0", onclick: press("0") }, "0"));
  keys.push(el("button", { class: "key go", id: "sign-in", onclick: signIn }, "Sign in"));
  main.replaceChildren(
    el("h1", {}, "Hello, " + w.name),
    el("p", {}, "Enter your PIN"),
    dots,
    el("div", { class: "keypad" }, keys),
    el("button", { class: "link", onclick: () => { state.pinFor = null; renderSignIn(); } }, "Not " + w.name + "? Go back"),
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
    toast(e.message, true);
    renderSignIn();
  }
}

// ---- the signed-in app --------------------------------------------------

async function showApp() {
  if (!state.me) state.me = await api("GET", "/api/session");
  state.workers = await api("GET", "/api/workers");
  $("#who").replaceChildren(
    el("span", { class: "big" }, state.me.name),
    el("span", { class: "small" }, state.me.manager ? " · manager" : " · " + state.me.role),
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
  badge.textContent = String(count);
  const banner = $("#banner");
  const lines = [];
  if (conflicts.length) {
    lines.push(el("button", {
      class: "line conflict", id: "banner-conflicts",
      onclick: () => { state.tab = "manager"; refresh(); },
    }, conflictsText(conflicts.length) + " to decide: " + conflicts.map((c) => c.title).join(", ")));
  }
  if (n.past_due.length) {
    lines.push(el("div", { class: "line late" }, n.past_due.length + " past due: " + n.past_due.map((t) => t.title).join(", ")));
  } else if (n.upcoming.length) {
    lines.push(el("div", { class: "line soon" }, "Due soon: " + n.upcoming.map((t) => t.title + " (" + t.due_local + ")").join(", ")));
  }
  banner.replaceChildren(...lines);
  banner.hidden = lines.length === 0;
}

function conflictsText(n) {
  return n + (n === 1 ? " conflict" : " conflicts");
}

function tabs() {
  const t = (id, label) => el("button", {
    class: "tab" + (state.tab === id ? " on" : ""), "data-tab": id,
    onclick: () => { state.tab = id; refresh(); },
  }, label);
  return el("nav", { class: "tabs" },
    t("mine", "My tasks"),
    t("all", "All today"),
    state.me.manager ? t("manager", "Manager") : null,
    el("button", { class: "tab out", onclick: async () => {
      try { await api("DELETE", "/api/session"); } catch (_) { /* signed out anyway */ }
      signedOut();
    } }, "Sign out"));
}

function tiles() {
  const n = state.notices;
  return el("div", { class: "tiles" },
    el("div", { class: "tile", id: "pending" }, el("span", { class: "num" }, n.pending), el("span", {}, "Pending tasks")),
    el("div", { class: "tile late" }, el("span", { class: "num" }, n.past_due.length), el("span", {}, "Past due")),
    el("div", { class: "tile soon" }, el("span", { class: "num" }, n.upcoming.length), el("span", {}, "Due within " + n.window_minutes + " min")));
}

function render() {
  const main = $("#main");
  if (state.tab === "alerts") return main.replaceChildren(tabs(), tiles(), alertsView());
  if (state.tab === "manager") return main.replaceChildren(tabs(), managerView());
  main.replaceChildren(tabs(), tiles(), listsView(state.lists));
}

function statusChip(t) {
  const conflict = t.conflict || (t.assignee_conflict && t.assignee_conflict.length > 1);
  return el("span", { class: "chip " + t.status + (conflict ? " conflict" : "") },
    conflict ? "Conflict" : STATUS_TEXT[t.status]);
}

function taskRow(t) {
  // The agent decides what is late (engine::due), with the store's clock.
  // Past due is said in words too: colour alone fails colour-blind workers.
  const late = t.past_due;
  return el("button", { class: "task" + (late ? " late" : ""), "data-task": t.task, onclick: () => openTask(t.task) },
    el("span", { class: "due" }, t.due_local || "—", late ? el("span", { class: "late-mark" }, "Past due") : null),
    el("span", { class: "title" }, t.title, el("span", { class: "small assignee" }, assigneeText(t))),
    priorityTag(t),
    statusChip(t));
}

// Both sides of an assignment made twice at once, until a manager
// decides: showing one of them would tell the other person it is not theirs.
function assigneeText(t) {
  if (t.assignee_conflict && t.assignee_conflict.length > 1) {
    return "Taken twice: " + t.assignee_conflict.map(who).join(" and ") + " (a manager decides)";
  }
  return who(t.assignee);
}

function listsView(lists) {
  if (!lists.length) {
    return el("p", { class: "empty" }, state.tab === "mine"
      ? "Nothing for you today. Look at “All today” for the store's tasks."
      : "No tasks today.");
  }
  return el("div", {}, lists.map((l) =>
    el("section", { class: "list" },
      el("h2", {}, l.name, el("span", { class: "small" }, " " + l.date)),
      l.tasks.map(taskRow))));
}

function alertsView() {
  const n = state.notices;
  const row = (t, text) => el("button", { class: "task", onclick: () => openTask(t.task) },
    el("span", { class: "due" }, t.due_local), el("span", { class: "title" }, t.title, el("span", { class: "small" }, t.list_name)),
    priorityTag(t),
    el("span", { class: "chip" }, text));
  const conflicts = state.conflicts || [];
  return el("div", {},
    conflicts.length ? el("h2", {}, "Conflicts to decide") : null,
    conflicts.map((c) => el("button", {
      class: "task", "data-conflict-alert": c.task,
      onclick: () => { state.tab = "manager"; refresh(); },
    }, el("span", { class: "due" }, c.due_local || "—"),
      el("span", { class: "title" }, c.title, el("span", { class: "small" }, c.list_name)),
      el("span", { class: "chip conflict" }, "Decide"))),
    el("h2", {}, "Past due"),
    n.past_due.length ? n.past_due.map((t) => row(t, t.late)) : el("p", { class: "empty" }, "Nothing past due."),
    el("h2", {}, "Due within " + n.window_minutes + " minutes"),
    n.upcoming.length ? n.upcoming.map((t) => row(t, "in " + t.minutes + " min")) : el("p", { class: "empty" }, "Nothing due soon."));
}

// ---- task detail ---------------------------------------------------------

async function openTask(id) {
  let t;
  try { t = await api("GET", "/api/tasks/" + id); } catch (e) { return toast(e.message, true); }
  const modal = $("#modal");
  const note = el("textarea", { id: "note", placeholder: "Note (optional)", rows: 2 });
  const act = (status, label, cls) => el("button", {
    class: "act " + cls, "data-action": status,
    onclick: async () => {
      try {
        await api("POST", "/api/tasks/" + id + "/status", { status, note: note.value });
        toast("Saved: " + t.title + " is " + STATUS_TEXT[status].toLowerCase());
        closeModal();
        refresh();
        pollSync();
      } catch (e) { toast(e.message, true); }
    },
  }, label);
  const me = state.me;
  const inGroup = t.assignee && t.assignee.kind === "group" &&
    (me.role === t.assignee.id || me.groups.includes(t.assignee.id));
  const buttons = [];
  if (t.status !== "in_progress" && t.status !== "completed") buttons.push(act("in_progress", "Start", ""));
  if (t.status !== "completed") buttons.push(act("completed", "Complete", "go"));
  if (t.status === "completed") buttons.push(act("reopened", "Reopen", ""));
  if (inGroup) {
    buttons.push(el("button", { class: "act", "data-action": "claim", onclick: async () => {
      try {
        await api("POST", "/api/tasks/" + id + "/claim", {});
        toast("It's yours: " + t.title);
        closeModal(); refresh(); pollSync();
      } catch (e) { toast(e.message, true); }
    } }, "Take it"));
  }
  // A manager assigns and reassigns from the sheet itself, and decides a
  // conflict on it: no trip to the Manager tab for one task.
  const managing = me.manager ? managerSheetActions(t, closeAfter) : null;
  const link = t.operation ? posOperation(t)
    : t.link && el("a", { class: "pos-op", href: t.link.target, target: "_blank", rel: "noopener" }, t.link.target);
  modal.replaceChildren(el("div", { class: "sheet", role: "dialog" },
    el("div", { class: "sheet-head" }, el("h2", {}, t.title), statusChip(t)),
    el("p", { class: "meta" }, t.list_name + (t.due_local ? " · due " + t.due_local : "") + " · " + assigneeText(t)),
    el("p", { class: "meta prio-line", "data-priority": t.priority },
      "Priority: " + (PRIORITY_MARK[t.priority] ? PRIORITY_MARK[t.priority] + " " : "") + PRIORITY_TEXT[t.priority]),
    t.status_by ? el("p", { class: "meta" }, STATUS_TEXT[t.status] + " by " + nameOf(t.status_by) + " on " + t.status_terminal + " at " + timeOf(t.status_at) + (t.status_note ? " — “" + t.status_note + "”" : "")) : null,
    t.description ? el("p", { class: "desc" }, t.description) : null,
    link,
    note,
    el("div", { class: "actions" }, buttons, el("button", { class: "act muted", onclick: closeModal }, "Close")),
    managing));
  modal.hidden = false;
}

// A task's `pos:` operation: its name, and a button that has the agent
// hand it to the POS (pos-agent run --pos-callback). A name the agent
// will not hand on (views::pos_operation) is shown as text with why.
function posOperation(t) {
  const op = t.operation;
  if (op.refused) {
    return el("p", { class: "pos-op-refused", "data-operation-refused": op.name },
      "POS operation “" + op.name + "”: " + op.refused);
  }
  return el("button", { class: "pos-op", "data-operation": op.name, onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + t.task + "/pos-operation", {});
      toast("Opened in the POS: " + op.name);
    } catch (e) { toast(e.message, true); }
  } }, "Open in the POS: " + op.name);
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
function managerSheetActions(t, done) {
  const current = assigneeCode(t.assignee);
  const sel = el("select", { id: "sheet-assign-to" }, assigneeOptions(current));
  const verb = t.assignee ? "Reassign" : "Assign";
  const assign = el("button", { class: "act", "data-action": "assign", onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + t.task + "/assign", { to: sel.value || null });
      done((sel.value ? "Assigned: " : "Unassigned: ") + t.title);
    } catch (e) { toast(e.message, true); }
  } }, verb);
  const resolve = (body, label) => el("button", { class: "act", "data-action": "resolve", onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + t.task + "/resolve", body);
      done("Decided: " + t.title);
    } catch (e) { toast(e.message, true); }
  } }, label);
  const statuses = [...new Set((t.conflict_statuses || []).map((e) => e.status))];
  const assignees = t.assignee_conflict && t.assignee_conflict.length > 1 ? t.assignee_conflict : [];
  return el("div", { class: "manage" },
    el("label", { class: "assign" }, verb + " to", sel),
    el("div", { class: "actions" }, assign),
    t.conflict && statuses.length ? el("div", { class: "actions" }, statuses.map((s) => resolve({ status: s }, "Decide: " + STATUS_TEXT[s]))) : null,
    assignees.length ? el("div", { class: "actions" }, assignees.map((a) => resolve({ assignee: a ? assigneeCode(a) : null }, "Give to " + who(a)))) : null);
}

function closeModal() {
  $("#modal").hidden = true;
  $("#modal").replaceChildren();
}

// ---- manager ---------------------------------------------------------------

function assigneeOptions(current) {
  const opts = [el("option", { value: "" }, "Anyone on shift")];
  for (const w of state.workers) {
    opts.push(el("option", { value: "worker:" + w.id, selected: current === "worker:" + w.id }, w.name + " (" + w.role + ")"));
  }
  const groups = new Set();
  for (const w of state.workers) { groups.add(w.role); w.groups.forEach((g) => groups.add(g)); }
  for (const g of groups) {
    opts.push(el("option", { value: "group:" + g, selected: current === "group:" + g }, "Group: " + g));
  }
  return opts;
}

function managerView() {
  const conflicts = state.conflicts || [];
  const decide = (t, body, label) => el("button", { class: "act", onclick: async () => {
    try {
      await api("POST", "/api/tasks/" + t.task + "/resolve", body);
      toast("Decided: " + t.title);
      refresh(); pollSync();
    } catch (e) { toast(e.message, true); }
  } }, label);
  const conflictCards = conflicts.map((c) => el("div", { class: "card conflict", "data-conflict": c.task },
    el("h3", {}, c.title, el("span", { class: "small" }, " · " + c.list_name)),
    c.statuses.length ? el("div", {},
      el("p", {}, "Workers disagree about the status:"),
      c.statuses.map((e) => el("p", { class: "meta" }, STATUS_TEXT[e.status] + " — " + nameOf(e.worker) + " on " + e.terminal + " at " + timeOf(e.at) + (e.note ? " “" + e.note + "”" : ""))),
      el("div", { class: "actions" }, [...new Set(c.statuses.map((e) => e.status))].map((s) => decide(c, { status: s }, "Decide: " + STATUS_TEXT[s])))) : null,
    c.assignees.length ? el("div", {},
      el("p", {}, "Assigned (or taken) twice at once:"),
      el("div", { class: "actions" }, c.assignees.map((a) => decide(c, { assignee: a ? assigneeCode(a) : null }, "Give to " + who(a))))) : null));

  const all = [];
  for (const l of state.lists) for (const t of l.tasks) all.push(t);
  // Late work nobody holds first: the manager gives it to someone.
  const nobodysLate = (t) => t.past_due && !t.assignee;
  // Then the shift's order (views::due_order): by due time, undated
  // last, the more urgent first within one due time.
  const dueKey = (t) => (t.due ? Date.parse(t.due) : Infinity);
  all.sort((a, b) => nobodysLate(b) - nobodysLate(a) || dueKey(a) - dueKey(b) ||
    PRIORITY_RANK[b.priority] - PRIORITY_RANK[a.priority]);
  const assignRows = all.map((t) => {
    const sel = el("select", { "data-assign": t.task }, assigneeOptions(assigneeCode(t.assignee)));
    return el("div", { class: "row" + (nobodysLate(t) ? " late" : ""), "data-assign-row": t.task },
      el("span", { class: "title" }, t.title,
        nobodysLate(t) ? el("span", { class: "late-mark" }, "Past due, nobody has it") : null,
        priorityTag(t),
        el("span", { class: "small" }, t.list_name + (t.due_local ? " · " + t.due_local : ""))),
      sel,
      el("button", { class: "act", onclick: async () => {
        try {
          await api("POST", "/api/tasks/" + t.task + "/assign", { to: sel.value || null });
          toast("Assigned: " + t.title); refresh(); pollSync();
        } catch (e) { toast(e.message, true); }
      } }, "Assign"));
  });

  const listSel = el("select", { id: "new-task-list" },
    el("option", { value: "" }, "A new list…"),
    state.lists.map((l) => el("option", { value: l.list }, l.name + " (" + l.date + ")")));
  const listName = el("input", { id: "new-list-name", placeholder: "New list name", value: "Store tasks" });
  const title = el("input", { id: "new-task-title", placeholder: "What needs doing" });
  const due = el("input", { id: "new-task-due", type: "time" });
  const to = el("select", { id: "new-task-to" }, assigneeOptions(""));
  const link = el("input", { id: "new-task-link", placeholder: "POS operation (optional), e.g. pos:price-check" });
  const desc = el("textarea", { id: "new-task-desc", placeholder: "Description (optional)", rows: 2 });
  const add = el("button", { class: "act go", id: "new-task-save", onclick: async () => {
    const task = { title: title.value, due: due.value || null, assignee: to.value || null, link: link.value || null, description: desc.value };
    try {
      if (listSel.value) await api("POST", "/api/lists/" + listSel.value + "/tasks", task);
      else await api("POST", "/api/lists", { name: listName.value, tasks: [task] });
      toast("Added: " + title.value);
      state.tab = "all"; refresh(); pollSync();
    } catch (e) { toast(e.message, true); }
  } }, "Add task");

  return el("div", { class: "manager" },
    el("h2", {}, "Conflicts (" + conflicts.length + ")"),
    conflicts.length ? conflictCards : el("p", { class: "empty" }, "No conflicts."),
    el("h2", {}, "New task"),
    el("div", { class: "card form" },
      el("label", {}, "List", listSel), el("label", {}, "New list name", listName),
      el("label", {}, "Task", title), el("label", {}, "Due", due), el("label", {}, "For", to),
      el("label", {}, "Link", link), el("label", {}, "Details", desc), add),
    el("h2", {}, "Assign today's tasks"),
    assignRows.length ? el("div", { class: "card" }, assignRows) : el("p", { class: "empty" }, "No tasks today."));
}

// ---- start -----------------------------------------------------------------

$("#bell").addEventListener("click", () => { state.tab = "alerts"; refresh(); });
$("#modal").addEventListener("click", (e) => { if (e.target.id === "modal") closeModal(); });
pollSync();
setInterval(pollSync, 1500);
setInterval(() => { if (state.token && $("#modal").hidden && state.tab !== "manager") refresh(); }, 5000);
if (state.token) showApp().catch(() => signedOut()); else renderSignIn();

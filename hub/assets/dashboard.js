// HQ dashboard: signs in to an HQ account for a session (an HttpOnly
// cookie this script never sees, and a CSRF token it sends on every
// write), reads the hub's admin API with it and redraws every few
// seconds. Plain DOM, no build step. Every value from the API goes in as
// text, never as HTML.
"use strict";

const REFRESH_MS = 5000;
const STATUS_LABEL = {
  not_started: "Not started",
  in_progress: "In progress",
  completed: "Completed",
  reopened: "Reopened",
};

const $ = (id) => document.getElementById(id);

/** Build an element: h("td", {class: "x"}, "text", child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "onclick") el.addEventListener("click", v);
    else if (k === "style") el.style.cssText = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class AuthError extends Error {}

async function api(path) {
  return (await apiRead(path)).body;
}

/** `api`, with how many lists the hub's status index had not caught up
 * with when it answered (its `status-index-behind` header): during a
 * reconnect storm a status read answers from the index as it stands. */
async function apiRead(path) {
  const resp = await fetch(new URL("api/" + path, document.baseURI), {
    credentials: "same-origin",
    cache: "no-store",
  });
  const body = await bodyOf(resp);
  if (resp.status === 401 || resp.status === 403) {
    throw new AuthError((body && body.error) || body || resp.statusText);
  }
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${(body && body.error) || body}`);
  return { body, behind: Number(resp.headers.get("status-index-behind")) || 0 };
}

async function bodyOf(resp) {
  const text = await resp.text();
  try { return JSON.parse(text); } catch { return text.trim(); }
}

/** A write (`method` with a JSON body) with the session's CSRF token:
 * the hub refuses a cookie's write without it. Answers the response. */
async function apiWrite(method, path, body) {
  const headers = { "x-csrf-token": state.csrf || "" };
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(new URL("api/" + path, document.baseURI), {
    method,
    credentials: "same-origin",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: resp.status, body: await bodyOf(resp) };
}

// ---- time ------------------------------------------------------------

const fmtDateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const fmtTime = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const fmtPrecise = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (s < 5) return "just now";
  if (s < 60) return `${s} s ago`;
  const m = Math.round(s / 60);
  if (m < 60) return `${m} min ago`;
  const hrs = Math.round(m / 60);
  if (hrs < 48) return `${hrs} h ago`;
  return `${Math.round(hrs / 24)} days ago`;
}

function when(ms, precise) {
  const d = new Date(ms);
  const text = (precise ? fmtPrecise : fmtDateTime).format(d);
  return h("time", { datetime: d.toISOString(), title: d.toISOString() }, text);
}

function localDay(d) {
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}`;
}

function shiftDay(day, by) {
  const [y, m, d] = day.split("-").map(Number);
  return localDay(new Date(y, m - 1, d + by));
}

// ---- state -----------------------------------------------------------

const state = {
  day: new URLSearchParams(location.search).get("date") || localDay(new Date()),
  stores: [],
  open: null, // { doc, task } shown in the dialog
  last: {}, // JSON of what each section last drew, to redraw only on change
  timer: null,
  run: 0,
  csrf: null, // the session's CSRF token, sent on every write
  user: null,
  fleet: { page: 1, limit: 50, q: "", group: "" }, // the stores table's page and filters
  names: {}, // store id -> name, for every store the caller sees
  rosters: {}, // store id -> { worker id -> name }, for histories
  role: null, // the signed-in account's role: editors and admins author
  groups: [], // the store groups the caller sees
  // The roll-up: the days, and the level drilled to (group: undefined at
  // the top; null for the stores in no group), one page at a time.
  rollup: { from: shiftDay(localDay(new Date()), -6), to: localDay(new Date()), group: undefined, store: null, page: 1, limit: 25 },
  pastDueOpen: new Set(), // lists expanded in "past due by list"
  templates: [], // recurring lists, for editing
};

function changed(key, data) {
  const json = JSON.stringify(data);
  if (state.last[key] === json) return false;
  state.last[key] = json;
  return true;
}

function storeName(id) {
  return state.names[id] || id;
}

function workerName(store, id) {
  const name = (state.rosters[store] || {})[id];
  return name && name !== id ? `${name} (${id})` : id;
}

function statusPill(status) {
  return h("span", { class: `pill ${status}` }, STATUS_LABEL[status] || status);
}

function assigneeText(a) {
  if (!a) return "";
  if (typeof a === "string") return a.replace(/^(worker|group):/, (m, k) => (k === "group" ? "group " : ""));
  return a.kind === "group" ? `group ${a.id}` : a.id;
}

// ---- sections --------------------------------------------------------

function drawStores(all, fleet) {
  state.stores = all;
  state.names = Object.fromEntries(all.map((s) => [s.id, s.name]));
  if (!changed("stores", fleet)) return;
  const stores = fleet.stores;
  const f = state.fleet;
  $("stores-count").textContent = `(${fleet.total})`;
  $("fleet-page").textContent = fleet.total
    ? `${(fleet.page - 1) * fleet.limit + 1}–${Math.min(fleet.total, fleet.page * fleet.limit)} of ${fleet.total} · page ${fleet.page} of ${fleet.pages}`
    : "";
  $("fleet-prev").disabled = fleet.page <= 1;
  $("fleet-next").disabled = fleet.page >= fleet.pages;
  state.groups = fleet.groups;
  drawGroupChoices();
  const select = $("fleet-group");
  const options = ["", ...fleet.groups];
  if (select.options.length !== options.length || options.some((g, i) => select.options[i].value !== g)) {
    select.replaceChildren(...options.map((g) => h("option", { value: g }, g || "All groups")));
    select.value = f.group;
  }
  const body = $("stores").tBodies[0];
  body.replaceChildren(
    ...stores.map((s) => {
      const last = s.last_sync ? Date.parse(s.last_sync) : null;
      const conn = s.online
        ? h("span", { class: "online" }, h("span", { class: "dot", "aria-hidden": "true" }),
            "Online", h("span", { class: "small" }, ` · ${s.connections} terminal${s.connections === 1 ? "" : "s"}`))
        : h("span", { class: "offline" }, h("span", { class: "dot", "aria-hidden": "true" }), "Offline");
      return h("tr", { "data-store": s.id, "data-online": String(s.online), "data-trouble": s.trouble || "" },
        h("th", { scope: "row" }, s.name,
          s.trouble && [" ", h("span", { class: `badge trouble ${s.trouble.replace(/ /g, "-")}` }, s.trouble)],
          h("div", { class: "small" }, [s.id, ...s.groups].join(" · "))),
        h("td", {}, conn),
        h("td", { class: "last-sync" },
          last ? [h("span", { "data-ago": last }, ago(last)), h("div", { class: "small" }, s.last_sync_local)] : h("span", { class: "none" }, "never")),
        h("td", {}, s.time_zone),
        h("td", { class: "num" }, s.past_due > 0 ? h("span", { class: "badge past-due" }, s.past_due) : "0"));
    }),
  );
  $("stores-empty").hidden = stores.length > 0;
}

function cell(row) {
  const total = row.not_started + row.in_progress + row.completed || 1;
  const seg = (n, cls) => n > 0 && h("span", { class: `s-${cls}`, style: `width:${(100 * n) / total}%` });
  const label = `${row.list} at ${storeName(row.store)}: ${row.completed} completed, ${row.in_progress} in progress, ` +
    `${row.not_started} not started, ${row.past_due} past due, ${row.conflicts} in conflict. Show details`;
  return h("button", {
      type: "button", class: "cell", "data-doc": row.doc, "aria-label": label,
      onclick: () => openInstance(row.doc),
    },
    h("span", { class: "bar", "aria-hidden": "true" },
      seg(row.completed, "completed"), seg(row.in_progress, "in_progress"), seg(row.not_started, "not_started")),
    h("span", { class: "counts", "aria-hidden": "true" },
      h("span", { "data-count": "completed" }, h("b", {}, row.completed), " completed"),
      h("span", { "data-count": "in_progress" }, h("b", {}, row.in_progress), " in progress"),
      h("span", { "data-count": "not_started" }, h("b", {}, row.not_started), " not started")),
    (row.past_due > 0 || row.conflicts > 0) && h("span", { class: "badges", "aria-hidden": "true" },
      row.past_due > 0 && h("span", { class: "badge past-due", "data-count": "past_due" }, `${row.past_due} past due`),
      row.conflicts > 0 && h("span", { class: "badge conflict", "data-count": "conflicts" },
        `${row.conflicts} conflict${row.conflicts === 1 ? "" : "s"}`)));
}

function drawGrid(rows) {
  if (!changed("grid", [rows, state.stores.map((s) => [s.id, s.name])])) return;
  const storeIds = state.stores.map((s) => s.id);
  for (const r of rows) if (!storeIds.includes(r.store)) storeIds.push(r.store);
  // Only stores with a list that day get a column, in the stores' order.
  const columns = storeIds.filter((id) => rows.some((r) => r.store === id));
  const lists = [...new Set(rows.map((r) => r.list))].sort((a, b) => a.localeCompare(b));
  const grid = $("grid");
  grid.tHead.replaceChildren(h("tr", {},
    h("th", { scope: "col" }, "List"),
    ...columns.map((id) => h("th", { scope: "col" }, storeName(id)))));
  grid.tBodies[0].replaceChildren(...lists.map((list) =>
    h("tr", { "data-list": list },
      h("th", { scope: "row" }, list),
      ...columns.map((id) => {
        const here = rows.filter((r) => r.list === list && r.store === id);
        return h("td", { "data-store": id },
          here.length ? here.map(cell) : h("span", { class: "none" }, "—"));
      }))));
  grid.hidden = rows.length === 0;
  $("grid-empty").hidden = rows.length > 0;
}

// How late a row is comes from the hub in the engine's words
// (engine::due::late_text), the words the terminals use.
function drawPastDue(rows) {
  if (!changed("pastDue", [rows, state.stores.map((s) => [s.id, s.name])])) return;
  $("past-due-count").textContent = rows.length ? `(${rows.length})` : "";
  $("past-due").tBodies[0].replaceChildren(...rows.map((r) =>
    h("tr", { "data-task": r.task },
      // On the store's clock, the zone named, where the hub says it.
      h("td", { class: "nowrap" }, r.due_local ? h("span", { class: "due-local" }, r.due_local) : when(r.due_ms),
        h("div", {}, h("span", { class: "pill late" }, r.late))),
      h("td", {}, storeName(r.store)),
      h("td", {}, r.list, h("div", { class: "small" }, r.date)),
      h("td", {}, h("button", { type: "button", class: "link", onclick: () => openInstance(r.doc, r.task) }, r.title),
        r.conflict && [" ", h("span", { class: "badge conflict" }, "conflict")]),
      h("td", {}, assigneeText(r.assignee) || h("span", { class: "none" }, "anyone")),
      h("td", {}, statusPill(r.status)))));
  $("past-due").hidden = rows.length === 0;
  $("past-due-empty").hidden = rows.length > 0;
}

// ---- roll-up by store group -----------------------------------------

/** The roll-up's figures (engine::fleet::OnTime) as table cells. */
function figureCells(f) {
  const due = f.completed + f.past_due;
  const share = f.on_time_share;
  const pct = share === null || share === undefined ? null : Math.round(share * 100);
  return [
    h("td", { class: "share", "data-share": pct === null ? "" : pct },
      pct === null
        ? h("span", { class: "none", title: "Nothing was due yet" }, "—")
        : [h("span", { class: `meter${pct < 80 ? " low" : ""}`, "aria-hidden": "true" },
            h("span", { style: `width:${pct}%` })),
          h("b", {}, `${pct} %`), h("div", { class: "small" }, `${f.on_time} of ${due} on time`)]),
    h("td", { class: "num", "data-count": "past_due" },
      f.past_due > 0 ? h("span", { class: "badge past-due" }, f.past_due) : "0"),
    h("td", { class: "num", "data-count": "conflicts" },
      f.conflicts > 0 ? h("span", { class: "badge conflict" }, f.conflicts) : "0"),
    h("td", { class: "num" }, f.tasks),
  ];
}

function rollupPath() {
  const r = state.rollup;
  const q = new URLSearchParams({ from: r.from, to: r.to, page: r.page, limit: r.limit });
  if (r.store) {
    q.set("store", r.store.id);
    return `fleet/rollup/lists?${q}`;
  }
  if (r.group === undefined) return `fleet/rollup?${q}`;
  if (r.group === null) q.set("ungrouped", "true");
  else q.set("group", r.group);
  return `fleet/rollup/stores?${q}`;
}

/** Go to a level of the roll-up: the groups, a group's stores, a store's lists. */
function drill(group, store) {
  Object.assign(state.rollup, { group, store, page: 1 });
  refresh();
}

function groupLabel(g) {
  return g === null ? "Stores in no group" : g;
}

function drawRollup(answer) {
  if (!changed("rollup", [answer, state.rollup.group, state.rollup.store])) return;
  const r = state.rollup;
  const crumbs = [];
  const crumb = (label, go) => h("button", { type: "button", class: "link", onclick: go }, label);
  const here = (label) => h("span", { "aria-current": "page" }, label);
  const top = "All store groups";
  if (r.group === undefined) crumbs.push(here(top));
  else {
    crumbs.push(crumb(top, () => drill(undefined, null)), " › ");
    crumbs.push(r.store ? crumb(groupLabel(r.group), () => drill(r.group, null)) : here(groupLabel(r.group)));
    if (r.store) crumbs.push(" › ", here(r.store.name));
  }
  $("rollup-crumbs").replaceChildren(...crumbs);
  const heads = ["Completed on time", "Past due", "Conflicts", "Tasks"];
  const table = $("rollup");
  let rows;
  let first;
  if (r.store) {
    first = ["List", "Days"];
    $("rollup-caption").textContent = `Lists of ${r.store.name}, most behind first`;
    rows = answer.lists.map((l) => h("tr", { "data-list": l.list },
      h("th", { scope: "row" }, l.list), h("td", { class: "num" }, l.days), ...figureCells(l)));
  } else if (r.group !== undefined) {
    first = ["Store"];
    $("rollup-caption").textContent = `Stores of ${groupLabel(r.group)}, most behind first`;
    rows = answer.stores.map((s) => h("tr", { "data-store": s.id },
      h("th", { scope: "row" },
        h("button", { type: "button", class: "link", onclick: () => drill(r.group, { id: s.id, name: s.name }) }, s.name),
        h("div", { class: "small" }, `${s.id} · ${s.time_zone}`)),
      ...figureCells(s)));
  } else {
    first = ["Store group", "Stores"];
    $("rollup-caption").textContent = "Store groups, most behind first";
    rows = answer.groups.map((g) => h("tr", { "data-group": g.group === null ? "" : g.group },
      h("th", { scope: "row" },
        h("button", { type: "button", class: "link", onclick: () => drill(g.group, null) }, groupLabel(g.group))),
      h("td", { class: "num" }, g.stores), ...figureCells(g)));
  }
  table.tHead.replaceChildren(h("tr", {}, [...first, ...heads].map((c) => h("th", { scope: "col" }, c))));
  table.tBodies[0].replaceChildren(...rows);
  table.hidden = rows.length === 0;
  $("rollup-empty").hidden = rows.length > 0;
  $("rollup-page").textContent = answer.total
    ? `${(answer.page - 1) * answer.limit + 1}–${Math.min(answer.total, answer.page * answer.limit)} of ${answer.total} · page ${answer.page} of ${answer.pages}`
    : "";
  $("rollup-prev").disabled = answer.page <= 1;
  $("rollup-next").disabled = answer.page >= answer.pages;
}

/** The compliance report (`GET /api/report`) for the roll-up's days. */
function drawReportLink() {
  const q = new URLSearchParams({ from: state.rollup.from, to: state.rollup.to, by: $("report-by").value, format: "csv" });
  $("report-csv").href = `api/report?${q}`;
}

// ---- past due by list ------------------------------------------------

function drawPastDueLists(answer, expanded) {
  if (!changed("pastDueLists", [answer, expanded, state.stores.map((s) => [s.id, s.name])])) return;
  $("past-due-lists-count").textContent = answer.past_due_tasks
    ? `(${answer.past_due_tasks} in ${answer.total} ${answer.total === 1 ? "list" : "lists"})` : "";
  const body = $("past-due-lists").tBodies[0];
  body.replaceChildren(...answer.lists.flatMap((l) => {
    const open = state.pastDueOpen.has(l.list);
    const toggle = () => {
      if (open) state.pastDueOpen.delete(l.list);
      else state.pastDueOpen.add(l.list);
      refresh();
    };
    const row = h("tr", { "data-list": l.list },
      h("th", { scope: "row" }, h("button", { type: "button", class: "link", "aria-expanded": String(open), onclick: toggle },
        open ? "▾ " : "▸ ", l.list)),
      h("td", { class: "num" }, h("span", { class: "badge past-due" }, l.tasks)),
      h("td", { class: "num" }, l.stores),
      h("td", {}, h("span", { class: "pill late" }, l.oldest_late)));
    const stores = open && expanded[l.list];
    if (!stores) return [row];
    return [row, h("tr", { class: "expansion", "data-list-stores": l.list },
      h("td", { colspan: 4 },
        h("table", { class: "data nested" },
          h("caption", { class: "visually-hidden" }, `Stores with ${l.list} past due`),
          h("thead", {}, h("tr", {}, ["Store", "Task", "Due (store's time)", "Late"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, stores.stores.flatMap((s) => s.tasks.map((t, i) =>
            h("tr", { "data-store": s.store, "data-task": t.task },
              i === 0 ? h("th", { scope: "row", rowspan: s.tasks.length }, s.name, h("div", { class: "small" }, s.store)) : null,
              h("td", {}, h("button", { type: "button", class: "link", onclick: () => openInstance(t.doc, t.task) }, t.title),
                h("div", { class: "small" }, t.date)),
              h("td", { class: "nowrap due-local" }, t.due_local),
              h("td", {}, h("span", { class: "pill late" }, t.late))))))),
        stores.total > stores.stores.length && h("p", { class: "small" },
          `The first ${stores.stores.length} of ${stores.total} stores.`)))];
  }));
  $("past-due-lists").hidden = answer.lists.length === 0;
  $("past-due-lists-empty").hidden = answer.lists.length > 0;
}

// ---- authoring (editors and admins) ----------------------------------

function mayAuthor() {
  return state.role === "editor" || state.role === "admin";
}

function drawGroupChoices() {
  const select = $("author-groups");
  const have = [...select.options].map((o) => o.value);
  if (have.length === state.groups.length && have.every((g, i) => g === state.groups[i])) return;
  const chosen = new Set([...select.selectedOptions].map((o) => o.value));
  select.replaceChildren(...state.groups.map((g) => h("option", { value: g, selected: chosen.has(g) }, g)));
}

function authorKind() {
  return document.querySelector('input[name="author-kind"]:checked').value;
}

function showAuthorKind() {
  const recurring = authorKind() === "recurring";
  $("author-one-off").hidden = recurring;
  $("author-recurring").hidden = !recurring;
  $("author-edit-row").hidden = !recurring;
  $("author-submit").textContent = recurring
    ? ($("author-template").value ? "Save the recurring list" : "Create the recurring list")
    : "Publish the list";
}

/** Recurring lists to edit. A scoped editor may not list them (they
 * name stores outside her scope): she then only creates. */
async function loadTemplates() {
  const resp = await fetch(new URL("api/templates", document.baseURI), { credentials: "same-origin", cache: "no-store" });
  state.templates = resp.ok ? await resp.json() : [];
  const select = $("author-template");
  const chosen = select.value;
  select.replaceChildren(h("option", { value: "" }, "A new recurring list"),
    ...state.templates.map((t) => h("option", { value: t.template.id }, `${t.template.name} (revision ${t.template.revision})`)));
  select.value = state.templates.some((t) => t.template.id === chosen) ? chosen : "";
}

/** "07:00 Title", "+30 Title" or "Title": a task's due time and title. */
function parseTaskLine(line) {
  const m = line.match(/^(\d{1,2}:\d{2}|\+\d+)\s+(.+)$/);
  if (!m) return { title: line };
  return { due: m[1].startsWith("+") ? m[1] : m[1].padStart(5, "0"), title: m[2].trim() };
}

function dueText(due) {
  if (!due) return "";
  if (due.after_start !== undefined) return `+${due.after_start}`;
  return String(due.at).slice(0, 5);
}

function editTemplate(id) {
  const t = state.templates.find((x) => x.template.id === id);
  showAuthorKind();
  if (!t) return;
  const tpl = t.template;
  $("author-name").value = tpl.name;
  const rule = tpl.recurrence.rrule;
  const repeat = $("author-repeat");
  if (![...repeat.options].some((o) => o.value === rule)) repeat.append(h("option", { value: rule }, rule));
  repeat.value = rule;
  $("author-time").value = String(tpl.recurrence.time_of_day).slice(0, 5);
  $("author-start").value = tpl.recurrence.start_date;
  $("author-tasks").value = tpl.tasks.map((k) => [dueText(k.due), k.title].filter(Boolean).join(" ")).join("\n");
  $("author-stores").value = "";
  $("author-message").textContent = `Assigned to ${t.stores.length} ${t.stores.length === 1 ? "store" : "stores"}; add stores or groups below.`;
}

/** Every store of `group` the caller sees (the fleet view, a page at a time). */
async function storesOfGroup(group) {
  const ids = [];
  for (let page = 1; ; page++) {
    const v = await api(`fleet/stores?${new URLSearchParams({ group, page, limit: 500 })}`);
    ids.push(...v.stores.map((s) => s.id));
    if (page >= v.pages) return ids;
  }
}

async function author() {
  const say = (text) => { $("author-message").textContent = text; };
  const name = $("author-name").value.trim();
  const lines = $("author-tasks").value.split("\n").map((l) => l.trim()).filter(Boolean);
  const stores = $("author-stores").value.split(",").map((s) => s.trim()).filter(Boolean);
  const groups = [...$("author-groups").selectedOptions].map((o) => o.value);
  const recurring = authorKind() === "recurring";
  const editing = recurring && $("author-template").value;
  if (!name || lines.length === 0) return say("Give the list a name and at least one task.");
  if (!editing && stores.length === 0 && groups.length === 0) return say("Choose at least one store or store group.");
  const tasks = lines.map(parseTaskLine);
  let answer;
  if (recurring) {
    const old = editing ? state.templates.find((t) => t.template.id === editing).template.tasks : [];
    const body = {
      name,
      rrule: $("author-repeat").value,
      time: $("author-time").value,
      start_date: $("author-start").value || undefined,
      // A task kept by title keeps its key (and what the form does not show).
      tasks: tasks.map((t) => {
        const was = old.find((k) => k.title === t.title);
        const keep = was ? {
          key: was.key,
          description: was.description,
          priority: was.priority,
          link: was.link && (was.link.kind === "pos_operation" ? `pos:${was.link.target}` : was.link.target),
          assignee: was.assignee && `${was.assignee.kind}:${was.assignee.id}`,
        } : {};
        return { ...keep, title: t.title, due: t.due };
      }),
      stores,
      groups,
    };
    if (editing) body.id = editing;
    say("Saving…");
    answer = await apiWrite("POST", "templates", body);
    if (answer.status === 201) {
      say(`Saved “${answer.body.name}” (revision ${answer.body.revision}).`);
      await loadTemplates();
      $("author-template").value = answer.body.id;
      showAuthorKind();
      refresh();
      return;
    }
  } else {
    if (tasks.some((t) => t.due && t.due.startsWith("+"))) return say("A one-off list's due times are times of day (07:00).");
    const date = $("author-date").value;
    if (!date) return say("Choose the list's date.");
    say("Publishing…");
    const all = new Set(stores);
    for (const g of groups) for (const id of await storesOfGroup(g)) all.add(id);
    answer = await apiWrite("POST", "lists", { stores: [...all], name, date, tasks });
    if (answer.status === 201) {
      say(`Published “${name}” for ${date} to ${all.size} ${all.size === 1 ? "store" : "stores"}.`);
      refresh();
      return;
    }
  }
  say(`The hub refused it: ${(answer.body && answer.body.error) || answer.body}`);
}

function resetAuthor() {
  $("author-form").reset();
  $("author-date").value = localDay(new Date());
  $("author-message").textContent = "";
  showAuthorKind();
}

// ---- drill-down ------------------------------------------------------

function eventLine(store, e) {
  return [statusPill(e.status), ` by ${workerName(store, e.worker)} on ${e.terminal}, `, when(e.at, true), e.note ? ` — “${e.note}”` : ""];
}

function drawInstance(doc) {
  const m = doc.meta;
  $("instance-title").textContent = m.name;
  $("instance-meta").replaceChildren(
    `${storeName(m.store)} (${m.store}) · ${m.date} · ${m.time_zone} · `,
    h("code", {}, doc.id));
  $("instance-body").replaceChildren(...doc.tasks.map((t) => {
    const s = t.status;
    const due = t.spec.due ? Date.parse(t.spec.due) : null;
    // The hub marks what is late (engine::due), as the grid counts it.
    const late = t.past_due === true;
    const assignees = t.assignee_conflict && t.assignee_conflict.length
      ? t.assignee_conflict.map((a) => assigneeText(a) || "nobody").join(" / ") + " (assigned concurrently)"
      : assigneeText(t.spec.assignee);
    return h("article", { class: "task", "data-task": t.spec.id, "aria-label": t.spec.title },
      h("h3", {}, t.spec.title, statusPill(s.current),
        late && h("span", { class: "badge past-due" }, "past due"),
        s.conflict.length > 0 && h("span", { class: "badge conflict" }, "conflict")),
      h("div", { class: "task-meta" },
        due !== null ? ["Due ", when(due)] : "No due time",
        assignees ? ` · Assigned to ${assignees}` : "",
        t.spec.description ? ` · ${t.spec.description}` : ""),
      s.conflict.length > 0 && h("div", { class: "conflict-box", role: "note" },
        h("p", {}, `Conflict: ${s.conflict.length} different statuses were recorded without seeing each other. ` +
          "The latest is shown until someone decides."),
        h("ul", {}, s.conflict.map((e) => h("li", { "data-event": e.id }, eventLine(m.store, e))))),
      s.history.length === 0
        ? h("p", { class: "small" }, "No status recorded yet.")
        : h("table", { class: "data history" },
          h("caption", { class: "visually-hidden" }, `Status history of ${t.spec.title}`),
          h("thead", {}, h("tr", {}, ["When", "Status", "Worker", "Terminal", "Note"].map((c) => h("th", { scope: "col" }, c)))),
          h("tbody", {}, s.history.map((e) =>
            h("tr", { "data-event": e.id },
              h("td", { class: "nowrap" }, when(e.at, true)), h("td", {}, statusPill(e.status)),
              h("td", {}, workerName(m.store, e.worker)), h("td", {}, e.terminal), h("td", {}, e.note || ""))))));
  }));
}

async function openInstance(doc, task) {
  state.open = { doc, task };
  delete state.last.instance;
  const dialog = $("instance");
  $("instance-title").textContent = "Loading…";
  $("instance-meta").textContent = "";
  $("instance-body").replaceChildren();
  if (!dialog.open) dialog.showModal();
  await refreshInstance();
  if (task) {
    const el = dialog.querySelector(`[data-task="${CSS.escape(task)}"]`);
    if (el) {
      el.classList.add("flash");
      el.scrollIntoView({ block: "nearest" });
    }
  }
}

async function refreshInstance() {
  if (!state.open || !$("instance").open) return;
  try {
    const doc = await api(`documents/${encodeURIComponent(state.open.doc)}`);
    const store = doc.meta.store;
    if (!state.rosters[store]) {
      // Histories name workers, not only their ids (the store's roster).
      const roster = await api(`stores/${encodeURIComponent(store)}/workers`).catch(() => []);
      state.rosters[store] = Object.fromEntries(roster.map((w) => [w.id, w.name]));
    }
    if (changed("instance", doc)) drawInstance(doc);
  } catch (e) {
    if (e instanceof AuthError) throw e;
    $("instance-body").replaceChildren(h("p", { class: "message" }, `Could not load this list: ${e.message}`));
  }
}

// ---- refresh loop ----------------------------------------------------

function showBehind(lists) {
  $("index-behind").textContent = lists > 0
    ? `Catching up: changes to ${lists} ${lists === 1 ? "list" : "lists"} are still being counted, so figures here may trail them for a moment.`
    : "";
  $("index-behind").hidden = !(lists > 0);
}

function showError(msg) {
  $("error").textContent = msg || "";
  $("error").hidden = !msg;
}

function showSignIn(message) {
  clearTimeout(state.timer);
  state.run++;
  state.last = {};
  $("board").hidden = true;
  $("sign-out").hidden = true;
  showBehind(0);
  $("sign-in").hidden = false;
  $("sign-in-message").textContent = message || "";
  $("refreshed").textContent = "";
  showError("");
  $("user").focus();
}

async function refresh() {
  clearTimeout(state.timer);
  // A refresh started later (date change, sign-in) supersedes this one.
  const run = ++state.run;
  try {
    const day = state.day;
    const f = state.fleet;
    const fleetQuery = new URLSearchParams({ page: f.page, limit: f.limit });
    if (f.q) fleetQuery.set("q", f.q);
    if (f.group) fleetQuery.set("group", f.group);
    const open = [...state.pastDueOpen];
    const [stores, fleet, grid, pastDue, rollup, pastDueLists, ...expanded] = await Promise.all([
      api("stores"),
      api(`fleet/stores?${fleetQuery}`),
      apiRead(`status/lists?from=${day}&to=${day}`),
      apiRead("status/past-due?limit=200"),
      api(rollupPath()),
      api("fleet/past-due?limit=50"),
      ...open.map((list) => api(`fleet/past-due?${new URLSearchParams({ list, limit: 25 })}`)),
    ]);
    if (run !== state.run) return;
    drawStores(stores, fleet);
    drawRollup(rollup);
    drawPastDueLists(pastDueLists, Object.fromEntries(open.map((l, i) => [l, expanded[i]])));
    drawGrid(grid.body);
    drawPastDue(pastDue.body);
    showBehind(Math.max(grid.behind, pastDue.behind));
    await refreshInstance();
    for (const el of document.querySelectorAll("[data-ago]")) el.textContent = ago(Number(el.dataset.ago));
    $("sign-in").hidden = true;
    $("board").hidden = false;
    $("sign-out").hidden = false;
    $("refreshed").textContent = `Updated ${fmtTime.format(new Date())}`;
    document.body.dataset.loaded = "true";
    showError("");
  } catch (e) {
    if (e instanceof AuthError) {
      state.csrf = null;
      showSignIn(`The hub refused this session: ${e.message}`);
      return;
    }
    if (run !== state.run) return;
    showBehind(0);
    showError(`Could not reach the hub (${e.message}); retrying.`);
  }
  if (run === state.run) state.timer = setTimeout(refresh, REFRESH_MS);
}

function setDay(day) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) return;
  state.day = day;
  $("date").value = day;
  const url = new URL(location.href);
  url.searchParams.set("date", day);
  history.replaceState(null, "", url);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  $("date").value = state.day;
  $("date").addEventListener("change", (e) => setDay(e.target.value));
  $("prev-day").addEventListener("click", () => setDay(shiftDay(state.day, -1)));
  $("next-day").addEventListener("click", () => setDay(shiftDay(state.day, 1)));
  $("today").addEventListener("click", () => setDay(localDay(new Date())));
  $("instance-close").addEventListener("click", () => $("instance").close());
  $("instance").addEventListener("close", () => { state.open = null; });
  $("sign-out").addEventListener("click", signOut);
  const refilter = () => {
    state.fleet.q = $("fleet-search").value.trim();
    state.fleet.group = $("fleet-group").value;
    state.fleet.page = 1;
    refresh();
  };
  let typing = null;
  $("fleet-search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 250); });
  $("fleet-group").addEventListener("change", refilter);
  $("fleet-filter").addEventListener("submit", (e) => { e.preventDefault(); refilter(); });
  $("fleet-prev").addEventListener("click", () => { state.fleet.page = Math.max(1, state.fleet.page - 1); refresh(); });
  $("fleet-next").addEventListener("click", () => { state.fleet.page += 1; refresh(); });
  $("rollup-from").value = state.rollup.from;
  $("rollup-to").value = state.rollup.to;
  const rerange = () => {
    const from = $("rollup-from").value;
    const to = $("rollup-to").value;
    if (!from || !to || from > to) return;
    Object.assign(state.rollup, { from, to, page: 1 });
    drawReportLink();
    refresh();
  };
  $("rollup-from").addEventListener("change", rerange);
  $("rollup-to").addEventListener("change", rerange);
  $("rollup-range").addEventListener("submit", (e) => { e.preventDefault(); rerange(); });
  $("rollup-prev").addEventListener("click", () => { state.rollup.page = Math.max(1, state.rollup.page - 1); refresh(); });
  $("rollup-next").addEventListener("click", () => { state.rollup.page += 1; refresh(); });
  $("report-by").addEventListener("change", drawReportLink);
  drawReportLink();
  for (const radio of document.querySelectorAll('input[name="author-kind"]')) radio.addEventListener("change", showAuthorKind);
  $("author-template").addEventListener("change", (e) => editTemplate(e.target.value));
  $("author-reset").addEventListener("click", resetAuthor);
  $("author-form").addEventListener("submit", (e) => { e.preventDefault(); author(); });
  resetAuthor();
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn();
  });
  resumeSession();
});

function signedIn(answer) {
  state.csrf = answer.csrf_token;
  state.user = answer.user;
  state.role = answer.role;
  $("who").textContent = `${answer.user} (${answer.role})`;
  // A viewer gets no authoring controls (and the hub refuses her writes anyway).
  $("authoring").hidden = !mayAuthor();
  if (mayAuthor()) loadTemplates().catch(() => {});
}

/** A page (re)loaded in a browser with a live session carries on. */
async function resumeSession() {
  try {
    const { body } = await apiRead("session");
    signedIn(body);
    refresh();
  } catch {
    showSignIn();
  }
}

async function signIn() {
  const user = $("user").value.trim();
  const password = $("password").value;
  if (!user || !password) return;
  const request = { user, password };
  const fresh = $("new-password");
  if (!$("new-password-row").hidden && fresh.value) request.new_password = fresh.value;
  $("sign-in-message").textContent = "Signing in…";
  let answer;
  try {
    answer = await apiWrite("POST", "session", request);
  } catch (e) {
    $("sign-in-message").textContent = `Could not reach the hub (${e.message}).`;
    return;
  }
  const error = (answer.body && answer.body.error) || answer.body;
  if (answer.status === 403 && /one-time setup secret/.test(error)) {
    // The first sign-in with a setup secret chooses a password.
    $("new-password-row").hidden = false;
    fresh.focus();
    $("sign-in-message").textContent = "This is a one-time setup secret: choose your own password.";
    return;
  }
  if (answer.status !== 201) {
    $("sign-in-message").textContent = `The hub refused the sign-in: ${error}`;
    return;
  }
  $("password").value = "";
  fresh.value = "";
  $("new-password-row").hidden = true;
  $("sign-in-message").textContent = "";
  signedIn(answer.body);
  refresh();
}

async function signOut() {
  try {
    await apiWrite("DELETE", "session");
  } finally {
    state.csrf = null;
    $("who").textContent = "";
    showSignIn("Signed out.");
  }
}

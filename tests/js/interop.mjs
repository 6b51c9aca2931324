// An unmodified JS automerge-repo client against our hub. Driven by
// tests/tests/js_interop.rs; can be run by hand too:
//
//   node interop.mjs <sync-url> <document-url> <worker> [mode]
//
//   sync-url      ws://127.0.0.1:PORT/sync?token=<store token>
//   document-url  automerge:<bs58check id> of an instance document
//   worker        worker id written into the status event (e.g. w-1007)
//   mode          complete     (default) find the list, read its tasks, record
//                              "completed" for the first task, wait until the
//                              hub's heads include the change
//                 unavailable  find a document this token may not see; report
//                              whether find() rejected as unavailable
//                 hq-edit      find the list and overwrite an HQ-authored task
//                              title (a store may not); report the hub's
//                              rejection
//
// Prints exactly one JSON line on stdout (the result) and progress on stderr.
// Exits 0 when the mode ran to its end, non-zero with a message otherwise
// (timeout, find failed, a "complete" change rejected by the hub).
// In "complete" mode it then stays connected until stdin closes (when stdin
// is not a terminal), so the caller decides when the client goes away.

import { ImmutableString, Repo, cbor } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const TIMEOUT_MS = 20_000

const [syncUrl, docUrl, worker, mode = "complete"] = process.argv.slice(2)
if (!syncUrl || !docUrl || !worker || !["complete", "unavailable", "hq-edit"].includes(mode)) {
  fail(2, "usage: node interop.mjs <sync-url> <document-url> <worker> [complete|unavailable|hq-edit]")
}

function log(msg) {
  process.stderr.write(`interop.mjs: ${msg}\n`)
}

function fail(code, msg) {
  process.stderr.write(`interop.mjs: FAILED: ${msg}\n`)
  process.exit(code)
}

const timer = setTimeout(
  () => fail(3, `timed out after ${TIMEOUT_MS / 1000} s (mode ${mode}, at step: ${step})`),
  TIMEOUT_MS,
)
let step = "start"
process.on("unhandledRejection", e => fail(1, `unhandled rejection at step ${step}: ${e?.stack ?? e}`))
process.on("uncaughtException", e => fail(1, `uncaught exception at step ${step}: ${e?.stack ?? e}`))

const adapter = new WebSocketClientAdapter(syncUrl)
// Watch (do not alter) what the hub sends: the client library only logs
// `error` messages, which is how the hub reports a rejected change.
const errors = []
const errorWaiters = []
const receive = adapter.receiveMessage.bind(adapter)
adapter.receiveMessage = bytes => {
  try {
    const m = cbor.decode(new Uint8Array(bytes))
    if (m?.type === "error") {
      log(`hub sent error: ${m.message}`)
      errors.push(String(m.message))
      errorWaiters.splice(0).forEach(w => w())
    }
  } catch {
    // the adapter logs undecodable frames itself
  }
  return receive(bytes)
}

const repo = new Repo({ network: [adapter] })

// Titles of the list's tasks in display order; strings in the document are
// scalar strings, which Automerge 3 reads as ImmutableString.
function taskList(doc) {
  return Object.entries(doc.tasks ?? {})
    .map(([id, t]) => ({ id, title: String(t.title ?? ""), position: Number(t.position ?? 0) }))
    .filter(t => t.title !== "")
    .sort((a, b) => a.position - b.position || (a.id < b.id ? -1 : 1))
}

// The heads the hub last told us it has (set by the repo from the sync
// state of every peer that announced a storage id; the hub does).
function hubHasHeads(handle, heads) {
  for (const meta of Object.values(repo.peerMetadataByPeerId)) {
    const sid = meta?.storageId
    const theirs = sid && handle.getSyncInfo(sid)?.lastHeads
    if (theirs && heads.every(h => theirs.includes(h))) return true
  }
  return false
}

function waitForHubHeads(handle, heads) {
  return new Promise(resolve => {
    const check = () => {
      if (hubHasHeads(handle, heads)) {
        handle.off("remote-heads", check)
        resolve(true)
      }
    }
    handle.on("remote-heads", check)
    check()
  })
}

function waitForError() {
  return errors.length > 0 ? Promise.resolve() : new Promise(r => errorWaiters.push(r))
}

function waitForStdinClose() {
  if (process.stdin.isTTY) return Promise.resolve()
  return new Promise(resolve => {
    process.stdin.on("end", resolve)
    process.stdin.on("close", resolve)
    process.stdin.on("error", resolve)
    process.stdin.resume()
  })
}

async function finish(result, code = 0) {
  process.stdout.write(JSON.stringify(result) + "\n")
  clearTimeout(timer)
  try {
    await repo.shutdown()
  } catch {
    // shutting down is best effort: the result is already out
  }
  process.exit(code)
}

async function main() {
  step = "find"
  log(`connecting to ${syncUrl.replace(/token=[^&]*/, "token=…")}, finding ${docUrl}`)
  if (mode === "unavailable") {
    try {
      const handle = await repo.find(docUrl)
      const titles = taskList(handle.doc()).map(t => t.title)
      return finish({ mode, unavailable: false, read: titles })
    } catch (e) {
      const message = String(e?.message ?? e)
      log(`find rejected: ${message}`)
      return finish({ mode, unavailable: /unavailable/i.test(message), error: message })
    }
  }

  let handle
  try {
    handle = await repo.find(docUrl)
  } catch (e) {
    fail(1, `find(${docUrl}) failed: ${e?.message ?? e}`)
  }
  step = "read"
  const tasks = taskList(handle.doc())
  const titles = tasks.map(t => t.title)
  log(`read ${titles.length} tasks: ${JSON.stringify(titles)}`)
  if (tasks.length === 0) fail(1, "the document has no tasks")
  if (!Array.isArray(handle.doc().events)) fail(1, "the document has no events list")
  const task = tasks[0]

  if (mode === "hq-edit") {
    step = "hq-edit"
    handle.change(d => {
      d.tasks[task.id].title = new ImmutableString("renamed by a store")
    })
    await waitForError()
    return finish({ mode, read: titles, task: task.id, rejections: errors })
  }

  step = "change"
  const eventId = crypto.randomUUID()
  // Scalar strings (ImmutableString): the schema's fields are scalars. A
  // plain JS string would become a collaborative text object in Automerge 3,
  // which the hub refuses in a status event.
  const s = v => new ImmutableString(v)
  handle.change(d => {
    d.events.push({
      id: s(eventId),
      task: s(task.id),
      status: s("completed"),
      worker: s(worker),
      terminal: s("js-interop"),
      at: Date.now(),
      prev: [],
    })
  })
  const heads = handle.heads()
  step = "wait for the hub to acknowledge the change"
  const outcome = await Promise.race([
    waitForHubHeads(handle, heads).then(() => "acknowledged"),
    waitForError().then(() => "rejected"),
  ])
  if (outcome === "rejected") {
    process.stdout.write(JSON.stringify({ mode, read: titles, event_id: eventId, rejections: errors }) + "\n")
    fail(1, `the hub rejected the change: ${errors.join("; ")}`)
  }
  log(`hub acknowledged heads ${JSON.stringify(heads)}`)
  process.stdout.write(
    JSON.stringify({ mode, read: titles, task: task.id, event_id: eventId, heads }) + "\n",
  )
  step = "stay connected until stdin closes"
  await waitForStdinClose()
  clearTimeout(timer)
  try {
    await repo.shutdown()
  } catch {
    // best effort
  }
  process.exit(0)
}

main()

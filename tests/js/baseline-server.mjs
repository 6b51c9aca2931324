// The baseline for `bench net`: the JS automerge-repo sync server, set up as
// automerge-repo-sync-server does it (a Repo with the Node WebSocket server
// adapter and file system storage, announcing no documents: it answers the
// peers that ask). No auth, no validation: it relays what it is sent.
//
//   node baseline-server.mjs <storage-dir> [port]
//
// Prints "baseline listening on http://127.0.0.1:PORT" on stdout once it
// accepts connections (port 0 = any free port). Stops on SIGTERM/SIGINT.

import { Repo } from "@automerge/automerge-repo"
import { NodeWSServerAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"
import { WebSocketServer } from "ws"

const [dir, port = "0"] = process.argv.slice(2)
if (!dir) {
  process.stderr.write("usage: node baseline-server.mjs <storage-dir> [port]\n")
  process.exit(2)
}

const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(port) })
const repo = new Repo({
  network: [new NodeWSServerAdapter(wss)],
  storage: new NodeFSStorageAdapter(dir),
  peerId: `baseline-${process.pid}`,
  // As automerge-repo-sync-server: sync a document with the peers that ask
  // for it, never push every document to every peer.
  sharePolicy: async () => false,
})
// The adapter answers connections only once the repo has read its storage
// id (automerge-repo 2.5.6, Repo.js / NetworkSubsystem.js); a connection
// accepted before that is never answered and dropped by the keep-alive
// 5 s later. So say "listening" only after it.
await repo.networkSubsystem.peerMetadata
const announce = () => {
  process.stdout.write(`baseline listening on http://127.0.0.1:${wss.address().port}\n`)
}
if (wss.address()) announce()
else wss.on("listening", announce)
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => process.exit(0))
}

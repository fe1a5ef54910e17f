// A technician device built on the stock automerge-repo JS client, driven line
// by line over stdin/stdout (one JSON object per line each way). fieldsync's
// interop test uses it to prove a real JS device and a Rust device converge
// through the server. Try it by hand:
//   node device.mjs "ws://127.0.0.1:3030/sync?token=<access token>&device=js-1"
//   {"cmd":"create","doc":{"title":"pump","notes":""}}
import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import * as A from "@automerge/automerge"
import readline from "node:readline"

const url = process.argv[2] ?? "ws://127.0.0.1:3030/sync"
const repo = new Repo({ network: [] })
let adapter = null
let serverStorageId = null

function connect() {
  if (adapter) return
  adapter = new WebSocketClientAdapter(url, 500)
  repo.networkSubsystem.addNetworkAdapter(adapter)
}

function disconnect() {
  if (!adapter) return
  repo.networkSubsystem.removeNetworkAdapter(adapter)
  adapter = null
}

repo.networkSubsystem.on("peer", ({ peerMetadata }) => {
  if (peerMetadata?.storageId) serverStorageId = peerMetadata.storageId
})

const sleep = ms => new Promise(r => setTimeout(r, ms))

function setPath(obj, path, value) {
  let o = obj
  for (const key of path.slice(0, -1)) o = o[key]
  o[path[path.length - 1]] = value
}

async function handle(req) {
  switch (req.cmd) {
    case "connect":
      connect()
      await adapter.whenReady()
      return { connected: true }
    case "disconnect":
      disconnect()
      return { connected: false }
    case "create": {
      const h = repo.create(req.doc)
      return { url: h.url, heads: h.heads() }
    }
    case "find": {
      const h = await repo.find(req.url, { signal: AbortSignal.timeout(req.timeoutMs ?? 10000) })
      return { doc: h.doc(), heads: h.heads() }
    }
    case "set": {
      const h = await repo.find(req.url)
      h.change(d => setPath(d, req.path, req.value))
      return { heads: h.heads() }
    }
    case "push": {
      // Appends to a list, e.g. a visit: {"cmd":"push","url":…,"path":["visits"],"value":{…}}
      const h = await repo.find(req.url)
      h.change(d => { let o = d; for (const k of req.path) o = o[k]; o.push(req.value) })
      return { heads: h.heads() }
    }
    case "splice": {
      const h = await repo.find(req.url)
      h.change(d => A.splice(d, req.path, req.index, req.del ?? 0, req.text ?? ""))
      return { heads: h.heads() }
    }
    case "dump": {
      const h = await repo.find(req.url)
      return { doc: h.doc(), heads: h.heads() }
    }
    case "wait-synced": {
      // Waits until the server has acknowledged our current heads. fieldsync
      // only sends heads that are committed to its database.
      const h = await repo.find(req.url)
      const deadline = Date.now() + (req.timeoutMs ?? 10000)
      while (Date.now() < deadline) {
        const info = serverStorageId && h.getSyncInfo(serverStorageId)
        const mine = h.heads()
        if (info && mine.every(x => info.lastHeads.includes(x))) return { heads: mine, serverHeads: info.lastHeads }
        await sleep(20)
      }
      throw new Error(`server did not acknowledge heads within ${req.timeoutMs ?? 10000} ms`)
    }
    case "exit":
      disconnect()
      setTimeout(() => process.exit(0), 50)
      return { bye: true }
    default:
      throw new Error(`unknown cmd ${req.cmd}`)
  }
}

const rl = readline.createInterface({ input: process.stdin })
let queue = Promise.resolve()
rl.on("line", line => {
  if (!line.trim()) return
  queue = queue.then(async () => {
    let reply
    try {
      reply = { ok: true, ...(await handle(JSON.parse(line))) }
    } catch (e) {
      reply = { ok: false, error: String(e?.message ?? e) }
    }
    process.stdout.write(JSON.stringify(reply) + "\n")
  })
})
rl.on("close", () => queue.then(() => process.exit(0)))

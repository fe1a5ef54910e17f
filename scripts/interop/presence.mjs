// A presence peer built on the stock automerge-repo JS client (its `Presence`
// class and raw `handle.broadcast`), driven line by line over stdin/stdout
// like device.mjs (one JSON object per line each way). fieldsync's
// tests/presence_interop.rs runs several of these, each signed in as its own
// user on its own device, against one ticket.
//   node presence.mjs "ws://127.0.0.1:3030/sync?token=<access token>&device=js-1" <peer id>
//   {"cmd":"connect"}
//   {"cmd":"find","url":"automerge:<document id>"}
//   {"cmd":"presence-start","initialState":{"user":"tom","editing":null},"heartbeatMs":200}
//   {"cmd":"presence-broadcast","channel":"editing","value":"notes"}
//   {"cmd":"wait-peer-states","expect":{"<peer id>":{"editing":"notes"}},"timeoutMs":10000}
import { Repo, Presence } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import readline from "node:readline"

const url = process.argv[2] ?? "ws://127.0.0.1:3030/sync"
const peerId = process.argv[3] ?? `js-presence-${Math.random().toString(36).slice(2)}`
const repo = new Repo({ network: [], peerId })
let adapter = null
let handle = null
let presence = null

// What the test asserts on. Connection events come from both the network
// subsystem and the adapter, so a close that the subsystem hides is still
// counted.
const stats = {
  peerId,
  peerEvents: 0, // "peer": a (re)joined connection to the server
  peerDisconnected: 0, // networkSubsystem "peer-disconnected"
  adapterPeerDisconnected: 0, // adapter "peer-disconnected"
  adapterClose: 0, // adapter "close"
  ephemeralsSent: 0, // our own ephemerals written to the socket
  echoesSent: 0, // relayed ephemerals the stock client passed back to the server
  ephemeralsReceived: 0, // after the network subsystem's (sender, session) dedupe
  presenceGoodbyes: [], // peer ids we got a Presence "goodbye" from
  presencePruned: [], // peer ids our Presence forgot for silence
}
// The session ids our network subsystem stamps on our own ephemerals (it
// keeps its own private); the test compares them with what the others see.
const sentSessionIds = new Set()
// Raw ephemeral messages as they came off the wire, one summary per
// (senderId, sessionId): the server's extra keys are only visible here.
const rawBySource = new Map()
// Decoded payloads of `ephemeral-message` events on the handle (not Presence).
const received = []

function connect() {
  if (adapter) return
  // The stock 5 s retry: it also re-dials if the socket has not opened
  // within that time, and a shorter one could open a second socket on a
  // busy machine, which the test would count as a reconnect.
  adapter = new WebSocketClientAdapter(url, 5000)
  adapter.on("peer-disconnected", () => stats.adapterPeerDisconnected++)
  adapter.on("close", () => stats.adapterClose++)
  // Record what goes out: our own ephemerals (sender = us) and the echoes of
  // relayed ones (sender = someone else) that stock clients send back.
  const send = adapter.send.bind(adapter)
  adapter.send = msg => {
    if (msg.type === "ephemeral") {
      if (msg.senderId === peerId) {
        stats.ephemeralsSent++
        sentSessionIds.add(msg.sessionId)
      } else {
        stats.echoesSent++
      }
    }
    return send(msg)
  }
  repo.networkSubsystem.addNetworkAdapter(adapter)
}

repo.networkSubsystem.on("peer", () => stats.peerEvents++)
repo.networkSubsystem.on("peer-disconnected", () => stats.peerDisconnected++)
repo.networkSubsystem.on("message", msg => {
  if (msg.type !== "ephemeral") return
  stats.ephemeralsReceived++
  const key = `${msg.senderId}\u0000${msg.sessionId}`
  const seen = rawBySource.get(key)
  rawBySource.set(key, {
    senderId: msg.senderId,
    sessionId: msg.sessionId,
    documentId: msg.documentId,
    // Present only once the server stamps the sender's verified identity.
    verifiedSender: msg.verifiedSender ?? null,
    // Every distinct verifiedSender seen from this source (must be one).
    verifiedSenders: [
      ...new Set([...(seen?.verifiedSenders ?? []), JSON.stringify(msg.verifiedSender ?? null)]),
    ],
    messages: (seen?.messages ?? 0) + 1,
    lastCount: msg.count,
  })
})

const sleep = ms => new Promise(r => setTimeout(r, ms))

// Plain JSON of the Presence peer states: {peerId: value}.
function peerStates() {
  if (!presence) return {}
  const out = {}
  for (const [id, st] of Object.entries(presence.getPeerStates().value)) out[id] = st.value
  return out
}

// Does `state` contain every key of `want` with an equal (JSON) value?
function matches(state, want) {
  if (!state) return false
  return Object.entries(want).every(([k, v]) => JSON.stringify(state[k]) === JSON.stringify(v))
}

// Polls `check` until it returns a truthy value or the deadline passes.
async function until(timeoutMs, check, describe) {
  const deadline = Date.now() + (timeoutMs ?? 10000)
  for (;;) {
    const v = check()
    if (v) return v
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${describe()}`)
    await sleep(20)
  }
}

async function handleCmd(req) {
  switch (req.cmd) {
    case "connect":
      connect()
      await adapter.whenReady()
      // whenReady also resolves after 1 s without an answer: wait for the
      // server's `peer` so the test knows this connection is counted.
      await until(req.timeoutMs ?? 10000, () => stats.peerEvents > 0, () => "no peer message from the server")
      return { connected: true, peerId }
    case "find": {
      handle = await repo.find(req.url, { signal: AbortSignal.timeout(req.timeoutMs ?? 10000) })
      handle.on("ephemeral-message", e => {
        // Presence messages are handled by the Presence class; keep the rest.
        if (e.message && typeof e.message === "object" && "__presence" in e.message) return
        received.push({ senderId: e.senderId, message: e.message })
      })
      return { doc: handle.doc(), heads: handle.heads() }
    }
    case "presence-start": {
      presence = new Presence({ handle })
      presence.on("goodbye", e => stats.presenceGoodbyes.push(e.peerId))
      presence.on("pruning", e => stats.presencePruned.push(...e.pruned))
      presence.start({
        initialState: req.initialState,
        heartbeatMs: req.heartbeatMs,
        peerTtlMs: req.peerTtlMs,
      })
      return { local: presence.getLocalState() }
    }
    case "presence-broadcast":
      presence.broadcast(req.channel, req.value)
      return { local: presence.getLocalState() }
    case "presence-stop":
      presence.stop()
      return { running: presence.running }
    case "peer-states":
      return { states: peerStates() }
    case "wait-peer-states": {
      // expect: {peerId: partial state} all present and matching;
      // absent: peer ids that must not be in the states.
      const expect = req.expect ?? {}
      const absent = req.absent ?? []
      const states = await until(
        req.timeoutMs,
        () => {
          const s = peerStates()
          const ok =
            Object.entries(expect).every(([id, want]) => matches(s[id], want)) &&
            absent.every(id => !(id in s))
          return ok && s
        },
        () => `peer states ${JSON.stringify(peerStates())}, want ${JSON.stringify(expect)} without ${JSON.stringify(absent)}`,
      )
      return { states }
    }
    case "broadcast":
      // A raw ephemeral message (automerge-repo CBOR-encodes it).
      handle.broadcast(req.message)
      return {}
    case "received":
      return { received }
    case "wait-received": {
      // Waits until a non-presence ephemeral `match`ing (partial, by key)
      // has arrived from each of `from` (sender peer ids).
      const from = req.from ?? []
      await until(
        req.timeoutMs,
        () => from.every(id => received.some(r => r.senderId === id && matches(r.message, req.match ?? {}))),
        () => `received ${JSON.stringify(received.slice(-10))}, want ${JSON.stringify(req.match)} from ${JSON.stringify(from)}`,
      )
      return { received }
    }
    case "raw-ephemerals":
      return { sources: [...rawBySource.values()], sentSessionIds: [...sentSessionIds] }
    case "stats":
      return { stats, sentSessionIds: [...sentSessionIds] }
    case "exit":
      if (presence?.running) presence.stop()
      if (adapter) repo.networkSubsystem.removeNetworkAdapter(adapter)
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
      reply = { ok: true, ...(await handleCmd(JSON.parse(line))) }
    } catch (e) {
      reply = { ok: false, error: String(e?.message ?? e) }
    }
    process.stdout.write(JSON.stringify(reply) + "\n")
  })
})
// The test's end of the pipe closed (it finished or panicked): leave at once.
rl.on("close", () => process.exit(0))

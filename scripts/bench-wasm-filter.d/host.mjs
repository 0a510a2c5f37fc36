// A proxy-wasm host in node, just enough to run the built plugin's request path outside Envoy:
// node --no-liftoff host.mjs PLUGIN.wasm POLICY.json TOKEN_FILE XFCC [REQUESTS]
// Each request is what Envoy does per stream: context create, request headers, response headers, log,
// done, delete. Header maps, time, metrics and shared data are served from plain JS objects here, so the
// figure is the plugin's own work in V8 (plus the cost of crossing into it), not Envoy's.
import { readFileSync } from "node:fs";
import { randomFillSync } from "node:crypto";

const [wasmPath, policyPath, tokenPath, xfcc, countArg] = process.argv.slice(2);
const REQUESTS = Number(countArg || 20000);
const config = readFileSync(policyPath);
const token = readFileSync(tokenPath, "utf8").trim();

const OK = 0, NOT_FOUND = 1;
let mem; let ex;
const u8 = () => new Uint8Array(mem.buffer);
const dv = () => new DataView(mem.buffer);
const dec = new TextDecoder(); const enc = new TextEncoder();
const str = (p, n) => dec.decode(u8().subarray(p, p + n));
function give(bytes, retPtr, retSize) {
  const p = ex.proxy_on_memory_allocate(bytes.length);
  u8().set(bytes, p);
  dv().setUint32(retPtr, p, true); dv().setUint32(retSize, bytes.length, true);
}
function serializeMap(pairs) {
  const parts = pairs.map(([k, v]) => [enc.encode(k), enc.encode(v)]);
  let size = 4 + parts.length * 8;
  for (const [k, v] of parts) size += k.length + v.length + 2;
  const out = new Uint8Array(size); const d = new DataView(out.buffer);
  d.setUint32(0, parts.length, true);
  let at = 4;
  for (const [k, v] of parts) { d.setUint32(at, k.length, true); d.setUint32(at + 4, v.length, true); at += 8; }
  for (const [k, v] of parts) { out.set(k, at); at += k.length + 1; out.set(v, at); at += v.length + 1; }
  return out;
}

const serialized = new WeakMap();
let maps = {}; let sent = 0; let nowNs = BigInt(Date.now()) * 1000000n; const shared = new Map();
let metricIds = 0;
const env = {
  proxy_log: () => OK,
  proxy_set_tick_period_milliseconds: () => OK,
  proxy_get_buffer_bytes: (type, start, max, retPtr, retSize) => { give(config, retPtr, retSize); return OK; },
  proxy_set_property: () => OK,
  proxy_get_property: () => NOT_FOUND,
  proxy_get_shared_data: (kp, kl, retPtr, retSize, retCas) => {
    const v = shared.get(str(kp, kl)); if (!v) return NOT_FOUND;
    give(v.value, retPtr, retSize); dv().setUint32(retCas, v.cas, true); return OK;
  },
  proxy_set_shared_data: (kp, kl, vp, vl, cas) => {
    const k = str(kp, kl); const old = shared.get(k);
    shared.set(k, { value: u8().slice(vp, vp + vl), cas: (old ? old.cas : 0) + 1 }); return OK;
  },
  proxy_get_current_time_nanoseconds: (p) => { dv().setBigUint64(p, nowNs, true); return OK; },
  proxy_get_header_map_pairs: (t, retPtr, retSize) => {
    // The request map is serialized once (the same request every time): the figure is the plugin's.
    const m = maps[t] || [];
    if (!serialized.has(m)) serialized.set(m, serializeMap(m));
    give(serialized.get(m), retPtr, retSize); return OK;
  },
  proxy_get_header_map_value: (t, kp, kl, retPtr, retSize) => {
    const k = str(kp, kl); const e = (maps[t] || []).find(([n]) => n === k);
    if (!e) return NOT_FOUND; give(enc.encode(e[1]), retPtr, retSize); return OK;
  },
  proxy_replace_header_map_value: (t, kp, kl, vp, vl) => { (maps[t] ||= []).push([str(kp, kl), str(vp, vl)]); return OK; },
  proxy_add_header_map_value: (t, kp, kl, vp, vl) => { (maps[t] ||= []).push([str(kp, kl), str(vp, vl)]); return OK; },
  proxy_remove_header_map_value: (t, kp, kl) => OK,
  proxy_set_header_map_pairs: () => OK,
  proxy_define_metric: (type, np, nl, retId) => { dv().setUint32(retId, ++metricIds, true); return OK; },
  proxy_increment_metric: () => OK,
  proxy_send_local_response: () => { sent++; return OK; },
  proxy_set_effective_context: () => OK,
  proxy_continue_stream: () => OK, proxy_close_stream: () => OK, proxy_done: () => OK,
  proxy_get_status: () => NOT_FOUND, proxy_set_buffer_bytes: () => OK,
  proxy_http_call: () => 2, proxy_call_foreign_function: () => NOT_FOUND,
  proxy_grpc_call: () => 2, proxy_grpc_stream: () => 2, proxy_grpc_send: () => 2, proxy_grpc_cancel: () => 2, proxy_grpc_close: () => 2,
  proxy_register_shared_queue: () => OK, proxy_resolve_shared_queue: () => NOT_FOUND,
  proxy_enqueue_shared_queue: () => OK, proxy_dequeue_shared_queue: () => NOT_FOUND,
};
const wasi = {
  random_get: (p, n) => { randomFillSync(u8().subarray(p, p + n)); return 0; },
  environ_sizes_get: (a, b) => { dv().setUint32(a, 0, true); dv().setUint32(b, 0, true); return 0; },
  environ_get: () => 0,
  fd_write: (fd, iov, n, ret) => { dv().setUint32(ret, 0, true); return 0; },
  proc_exit: (c) => { throw new Error(`proc_exit ${c}`); },
};
const { instance } = await WebAssembly.instantiate(readFileSync(wasmPath), { env, wasi_snapshot_preview1: wasi });
ex = instance.exports; mem = ex.memory;
ex._initialize?.();
ex.proxy_on_context_create(1, 0);
if (!ex.proxy_on_vm_start(1, 0)) throw new Error("vm start refused");
if (!ex.proxy_on_configure(1, config.length)) throw new Error("configuration refused");

const request = [
  [":authority", "127.0.0.1:10000"], [":path", "/accounts/0012345/balances"], [":method", "GET"], [":scheme", "http"],
  ["authorization", `Bearer ${token}`], ["x-forwarded-client-cert", xfcc],
  ["x-forwarded-proto", "http"], ["x-request-id", "0b7f8f5e-3c43-4a5e-9d0e-0a4b8f2c1d9e"],
];
const REQUEST_LEN = request.length;
const response = [[":status", "200"], ["content-type", "application/json"], ["content-length", "36"]];
let ctx = 2;
function one() {
  const id = ctx++;
  maps = { 0: request, 2: response.slice() };
  request.length = REQUEST_LEN;
  ex.proxy_on_context_create(id, 1);
  const action = ex.proxy_on_request_headers(id, request.length, 1);
  ex.proxy_on_response_headers(id, response.length, 0);
  ex.proxy_on_log(id); ex.proxy_on_done(id); ex.proxy_on_delete(id);
  return action;
}
if (one() !== 0 || sent !== 0) throw new Error(`the benchmark request was not admitted (action, local responses: ${sent})`);
const forwarded = maps[0].map(([k]) => k).filter((k) => k.startsWith("x-fapi"));
for (let i = 0; i < 2000; i++) one();
const batches = [];
for (let b = 0; b < 11; b++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < REQUESTS / 10; i++) one();
  batches.push(Number(process.hrtime.bigint() - t0) / 1000 / (REQUESTS / 10));
}
batches.sort((a, b) => a - b);
if (process.env.PROFILE) {
  // Where the time goes, per function (self time), over REQUESTS more requests.
  const inspector = await import("node:inspector");
  const session = new inspector.Session(); session.connect();
  const post = (m, p) => new Promise((res, rej) => session.post(m, p || {}, (e, r) => (e ? rej(e) : res(r))));
  await post("Profiler.enable"); await post("Profiler.setSamplingInterval", { interval: 20 }); await post("Profiler.start");
  for (let i = 0; i < REQUESTS; i++) one();
  const { profile } = await post("Profiler.stop");
  const byId = new Map(profile.nodes.map((n) => [n.id, n])); const self = new Map(); let total = 0;
  profile.samples.forEach((id, i) => {
    const n = byId.get(id); const dt = profile.timeDeltas[i]; total += dt;
    const k = n.callFrame.functionName || "(anonymous " + n.callFrame.url.split("/").pop() + ")";
    self.set(k, (self.get(k) || 0) + dt);
  });
  for (const [k, t] of [...self].sort((a, b) => b[1] - a[1]).slice(0, Number(process.env.PROFILE) || 30))
    console.log(`${(100 * t / total).toFixed(1).padStart(5)}%  ${k.replace(/17h[0-9a-f]{16}E$/, "")}`);
}
if (sent !== 0) throw new Error(`${sent} requests were refused`);
console.log(`plugin request path in V8 (node ${process.version}): min ${batches[0].toFixed(2)} µs, median ${batches[5].toFixed(2)} µs per request; forwarded: ${forwarded.join(" ")}`);

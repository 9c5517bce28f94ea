// Realtime through a standard EventSource implementation (npm `eventsource`, WHATWG
// semantics): `ready` first, record events in commit order, and — through a TCP proxy that
// cuts the connection mid-stream while writes go on — the library's own reconnect with
// Last-Event-ID: every event exactly once, in order. Usage: node client.mjs BASE ADMIN_TOKEN
import net from 'node:net';
import { EventSource } from 'eventsource';

const [base, adminToken] = process.argv.slice(2);
const fail = (msg) => { console.error(`FAIL: ${msg}`); process.exit(1); };
const api = async (method, path, token, body) => {
  const r = await fetch(base + path, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
};

const apply = await api('POST', '/v1/admin/schema/apply', adminToken, {
  collections: [{
    name: 'feed',
    fields: { owner: { type: 'text', required: true }, n: { type: 'integer' } },
    rules: { list: 'owner = @auth.id', view: 'owner = @auth.id', create: 'owner = @auth.id' },
  }],
});
if (apply.status !== 200) fail(`apply: ${JSON.stringify(apply.body)}`);
const signup = await api('POST', '/v1/auth/signup', null, { email: 'sse@example.com', password: 'a long password' });
if (signup.status !== 201) fail(`signup: ${JSON.stringify(signup.body)}`);
const token = signup.body.access_token;
const owner = signup.body.user.id;

// A proxy in front of the server whose client sockets can be cut.
const target = new URL(base);
const sockets = new Set();
const proxy = net.createServer((client) => {
  const upstream = net.connect(Number(target.port), target.hostname);
  sockets.add(client);
  client.on('close', () => { sockets.delete(client); upstream.destroy(); });
  upstream.on('close', () => client.destroy());
  client.on('error', () => {});
  upstream.on('error', () => {});
  client.pipe(upstream).pipe(client);
});
await new Promise((ok) => proxy.listen(0, '127.0.0.1', ok));
const proxied = `http://127.0.0.1:${proxy.address().port}`;

const received = [];
let readies = 0;
const es = new EventSource(`${proxied}/v1/realtime?collections=feed&token=${encodeURIComponent(token)}`);
const firstReady = new Promise((ok) => es.addEventListener('ready', (e) => {
  readies += 1;
  const data = JSON.parse(e.data);
  if (JSON.stringify(data.subscriptions) !== '["feed"]') fail(`ready: ${e.data}`);
  ok();
}));
es.addEventListener('record', (e) => {
  const data = JSON.parse(e.data);
  if (String(data.seq) !== e.lastEventId) fail(`seq ${data.seq} != id ${e.lastEventId}`);
  received.push(data);
});
es.addEventListener('reset', (e) => fail(`unexpected reset: ${e.data}`));
await Promise.race([firstReady, new Promise((_, no) => setTimeout(() => no(new Error('no ready within 5 s')), 5000))])
  .catch((e) => fail(e.message));
console.log('ok: ready arrives first');

const total = 40;
const created = [];
for (let i = 0; i < total; i++) {
  const r = await api('POST', '/v1/collections/feed/records', token, { owner, n: i });
  if (r.status !== 201) fail(`create ${i}: ${JSON.stringify(r.body)}`);
  created.push(r.body.id);
  if (i === 10) {
    // Cut the stream mid-way; the writes go on while the client is away.
    for (const s of sockets) s.destroy();
  }
}
const deadline = Date.now() + 15000;
while (received.length < total && Date.now() < deadline) await new Promise((ok) => setTimeout(ok, 50));
es.close();
proxy.close();
if (readies < 2) fail(`the client did not reconnect (ready seen ${readies}x)`);
console.log(`ok: EventSource reconnected by itself (${readies} ready events)`);
const ids = received.map((d) => d.record.id);
if (ids.length !== total) fail(`received ${ids.length} of ${total} events`);
if (JSON.stringify(ids) !== JSON.stringify(created)) fail('events lost, duplicated or out of order');
if (!received.every((d) => d.op === 'create' && d.collection === 'feed')) fail('unexpected event shape');
const seqs = received.map((d) => d.seq);
if (!seqs.every((s, i) => i === 0 || s > seqs[i - 1])) fail('ids not increasing');
console.log(`ok: ${total} events across a dropped connection, each once, in commit order`);
console.log('3 passed, 0 failed');

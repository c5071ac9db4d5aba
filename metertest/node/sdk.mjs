// OpenMeter's JavaScript SDK against apimeter: defines meters, ingests
// single events and batches (one batch sent twice), queries the meters by
// subject, group, window and time zone, deletes a meter. It prints what it
// sent and every answer as JSON; metertest/sdk_test.go computes what each
// answer must be from the events sent and compares.
import { OpenMeter } from '@openmeter/sdk'

const om = new OpenMeter({ baseUrl: process.env.OM_URL, apiKey: process.env.OM_KEY })

// A small deterministic generator (mulberry32), so that runs are alike.
let seed = 20261206
function rnd() {
  seed |= 0
  seed = (seed + 0x6d2b79f5) | 0
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const pick = (a) => a[Math.floor(rnd() * a.length)]

const meters = [
  { slug: 'tokens_total', name: 'Tokens', eventType: 'prompt', aggregation: 'SUM', valueProperty: '$.tokens', groupBy: { model: '$.model', region: '$.meta.region' } },
  { slug: 'prompts', name: 'Prompts', eventType: 'prompt', aggregation: 'COUNT', groupBy: { model: '$.model' } },
  { slug: 'active_users', name: 'Active users', eventType: 'prompt', aggregation: 'UNIQUE_COUNT', valueProperty: '$.user', groupBy: { model: '$.model' } },
  { slug: 'largest_prompt', name: 'Largest prompt', eventType: 'prompt', aggregation: 'MAX', valueProperty: '$.tokens' },
  { slug: 'to_delete', eventType: 'prompt', aggregation: 'COUNT' },
]

const out = { created: [], listed: [], sent: [], answers: [], afterDelete: [] }
for (const m of meters) {
  const got = await om.meters.create(m)
  out.created.push({ slug: got.slug, id: got.id, aggregation: got.aggregation })
}
out.listed = (await om.meters.list()).map((m) => m.slug)
out.got = (await om.meters.get('tokens_total')).slug

const start = Date.parse('2026-10-24T00:00:00Z')
const span = 10 * 24 * 3600 * 1000
let n = 0
function event() {
  n++
  return {
    type: 'prompt',
    subject: pick(['acme', 'globex', 'initech']),
    time: new Date(start + Math.floor(rnd() * span)),
    data: { tokens: Math.floor(rnd() * 1000), model: pick(['gpt-4', 'gpt-3.5', 'claude']), user: 'u' + Math.floor(rnd() * 15), meta: { region: pick(['eu', 'us']) } },
  }
}
function record(evs) {
  for (const e of evs) out.sent.push({ ...e, time: e.time.toISOString() })
}

// Single events: the SDK fills id, source and specversion, and sends each
// as a batch of one.
for (let i = 0; i < 20; i++) {
  const e = event()
  await om.events.ingest(e)
  record([e])
}
// Batches, with the ids given; the third is sent twice (a retry).
let resent
for (let b = 0; b < 6; b++) {
  const batch = []
  for (let i = 0; i < 100; i++) batch.push({ ...event(), id: `batch-${b}-${i}`, source: 'metertest' })
  await om.events.ingest(batch)
  record(batch)
  if (b === 2) resent = batch
}
await om.events.ingest(resent)

const from = new Date('2026-10-24T00:00:00Z')
const to = new Date('2026-11-03T00:00:00Z')
const queries = [
  ['tokens_total', { from, to }],
  ['tokens_total', { from, to, windowSize: 'DAY', windowTimeZone: 'Europe/Berlin', groupBy: ['model'] }],
  ['tokens_total', { from: new Date('2026-11-01T00:00:00Z'), to: new Date('2026-11-02T12:00:00Z'), windowSize: 'HOUR', windowTimeZone: 'America/New_York', subject: ['acme', 'globex'] }],
  ['tokens_total', { from, to, subject: ['acme'], groupBy: ['model', 'region'] }],
  ['tokens_total', { from, to, windowSize: 'DAY', windowTimeZone: 'Asia/Kolkata', filterGroupBy: { model: 'gpt-4' } }],
  ['prompts', { from, to, windowSize: 'DAY', windowTimeZone: 'America/New_York', groupBy: ['subject', 'model'] }],
  ['prompts', { from: new Date('2026-10-25T00:00:00Z'), to: new Date('2026-10-25T03:00:00Z'), windowSize: 'MINUTE' }],
  ['active_users', { from, to, windowSize: 'DAY', subject: ['acme', 'globex', 'initech'] }],
  ['largest_prompt', { from, to, groupBy: ['subject'] }],
]
for (const [slug, q] of queries) {
  const res = await om.meters.query(slug, q)
  const norm = { ...q }
  for (const k of ['from', 'to']) if (norm[k] instanceof Date) norm[k] = norm[k].toISOString()
  out.answers.push({
    slug,
    query: norm,
    data: res.data.map((r) => ({ ...r, windowStart: r.windowStart.toISOString(), windowEnd: r.windowEnd.toISOString() })),
  })
}

await om.meters.delete('to_delete')
out.afterDelete = (await om.meters.list()).map((m) => m.slug)
process.stdout.write(JSON.stringify(out))

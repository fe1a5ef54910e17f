// The dispatch board: tickets by status and technician with their SLA
// state, filters, the intake form. Live: a committed change to any ticket
// reloads the list (debounced), so a technician's sync shows within a second.

import { get, post, qs, all } from './api.js';
import { h, clear, table, badge, when, span, field, select, dialog, toast, errorBox, label, windowOf, localInput, seg } from './ui.js';

export const STATUSES = ['new', 'assigned', 'en_route', 'on_site', 'paused', 'completed', 'signed_off',
  'disputed', 'reconciled', 'cancelled', 'reopened'];
const RUNNING = ['on_time', 'at_risk', 'breached'];

/** The SLA cell: state, and the time left (or overdue) on the running target. */
export function slaCell(s) {
  if (!s || !s.worst || s.worst === 'none') return h('span', { class: 'muted' }, '—');
  if (!RUNNING.includes(s.worst)) return badge(s.worst);
  const due = RUNNING.includes(s.respond_state) ? s.respond_due_at : s.resolve_due_at;
  const target = RUNNING.includes(s.respond_state) ? 'respond' : 'resolve';
  const left = due ? new Date(due) - Date.now() : null;
  return h('span', { class: 'sla' }, badge(s.worst),
    left === null ? '' : h('small', {}, ` ${target} ${left >= 0 ? `in ${span(left)}` : `due ${span(left)}`}`));
}

export async function render(main, ctx) {
  const may = ctx.may;
  const filters = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter tickets' },
    field('Search', h('input', { name: 'q', type: 'search', placeholder: 'number, customer, fault…' })),
    field('Status', select('status', [['', 'any'], ['open', 'open (not closed)'], ...STATUSES.map((s) => [s, label(s)])], 'open')),
    field('Priority', select('priority', [['', 'any'], ['A', 'A'], ['B', 'B'], ['C', 'C']])),
    field('Technician', select('technician', [['', 'anyone'], ...ctx.technicians.map((t) => [t.username, t.display_name || t.username])])),
    field('SLA', select('sla', [['', 'any'], ['on_time', 'on time'], ['at_risk', 'at risk'], ['breached', 'breached'], ['settled', 'settled']])),
    field('Customer', customerPicker()),
    field('Serial', h('input', { name: 'serial' })),
    field('From', h('input', { name: 'from', type: 'date' })),
    field('To', h('input', { name: 'to', type: 'date' })),
    h('button', { type: 'submit' }, 'Filter'));
  const summary = h('div', { class: 'summary', 'aria-live': 'polite' });
  const list = h('div', { id: 'board-list' });
  const more = h('div');
  clear(main,
    h('div', { class: 'page-head' }, h('h1', {}, 'Dispatch board'),
      may.dispatch ? h('button', { id: 'new-ticket', type: 'button', onclick: () => intake(ctx) }, 'New ticket') : null),
    filters, summary, list, more);

  let cursor = null;
  let rows = [];
  let sla = new Map();

  function params() {
    const v = Object.fromEntries(new FormData(filters));
    delete v.customer_name;
    const open = v.status === 'open';
    if (open) v.status = '';
    return { v, open };
  }

  // A live reload re-reads as many tickets as are shown (Load more kept).
  async function load(append = false, keep = 100) {
    const { v, open } = params();
    const limit = append ? 100 : Math.min(500, Math.max(100, keep));
    const page = await get('/tickets' + qs({ ...v, limit, cursor: append ? cursor : undefined }));
    let items = page.items;
    if (open) items = items.filter((t) => !['reconciled', 'cancelled'].includes(t.status));
    rows = append ? rows.concat(items) : items;
    cursor = page.next_cursor;
    const ids = rows.map((t) => t.doc_id);
    sla = new Map();
    for (let i = 0; i < ids.length; i += 200) {
      const got = await get('/sla/states' + qs({ ids: ids.slice(i, i + 200).join(',') }));
      for (const s of got.items) sla.set(s.doc_id, s);
    }
    draw();
  }

  function draw() {
    const byStatus = {};
    const byTech = {};
    for (const t of rows) {
      byStatus[t.status] = (byStatus[t.status] || 0) + 1;
      const k = t.technician_id || '';
      byTech[k] = (byTech[k] || 0) + 1;
    }
    const unassigned = rows.filter((t) => !t.technician_id || t.status === 'new').length;
    const breached = rows.filter((t) => sla.get(t.doc_id)?.worst === 'breached').length;
    const atRisk = rows.filter((t) => sla.get(t.doc_id)?.worst === 'at_risk').length;
    clear(summary,
      h('div', { class: 'tiles' },
        h('div', { class: 'tile', id: 'tile-unassigned' }, h('b', {}, unassigned), ' new / unassigned'),
        h('div', { class: 'tile warn' }, h('b', {}, atRisk), ' at risk'),
        h('div', { class: 'tile bad' }, h('b', {}, breached), ' breached'),
        ...Object.entries(byStatus).map(([s, n]) => h('div', { class: 'tile' }, h('b', {}, n), ' ', label(s)))),
      h('p', { class: 'per-tech' }, 'Per technician: ',
        Object.entries(byTech).map(([id, n], i) => [i ? ' · ' : '', `${ctx.techName(id)} ${n}`])));
    clear(list, table([
      ['Ticket', (t) => h('a', { href: `#/ticket/${t.doc_id}` }, t.ticket_no || t.doc_id.slice(0, 8))],
      ['Status', (t) => badge(t.status)],
      ['Pri.', (t) => t.priority],
      ['Customer', (t) => t.customer_name],
      ['Product / serial', (t) => [t.product, t.serial ? h('small', { class: 'muted' }, ` ${t.serial}`) : '']],
      ['Technician', (t) => ctx.techName(t.technician_id)],
      ['Appointment', (t) => windowOf(t.appointment_start, t.appointment_end)],
      ['Visits', (t) => t.visit_count],
      ['SLA', (t) => slaCell(sla.get(t.doc_id))],
      ['Created', (t) => when(t.created_at)],
    ], rows, { empty: 'No tickets match these filters.', rowAttrs: (t) => ({ dataset: { doc: t.doc_id, status: t.status } }) }));
    clear(more, cursor ? h('button', { type: 'button', class: 'secondary', onclick: () => load(true) }, 'Load more') : null);
  }

  filters.addEventListener('submit', (e) => { e.preventDefault(); load().catch((x) => clear(list, errorBox(x))); });
  await load();

  let timer = null;
  return () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(false, rows.length).catch((x) => clear(list, errorBox(x))), 150);
  };
}

/**
 * A customer name typed with suggestions from the archive; the chosen
 * customer's id goes in the hidden `customer_id` (cleared when the text no
 * longer names one).
 */
function customerPicker() {
  const list = h('datalist', { id: 'customer-options' });
  const id = h('input', { type: 'hidden', name: 'customer_id' });
  const text = h('input', { name: 'customer_name', list: 'customer-options', autocomplete: 'off' });
  const known = new Map();
  text.addEventListener('input', async () => {
    id.value = known.get(text.value) ?? '';
    const q = text.value.trim();
    if (q.length < 2 || id.value) return;
    const page = await get('/customers' + qs({ q, limit: 10 }));
    for (const c of page.items) known.set(c.name, c.id);
    clear(list, page.items.map((c) => h('option', { value: c.name })));
    id.value = known.get(text.value) ?? '';
  });
  return h('span', { class: 'picker' }, text, list, id);
}

/** The intake form: a customer and asset from the archive, or typed. */
export async function intake(ctx) {
  const found = h('div', { class: 'picked' });
  const assetSel = select('asset_id', [['', 'no asset record (type below)']]);
  const custId = h('input', { type: 'hidden', name: 'customer_id' });
  const search = h('input', { type: 'search', placeholder: 'Search the customer archive', 'aria-label': 'Search customers' });
  const results = h('ul', { class: 'results' });
  search.addEventListener('input', async () => {
    const q = search.value.trim();
    if (q.length < 2) return clear(results);
    const page = await get('/customers' + qs({ q, limit: 8 }));
    clear(results, page.items.map((c) => h('li', {},
      h('button', { type: 'button', class: 'link', onclick: async () => {
        custId.value = c.id;
        clear(found, `Customer: ${c.name} · ${c.phone} · ${c.address}`);
        clear(results);
        const card = await get(`/customers/${seg(c.id)}`);
        clear(assetSel, h('option', { value: '' }, 'no asset record'),
          card.assets.map((a) => h('option', { value: a.id }, `${a.product} ${a.model} (${a.serial})`)));
      } }, `${c.name} — ${c.phone}`))));
  });
  const now = localInput(new Date().toISOString());
  const fields = h('div', { class: 'grid2' },
    h('div', { class: 'wide' }, search, results, found, custId),
    field('Customer name (if not in the archive)', h('input', { name: 'customer_name' })),
    field('Phone', h('input', { name: 'customer_phone' })),
    field('Address', h('input', { name: 'customer_address' })),
    field('Site', h('input', { name: 'site' })),
    field('Asset', assetSel),
    field('Product', h('input', { name: 'product' })),
    field('Model', h('input', { name: 'model' })),
    field('Serial', h('input', { name: 'serial' })),
    h('div', { class: 'wide' }, field('Fault', h('textarea', { name: 'fault_description', required: true, rows: 3 }))),
    field('Occurred at', h('input', { name: 'occurred_at', type: 'datetime-local', value: now })),
    field('Reported via', select('reported_via', [['phone', 'phone'], ['web', 'web'], ['email', 'e-mail'], ['walk-in', 'walk-in']])),
    field('Priority', select('priority', [['A', 'A — urgent'], ['B', 'B'], ['C', 'C']], 'B')),
    field('Assign to', select('technician', [['', 'nobody yet'], ...ctx.technicians.map((t) => [t.username, t.display_name || t.username])])));
  const made = await dialog('New ticket', fields, {
    submit: 'Create ticket',
    onSubmit: async (v) => {
      const body = { ...v };
      body.occurred_at = v.occurred_at ? new Date(v.occurred_at).toISOString().replace(/\.\d+Z$/, 'Z') : '';
      if (!body.technician) delete body.technician;
      return post('/tickets', body);
    },
  });
  if (made) {
    toast(`Ticket ${made.ticket_no} created`);
    location.hash = `#/ticket/${seg(made.document_id)}`;
  }
}

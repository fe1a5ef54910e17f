// The customer archive: search, a customer's sites and assets (warranty
// dates) and full service history, and one asset's service history.

import { get, qs } from './api.js';
import { h, clear, table, badge, when, day, section, field, errorBox, localDate, seg } from './ui.js';

function historyTable(ctx, records) {
  return table([
    ['Ticket', (r) => h('a', { href: `#/ticket/${r.doc_id}` }, r.ticket_no)],
    ['Status', (r) => badge(r.status)], ['Pri.', (r) => r.priority],
    ['Product', (r) => r.asset_id ? h('a', { href: `#/asset/${r.asset_id}` }, `${r.product} ${r.serial}`) : `${r.product} ${r.serial}`],
    ['Problem', (r) => r.problem], ['Result', (r) => r.result],
    ['Technician', (r) => ctx.techName(r.technician_id)], ['Visits', (r) => r.visits.length],
    ['Created', (r) => when(r.created_at)], ['Completed', (r) => when(r.completed_at)],
    ['Signed by', (r) => r.signed_by ?? ''],
  ], records, { empty: 'No service history yet.' });
}

export async function renderList(main, ctx) {
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Search customers' },
    field('Name, phone or address', h('input', { name: 'q', type: 'search', autofocus: true })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'include_archived' }), ' include archived'),
    h('button', { type: 'submit' }, 'Search'));
  const list = h('div');
  clear(main, h('h1', {}, 'Customer archive'), form, list);
  const load = async () => {
    const page = await get('/customers' + qs({ q: form.q.value.trim(), include_archived: form.include_archived.checked || '', limit: 100 }));
    clear(list, table([
      ['Name', (c) => h('a', { href: `#/customer/${c.id}` }, c.name)], ['Phone', (c) => c.phone],
      ['E-mail', (c) => c.email], ['Address', (c) => c.address],
      ['', (c) => (c.archived ? badge('archived') : '')],
    ], page.items, { empty: 'No customer matches.' }));
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); load().catch((x) => clear(list, errorBox(x))); });
  await load();
}

export async function renderCustomer(main, ctx, id) {
  const [card, hist] = await Promise.all([get(`/customers/${seg(id)}`), get(`/customers/${seg(id)}/history`)]);
  const c = card.customer;
  const today = localDate();
  clear(main,
    h('h1', {}, c.name, c.archived ? [' ', badge('archived')] : ''),
    h('div', { class: 'cols' },
      section('Contact', h('dl', {},
        h('dt', {}, 'Phone'), h('dd', {}, c.phone || '—'), h('dt', {}, 'E-mail'), h('dd', {}, c.email || '—'),
        h('dt', {}, 'Address'), h('dd', {}, c.address || '—'), h('dt', {}, 'Notes'), h('dd', {}, c.notes || '—'),
        h('dt', {}, 'In the archive since'), h('dd', {}, day(c.created_at)))),
      section('Sites', table([['Name', (s) => s.name], ['Address', (s) => s.address]], card.sites, { empty: 'No sites.' }))),
    section('Assets', table([
      ['Product', (a) => h('a', { href: `#/asset/${a.id}` }, `${a.product} ${a.model}`)], ['Serial', (a) => a.serial],
      ['Purchased', (a) => a.purchased_at], ['Warranty until', (a) => a.warranty_until
        ? [a.warranty_until, ' ', a.warranty_until >= today ? badge('in warranty', 'on_time') : badge('expired', 'breached')] : '—'],
      ['Site', (a) => card.sites.find((s) => s.id === a.site_id)?.name ?? ''],
    ], card.assets, { empty: 'No assets recorded.' })),
    section(`Service history (${hist.history.length})`, historyTable(ctx, hist.history)));
}

export async function renderAsset(main, ctx, id) {
  const got = await get(`/assets/${seg(id)}/history`);
  const a = got.asset;
  clear(main,
    h('h1', {}, `${a.product} ${a.model}`, h('small', { class: 'muted' }, ` serial ${a.serial}`)),
    section('Asset', h('dl', {},
      h('dt', {}, 'Customer'), h('dd', {}, h('a', { href: `#/customer/${a.customer_id}` }, 'open customer')),
      h('dt', {}, 'Purchased'), h('dd', {}, a.purchased_at || '—'),
      h('dt', {}, 'Warranty until'), h('dd', {}, a.warranty_until || '—'))),
    section(`Service history (${got.history.length})`, historyTable(ctx, got.history)));
}

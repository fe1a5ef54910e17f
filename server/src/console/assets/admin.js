// Administration: accounts, devices, the audit log, the parts catalogue and
// van stock. Writes to accounts and parts send the version they were read at
// (If-Match), so two admins never overwrite each other unknowingly.

import { get, post, put, qs, all, api } from './api.js';
import { h, clear, table, badge, when, money, section, field, select, dialog, toast, errorBox, label, seg } from './ui.js';

const ROLES = ['technician', 'dispatcher', 'back_office', 'supervisor', 'manager', 'admin'];

export async function renderUsers(main, ctx) {
  const list = h('div', { id: 'users' });
  clear(main, h('div', { class: 'page-head' }, h('h1', {}, 'Users'),
    h('button', { type: 'button', id: 'new-user', onclick: async () => {
      const made = await dialog('New account', [
        field('Username', h('input', { name: 'username', required: true, pattern: '[A-Za-z0-9._@\\-]{1,64}' })),
        field('Display name', h('input', { name: 'display_name' })),
        field('Role', select('role', ROLES.map((r) => [r, label(r)]), 'technician')),
        field('Password (8 or more characters)', h('input', { name: 'password', type: 'password', minlength: 8, required: true, autocomplete: 'new-password' }))],
      { submit: 'Create', onSubmit: (v) => post('/users', v) });
      if (made) { toast(`Account ${made.username} created`); load(); }
    } }, 'New account')), list);
  const load = async () => {
    const users = await all('/users', { limit: 500 });
    clear(list, table([
      ['Username', (u) => u.username], ['Name', (u) => u.display_name], ['Role', (u) => label(u.role)],
      ['State', (u) => (u.disabled ? badge('disabled', 'breached') : badge('active', 'on_time'))],
      ['Created', (u) => when(u.created_at)],
      ['', (u) => h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => change(u, 'role') }, 'Role'),
        h('button', { type: 'button', class: 'secondary', onclick: () => change(u, 'password') }, 'Password'),
        u.disabled || u.username === ctx.me.username ? null : h('button', { type: 'button', class: 'secondary', onclick: () => change(u, 'disable') }, 'Disable'))],
    ], users));
  };
  const change = async (u, what) => {
    const fresh = await get(`/users/${seg(u.username)}`); // its current version (ETag)
    const path = `/users/${seg(u.username)}`;
    const done = await dialog(`${label(what)}: ${u.username}`,
      what === 'role' ? field('Role', select('role', ROLES.map((r) => [r, label(r)]), fresh.role))
        : what === 'password' ? field('New password', h('input', { name: 'password', type: 'password', minlength: 8, required: true, autocomplete: 'new-password' }))
          : h('p', {}, `Disable ${u.username}? Their sessions and devices stop at once.`),
      { submit: what === 'disable' ? 'Disable' : 'Save', onSubmit: (v) => (what === 'disable'
        ? api('POST', `${path}/disable`, { ifMatch: fresh.etag })
        : api('PUT', `${path}/${what}`, { body: v, ifMatch: fresh.etag })) });
    if (done) { toast('Saved'); load(); }
  };
  await load();
}

export async function renderDevices(main, ctx) {
  const list = h('div');
  clear(main, h('h1', {}, 'Devices'), list);
  const load = async () => {
    const devices = await all('/devices', { limit: 500 });
    clear(list, table([
      ['Device', (d) => d.name || d.id], ['Id', (d) => h('code', {}, d.id)], ['User', (d) => ctx.techName(d.user_id)],
      ['Platform', (d) => d.platform], ['Registered', (d) => when(d.created_at)], ['Last seen', (d) => when(d.last_seen_at)],
      ['State', (d) => (d.revoked_at ? [badge('revoked', 'breached'), ` ${when(d.revoked_at)}`] : badge('active', 'on_time'))],
      ['', (d) => (d.revoked_at ? null : h('button', { type: 'button', class: 'secondary', onclick: async () => {
        const ok = await dialog(`Revoke ${d.name || d.id}?`, h('p', {}, 'Its sync sessions close now and it can no longer sync.'),
          { submit: 'Revoke', onSubmit: () => post(`/devices/${seg(d.id)}/revoke`) });
        if (ok) { toast('Device revoked'); load(); }
      } }, 'Revoke'))],
    ], devices, { empty: 'No devices registered.' }));
  };
  await load();
}

export async function renderAudit(main, ctx) {
  const form = h('form', { class: 'filters', 'aria-label': 'Filter the audit log' },
    field('Action', h('input', { name: 'action', placeholder: 'e.g. ticket.assigned' })), h('button', { type: 'submit' }, 'Filter'));
  const list = h('div');
  const more = h('div');
  clear(main, h('h1', {}, 'Audit log'), form, list, more);
  let rows = [];
  let cursor;
  const load = async (append) => {
    const page = await get('/audit' + qs({ action: form.action.value.trim(), limit: 100, cursor: append ? cursor : undefined }));
    rows = append ? rows.concat(page.items) : page.items;
    cursor = page.next_cursor;
    clear(list, table([
      ['When', (r) => when(r.at)], ['Who', (r) => (r.actor_user_id ? ctx.techName(r.actor_user_id) : 'system')], ['Action', (r) => r.action],
      ['Subject', (r) => r.subject ?? ''], ['Detail', (r) => h('code', {}, typeof r.detail === 'string' ? r.detail : JSON.stringify(r.detail))],
      ['Address', (r) => r.ip ?? ''],
    ], rows, { empty: 'No audit entries match.' }));
    clear(more, cursor ? h('button', { type: 'button', class: 'secondary', onclick: () => load(true) }, 'Load more') : null);
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); load(false).catch((x) => clear(list, errorBox(x))); });
  await load(false);
}

export async function renderParts(main, ctx) {
  const list = h('div');
  const stock = h('div');
  const techSel = select('technician', ctx.technicians.map((t) => [t.username, t.display_name || t.username]));
  clear(main, h('div', { class: 'page-head' }, h('h1', {}, 'Parts catalogue and van stock'),
    h('button', { type: 'button', onclick: () => editPart() }, 'Add part')),
  section('Catalogue', list),
  section('Van stock', h('div', { class: 'filters' }, field('Technician', techSel),
    h('button', { type: 'button', class: 'secondary', onclick: () => movement() }, 'Restock or correct')), stock));
  const editPart = async (p) => {
    const fresh = p ? await get(`/parts/${seg(p.part_no)}`) : null;
    const v = await dialog(p ? `Part ${p.part_no}` : 'New part', [
      field('Part number', h('input', { name: 'part_no', required: true, value: p?.part_no ?? '', readonly: !!p })),
      field('Name', h('input', { name: 'name', required: true, value: fresh?.name ?? '' })),
      field('Unit cost', h('input', { name: 'cost', type: 'number', step: '0.01', min: '0', required: true, value: fresh ? fresh.unit_cost_cents / 100 : '' })),
      h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'active', checked: fresh ? fresh.active : true }), ' active')],
    { onSubmit: async (v) => {
      if (!p) {
        // "Add" never replaces a part someone else made meanwhile.
        const there = await get(`/parts/${seg(v.part_no)}`).then(() => true, (e) => (e.status === 404 ? false : Promise.reject(e)));
        if (there) throw new Error(`Part ${v.part_no} is already in the catalogue: edit it instead.`);
      }
      return api('PUT', `/parts/${seg(v.part_no)}`, {
      body: { part_no: v.part_no, name: v.name, unit_cost_cents: Math.round(Number(v.cost) * 100), active: v.active },
      ifMatch: fresh?.etag,
    });
    } });
    if (v) { toast('Part saved'); load(); }
  };
  const movement = async () => {
    const parts = await all('/parts', { limit: 1000 });
    const v = await dialog(`Van stock: ${techSel.value}`, [
      field('Part', select('part_no', parts.map((p) => [p.part_no, `${p.part_no} ${p.name}`]))),
      field('Quantity (+ restock, − correction)', h('input', { name: 'qty_delta', type: 'number', step: '1', required: true })),
      field('Reason', h('input', { name: 'reason' }))],
    { onSubmit: (v) => post('/stock-movements', { technician: techSel.value, part_no: v.part_no, qty_delta: Number(v.qty_delta), reason: v.reason }) });
    if (v) { toast('Stock recorded'); showStock(); }
  };
  const showStock = async () => {
    if (!techSel.value) return clear(stock, h('p', { class: 'empty' }, 'No technicians.'));
    const s = await get(`/technicians/${seg(techSel.value)}/van-stock`);
    clear(stock,
      table([['Part', (l) => l.part_no], ['On the van', (l) => l.quantity]], s.levels, { empty: 'Nothing on this van.' }),
      h('h3', {}, 'Movements'),
      table([['When', (m) => when(m.at)], ['Part', (m) => m.part_no], ['Change', (m) => m.qty_delta], ['Why', (m) => m.reason]],
        s.movements.slice(-50).reverse(), { empty: 'No movements.' }));
  };
  techSel.addEventListener('change', () => showStock().catch((x) => clear(stock, errorBox(x))));
  const load = async () => {
    const parts = await all('/parts', { limit: 1000 });
    clear(list, table([
      ['Part', (p) => p.part_no], ['Name', (p) => p.name], ['Unit cost', (p) => money(p.unit_cost_cents)],
      ['Active', (p) => (p.active ? 'yes' : 'no')],
      ['', (p) => (ctx.may.catalogue ? h('button', { type: 'button', class: 'secondary', onclick: () => editPart(p) }, 'Edit') : null)],
    ], parts, { empty: 'The catalogue is empty.' }));
  };
  await load();
  await showStock();
}

// The console's shell: sign-in, navigation by capability, hash routing.
// Each page is a module with `render(main, ctx, ...params)`; it may return
// a function that `ctx.live` calls with the id of a ticket that changed.

import * as api from './api.js';
import { h, clear, errorBox, field, timeZone } from './ui.js';
import * as board from './board.js';
import * as ticket from './ticket.js';
import * as customers from './customers.js';
import * as office from './office.js';
import * as reports from './reports.js';
import * as admin from './admin.js';

const main = document.getElementById('main');

// Pages: [route, title in the menu (null: not in it), capability, module fn].
const PAGES = [
  ['board', 'Dispatch', 'read_office', board.render],
  ['ticket', null, 'read_office', ticket.render],
  ['customers', 'Customers', 'read_office', customers.renderList],
  ['customer', null, 'read_office', customers.renderCustomer],
  ['asset', null, 'read_office', customers.renderAsset],
  ['office', 'Back office', 'read_reconciliation', office.render],
  ['reports', 'Reports', 'reports', reports.render],
  ['users', 'Users', 'admin_users', admin.renderUsers],
  ['devices', 'Devices', 'admin_devices', admin.renderDevices],
  ['audit', 'Audit log', 'admin_users', admin.renderAudit],
  ['parts', 'Parts & stock', 'catalogue', admin.renderParts],
];

const ctx = {
  me: null,
  may: {},
  /** Every account (GET /people): the names behind user ids. */
  people: [],
  /** Technicians who can be assigned. */
  technicians: [],
  /** Display name of a user id ('' → 'unassigned'). */
  techName(id) {
    if (!id) return 'unassigned';
    const p = ctx.people.find((t) => t.id === id);
    return p ? p.display_name || p.username : id;
  },
  listeners: new Set(),
};

let stopLive = null;

function signInPage(message) {
  document.getElementById('top').hidden = true;
  const err = h('div');
  const form = h('form', { class: 'signin card', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in to fieldsync'),
    message ? h('p', {}, message) : null,
    field('Username', h('input', { name: 'username', autocomplete: 'username', required: true, autofocus: true })),
    field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    err,
    h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    try {
      await api.login(form.username.value.trim(), form.password.value);
      await start();
    } catch (x) {
      clear(err, errorBox(x));
    }
  });
  clear(main, form);
}

// The session ended mid-work (refresh token expired or revoked): ask for
// the password over the page, keep everything on it, carry on.
let reauthing = null;
api.onReauth(() => {
  if (!reauthing) {
    reauthing = new Promise((resolve, reject) => {
      const err = h('div');
      const username = api.signedInAs() || '';
      const form = h('form', {},
        h('h2', {}, 'Your session has ended'),
        h('p', {}, 'Sign in again to carry on; what you typed stays on the page.'),
        // The same account only: another one would carry on with this
        // one's pages and pending request (sign out to switch).
        field('Username', h('input', { name: 'username', value: username, autocomplete: 'username', required: true, readonly: !!username })),
        field('Password', h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true, autofocus: true })),
        err,
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'secondary', onclick: async () => { dlg.close(); dlg.remove(); reject(new api.ApiError(401, 'signed_out', 'signed out')); await signOut('You are signed out.'); } }, 'Sign out'),
          h('button', { type: 'submit' }, 'Sign in')));
      const dlg = h('dialog', { class: 'modal', id: 'reauth' }, form);
      form.addEventListener('submit', async (e) => {
        e.preventDefault();
        try {
          await api.login(form.username.value.trim(), form.password.value);
          dlg.close(); dlg.remove(); resolve();
        } catch (x) { clear(err, errorBox(x)); }
      });
      dlg.addEventListener('cancel', (e) => e.preventDefault());
      document.body.append(dlg);
      dlg.showModal();
    }).finally(() => { reauthing = null; });
  }
  return reauthing;
});

async function start() {
  ctx.me = await api.get('/me');
  ctx.may = await api.get('/me/capabilities');
  if (ctx.may.read_office) {
    ctx.people = (await api.get('/people')).items;
    ctx.technicians = ctx.people.filter((p) => p.role === 'technician' && !p.disabled);
  }
  const top = document.getElementById('top');
  top.hidden = false;
  document.getElementById('who').textContent = `${ctx.me.display_name || ctx.me.username} · ${ctx.me.role.replace('_', ' ')} · ${timeZone}`;
  clear(document.getElementById('nav'),
    PAGES.filter(([, title, cap]) => title && ctx.may[cap])
      .map(([route, title]) => h('a', { href: `#/${route}`, dataset: { route } }, title)));
  stopLive?.();
  stopLive = null;
  if (ctx.may.read_office) {
    const dot = document.getElementById('live');
    stopLive = api.liveEvents({
      onTicket: (id, kind) => ctx.listeners.forEach((fn) => fn(id, kind)),
      onResync: () => ctx.listeners.forEach((fn) => fn(null, 'resync')),
      onState: (s) => { dot.className = `live ${s}`; dot.textContent = s === 'live' ? '● live' : '○ reconnecting'; },
    });
  }
  route();
}

async function route() {
  if (!ctx.me) return;
  let name; let params;
  try {
    [name, ...params] = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  } catch {
    [name, params] = ['?', []]; // a malformed link: "not available"
  }
  // Ids are letters, digits, '-' and '_' (ticket, customer, asset ids;
  // report labels): anything else is not a page of ours.
  if (params.some((p) => !/^[A-Za-z0-9_-]{1,200}$/.test(p))) name = '?';
  const allowed = PAGES.filter(([, , cap]) => ctx.may[cap]);
  const page = allowed.find(([r]) => r === name) || (name ? null : allowed[0]);
  for (const a of document.querySelectorAll('#nav a')) {
    a.toggleAttribute('aria-current', a.dataset.route === (page?.[0] === 'ticket' ? 'board' : page?.[0]));
  }
  ctx.listeners.clear();
  if (!page) {
    clear(main, allowed.length
      ? h('section', { class: 'card' }, h('h1', {}, 'Not available'), h('p', {}, `This page is not available to the ${ctx.me.role.replace('_', ' ')} role.`))
      : h('section', { class: 'card', id: 'no-office' }, h('h1', {}, 'No office pages for your role'),
        h('p', {}, `You are signed in as ${ctx.me.username} (${ctx.me.role}). Technicians work in the mobile app; the console is for dispatchers, back office, supervisors, managers and admins.`)));
    return;
  }
  clear(main, h('p', { class: 'loading' }, 'Loading…'));
  try {
    const onChange = await page[3](main, ctx, ...params);
    if (typeof onChange === 'function') ctx.listeners.add(onChange);
  } catch (e) {
    if (e.code === 'signed_out') return signInPage('You have been signed out.');
    clear(main, h('section', { class: 'card' }, h('h1', {}, 'Something went wrong'), errorBox(e)));
  }
  main.focus({ preventScroll: true });
}

async function signOut(message) {
  stopLive?.();
  stopLive = null;
  ctx.me = null;
  ctx.listeners.clear();
  const dot = document.getElementById('live');
  dot.className = 'live';
  dot.textContent = '';
  clear(document.getElementById('nav'));
  document.getElementById('who').textContent = '';
  await api.logout();
  history.replaceState(null, '', location.pathname);
  signInPage(message);
}

window.addEventListener('hashchange', route);
document.getElementById('signout').addEventListener('click', () => signOut('You are signed out.'));

// A reload keeps the session when the refresh token is still good.
if (api.hasSession()) {
  api.refresh().then(start, () => signInPage('Your session has ended; please sign in.'))
    .catch((e) => signInPage(e.message));
} else {
  signInPage();
}

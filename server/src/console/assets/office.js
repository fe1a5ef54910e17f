// Back office: the reconciliation queue with its automatic checks, approve
// (with an override note when a check is a problem) or dispute with a
// reason, and CSV exports of reconciled jobs.

import { get, post, qs, api, all } from './api.js';
import { h, clear, table, badge, when, day, money, section, field, dialog, toast, errorBox, localDate, seg } from './ui.js';

export async function render(main, ctx) {
  const queue = h('div', { id: 'queue' });
  const exports = h('div');
  const exportForm = h('form', { class: 'filters', 'aria-label': 'Export reconciled jobs' },
    field('From', h('input', { name: 'from', type: 'date', required: true, value: firstOfMonth() })),
    field('To', h('input', { name: 'to', type: 'date', required: true, value: localDate() })),
    h('button', { type: 'submit', disabled: !ctx.may.export }, 'Export CSV'));
  clear(main, h('h1', {}, 'Back office'),
    section('Reconciliation queue', queue),
    section('Exports', ctx.may.export ? exportForm : h('p', { class: 'muted' }, 'Your role may read exports but not make them.'), exports));

  const load = async () => {
    // Every page of the queue (its counts are per page).
    const items = await all('/reconciliation/queue', { limit: 200 }, 5000);
    const blocking = items.filter((r) => r.blocking).length;
    clear(queue,
      h('p', {}, `${items.length} signed-off job(s) waiting; ${blocking} blocked by a check.`),
      items.length ? items.map((r) => review(ctx, r, load)) : h('p', { class: 'empty' }, 'Nothing waiting for reconciliation.'));
    const ex = await get('/reconciliation/exports' + qs({ limit: 20 }));
    clear(exports, table([
      ['Made', (e) => when(e.created_at)], ['Period', (e) => period(e)], ['Jobs', (e) => e.job_count],
      ['Lines', (e) => e.line_count], ['By', (e) => ctx.techName(e.created_by)],
      ['', (e) => h('button', { type: 'button', class: 'link', onclick: () => download(`/reconciliation/exports/${seg(e.id)}/content`, `export-${e.from}-${e.to}.csv`) }, 'download again')],
    ], ex.items, { empty: 'No exports yet.' }));
  };
  exportForm.addEventListener('submit', async (e) => {
    e.preventDefault();
    const v = Object.fromEntries(new FormData(exportForm));
    try {
      await download('/reconciliation/export' + qs({ from: v.from, to: v.to, format: 'csv' }), `reconciled-${v.from}-${v.to}.csv`);
      toast('Export made');
      await load();
    } catch (x) { toast(x.message, 'bad'); }
  });
  await load();
  let timer;
  return () => { clearTimeout(timer); timer = setTimeout(() => load().catch((x) => clear(queue, errorBox(x))), 150); };
}

function firstOfMonth() {
  const d = new Date();
  return localDate(new Date(d.getFullYear(), d.getMonth(), 1));
}

/** An export's days: `to` is the end, exclusive (the day after the last). */
function period(e) {
  const last = new Date(new Date(e.to) - 1);
  return `${day(e.from)} – ${Number.isNaN(last.getTime()) ? e.to : day(last.toISOString())}`;
}

async function download(path, name) {
  const res = await api('GET', path, { raw: true });
  const url = URL.createObjectURL(await res.blob());
  const a = h('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function review(ctx, r, reload) {
  const decide = ctx.may.reconcile ? h('div', { class: 'actions' },
    h('button', { type: 'button', class: 'approve', onclick: async () => {
      const fields = r.blocking
        ? [h('p', { class: 'alert' }, 'A check found a problem: approving needs an override and a note.'),
          field('Note', h('textarea', { name: 'note', required: true, rows: 3 }))]
        : field('Note (optional)', h('textarea', { name: 'note', rows: 2 }));
      const v = await dialog(`Approve ${r.ticket_no}`, fields, {
        submit: r.blocking ? 'Override and approve' : 'Approve',
        onSubmit: (v) => post(`/tickets/${seg(r.doc_id)}/reconcile`, { note: v.note || '', override: !!r.blocking }),
      });
      if (v) { toast(`${r.ticket_no} reconciled`); reload(); }
    } }, 'Approve'),
    h('button', { type: 'button', class: 'secondary dispute', onclick: async () => {
      const v = await dialog(`Dispute ${r.ticket_no}`, field('Reason (sent back to the dispatcher)', h('textarea', { name: 'reason', required: true, rows: 3 })), {
        submit: 'Dispute',
        onSubmit: (v) => post(`/tickets/${seg(r.doc_id)}/dispute`, { reason: v.reason }),
      });
      if (v) { toast(`${r.ticket_no} disputed`); reload(); }
    } }, 'Dispute')) : null;
  // One line per job; its checks and figures open below it (problems open
  // by themselves, so what blocks approval is never hidden).
  const problems = r.checks.filter((c) => c.level !== 'ok');
  return h('article', { class: `review lvl-${r.level}`, dataset: { doc: r.doc_id } },
    h('div', { class: 'page-head' },
      h('h3', {}, h('a', { href: `#/ticket/${r.doc_id}` }, r.ticket_no), ' ', badge(r.level), r.blocking ? [' ', badge('blocked', 'breached')] : '',
        h('span', { class: 'muted' }, ` ${r.customer_name} · ${r.product} ${r.serial} · ${r.technician || ctx.techName(r.technician_id)} · signed off ${when(r.signed_off_at)}`)),
      decide),
    h('details', { open: r.level === 'problem' },
      h('summary', {}, problems.length ? `${problems.length} check(s) to look at: ${problems.map((c) => c.name).join(', ')}` : 'All checks pass',
        ` · labour ${r.labour.total_hours} h · parts ${money(r.parts_cost_cents)}`),
      h('ul', { class: 'checks' }, r.checks.map((c) => h('li', { class: `lvl-${c.level}` }, badge(c.level), ` ${c.name}: ${c.message}`))),
      h('p', {}, `Completed ${when(r.completed_at)} · ${r.parts.length} part line(s)`)));
}

// One ticket: intake, status with its history, visits, parts, checklist,
// notes, photos and signature, signoff, quarantined edits, SLA, survey and
// callbacks. Dispatchers assign, set the appointment, cancel and reopen.
// Live: re-read when this ticket's document commits a change.

import { get, post, put, qs, all, blobUrl } from './api.js';
import { h, clear, table, badge, when, money, section, field, select, dialog, toast, label, windowOf, localInput, seg } from './ui.js';
import { slaCell } from './board.js';


export async function render(main, ctx, docId) {
  let objectUrls = [];
  const draw = async () => {
    const [tl, docAnswer, slaNow] = await Promise.all([
      get(`/tickets/${seg(docId)}/timeline`),
      get(`/tickets/${seg(docId)}/document`),
      get(`/tickets/${seg(docId)}/sla`).catch(() => null),
    ]);
    const extra = await Promise.all([
      ctx.may.read_quarantine ? get('/quarantined-edits' + qs({ doc_id: docId })).then((p) => p.items).catch(() => []) : [],
      get(`/tickets/${seg(docId)}/survey-links`).then((p) => p.items).catch(() => []),
      tl.ticket.customer_id ? all('/callbacks', { customer_id: tl.ticket.customer_id }).then((cs) => cs.filter((c) => c.doc_id === docId)).catch(() => []) : [],
    ]);
    const [quarantined, surveyLinks, callbacks] = extra;
    objectUrls.forEach(URL.revokeObjectURL);
    objectUrls = [];
    const y = window.scrollY; // a live redraw keeps the reader's place
    clear(main, page(ctx, tl, { ...docAnswer.document, actions: docAnswer.actions }, slaNow, quarantined, surveyLinks, callbacks, draw, objectUrls));
    window.scrollTo(0, y);
  };
  await draw();
  let timer = null;
  return (changed, kind) => {
    // A sweep of every ticket's SLA state redraws only a board; this page
    // follows its own ticket's changes (and a resync).
    if (changed ? changed !== docId : kind === 'sla') return;
    clearTimeout(timer);
    timer = setTimeout(() => draw().catch(() => {}), 100);
  };
}

function page(ctx, tl, doc, slaNow, quarantined, surveyLinks, callbacks, redraw, urls) {
  const t = tl.ticket;
  const s = tl.signoff;
  const actions = dispatchActions(ctx, t, doc.actions, redraw);
  const attachments = Array.isArray(doc.attachments) ? doc.attachments : [];
  const checklist = Array.isArray(doc.checklist) ? doc.checklist : [];
  const gallery = h('div', { class: 'gallery' });
  for (const a of attachments) {
    if (!a?.sha256) continue;
    const fig = h('figure', {}, h('figcaption', {}, `${a.kind || 'attachment'} · ${a.sha256.slice(0, 10)}…`));
    gallery.append(fig);
    blobUrl(a.sha256, t.doc_id).then((u) => { urls.push(u); fig.prepend(h('img', { src: u, alt: `${a.kind || 'attachment'} ${a.sha256.slice(0, 10)}` })); })
      .catch((e) => fig.append(h('small', { class: 'muted' }, ` (not available: ${e.message})`)));
  }
  const signature = h('div', { class: 'signature' });
  if (s?.signature_sha256) {
    blobUrl(s.signature_sha256, t.doc_id).then((u) => { urls.push(u); signature.append(h('img', { src: u, alt: `Signature of ${s.signer_name}` })); })
      .catch(() => signature.append(h('small', { class: 'muted' }, 'signature image not uploaded yet')));
  }
  const partsTotal = tl.parts_used.reduce((sum, p) => sum + (p.unit_cost_cents ?? 0) * p.qty, 0);
  return h('div', { class: 'ticket', id: 'ticket-page', dataset: { doc: t.doc_id, status: t.status } },
    h('div', { class: 'page-head' },
      h('h1', {}, `Ticket ${t.ticket_no}`, ' ', badge(t.status), ' ', h('span', { class: 'prio' }, `priority ${t.priority}`)),
      actions),
    s?.modified_after_signoff ? h('div', { class: 'alert', role: 'alert', id: 'modified-after-signoff' },
      'Visits or parts were changed after the customer signed. Check them before reconciling.') : null,
    h('div', { class: 'cols' },
      section('Intake',
        h('dl', {},
          dt('Customer', t.customer_id ? h('a', { href: `#/customer/${t.customer_id}` }, t.customer_name) : t.customer_name),
          dt('Phone', t.customer_phone), dt('Address', t.customer_address), dt('Site', t.site),
          dt('Product', t.asset_id ? h('a', { href: `#/asset/${t.asset_id}` }, `${t.product} ${t.model}`) : `${t.product} ${t.model}`),
          dt('Serial', t.serial), dt('Fault', t.fault_description), dt('Occurred', when(t.occurred_at)),
          dt('Reported via', t.reported_via), dt('Technician', ctx.techName(t.technician_id)),
          dt('Appointment', t.appointment_start ? windowOf(t.appointment_start, t.appointment_end) : 'not set'),
          dt('Created', when(t.created_at)), dt('Completed', when(t.completed_at)))),
      section('SLA',
        slaNow?.sla ? h('dl', {},
          dt('State', slaCell({ worst: slaNow.summary, respond_state: slaNow.sla.respond?.state, respond_due_at: slaNow.sla.respond?.due_at, resolve_state: slaNow.sla.resolve?.state, resolve_due_at: slaNow.sla.resolve?.due_at })),
          dt('Respond', target(slaNow.sla.respond)), dt('Resolve', target(slaNow.sla.resolve)))
          : h('p', { class: 'empty' }, 'No SLA target applies.'))),
    section('Status history',
      table([
        ['From', (e) => label(e.from_status || '—')], ['To', (e) => badge(e.to_status)],
        ['Who', (e) => ctx.techName(e.by_user)], ['Role', (e) => label(e.by_role)],
        ['Device time', (e) => when(e.device_at)], ['Server time', (e) => when(e.at)],
      ], tl.status_events, { empty: 'No status changes yet.' })),
    section('Visits',
      table([
        ['#', (v) => v.position + 1], ['Technician', (v) => ctx.techName(v.technician_id)],
        ['Arrived', (v) => when(v.arrived_at)], ['Departed', (v) => when(v.departed_at)],
        ['Work done', (v) => v.work_done], ['Result', (v) => v.result],
        ['Fixed', (v) => (v.fixed === null ? '' : v.fixed ? 'yes' : 'no')],
      ], tl.visits, { empty: 'No visits yet.' })),
    section('Parts used',
      table([
        ['Part', (p) => p.part_no], ['Name', (p) => p.catalogue_name ?? h('span', { class: 'warn-text' }, 'not in catalogue')],
        ['Qty', (p) => p.qty], ['Serial', (p) => p.serial], ['Source', (p) => p.source],
        ['Unit cost', (p) => money(p.unit_cost_cents)], ['Cost', (p) => money((p.unit_cost_cents ?? 0) * p.qty)],
      ], tl.parts_used, { empty: 'No parts used.' }),
      tl.parts_used.length ? h('p', { class: 'total' }, `Total parts cost: ${money(partsTotal)}`) : null),
    h('div', { class: 'cols' },
      section('Checklist', checklist.length
        ? h('ul', { class: 'checklist' }, checklist.map((c) => h('li', {}, typeof c === 'object' && c
          ? [c.done ? '☑ ' : '☐ ', c.item ?? c.label ?? c.text ?? JSON.stringify(c)] : String(c))))
        : h('p', { class: 'empty' }, 'No checklist.')),
      section('Notes', doc.notes ? h('pre', { class: 'notes' }, String(doc.notes)) : h('p', { class: 'empty' }, 'No notes.'))),
    section('Photos and attachments', attachments.length ? gallery : h('p', { class: 'empty' }, 'No attachments.')),
    section('Signoff', s
      ? h('div', { id: 'signoff' }, h('dl', {},
        dt('Signed by', s.signer_name), dt('Signed at', when(s.signed_at)),
        dt('Heads valid', s.heads_valid ? 'yes' : 'NO — the signed state is not in the document'),
        dt('Modified after signoff', s.modified_after_signoff ? h('strong', { class: 'bad-text' }, 'YES') : 'no')), signature)
      : h('p', { class: 'empty' }, 'Not signed yet.')),
    section('Survey and callbacks',
      t.survey_scale ? h('p', {}, `Survey (${t.survey_scale}-point): efficiency ${t.survey_efficiency ?? '—'}, attitude ${t.survey_attitude ?? '—'}, reasonableness ${t.survey_reasonableness ?? '—'}`,
        t.feedback_comment ? h('q', {}, t.feedback_comment) : '') : h('p', { class: 'empty' }, 'No survey answer yet.'),
      surveyLinks.length ? h('p', {}, `Survey links: ${surveyLinks.length} (${surveyLinks.filter((l) => l.used_at).length} used)`) : null,
      table([
        ['Reason', (c) => label(c.reason)], ['Due', (c) => when(c.due_at)],
        ['Reached', (c) => (c.reached === null ? 'open' : c.reached ? 'yes' : 'no')],
        ['Solved', (c) => (c.solved === null ? '' : c.solved ? 'yes' : 'no')], ['Note', (c) => c.note],
      ], callbacks, { empty: 'No callbacks for this ticket.' })),
    ctx.may.read_quarantine ? section('Quarantined edits',
      table([
        ['When', (q) => when(q.at)], ['Who', (q) => `${ctx.techName(q.user_id)} (${q.device_id})`],
        ['Field', (q) => q.path], ['Attempted', (q) => shown(q.attempted)], ['Kept', (q) => shown(q.restored)],
      ], quarantined, { empty: 'No edits were undone on this ticket.' })) : null);
}

const shown = (v) => (typeof v === 'string' ? v : JSON.stringify(v));

function dt(name, value) {
  return [h('dt', {}, name), h('dd', {}, value === '' || value === undefined ? '—' : value)];
}

function target(t) {
  if (!t) return '—';
  return [badge(t.state), t.due_at ? ` due ${when(t.due_at)}` : '', t.met_at ? ` · met ${when(t.met_at)}` : ''];
}

// Only what the server says this user may do to this ticket now.
function dispatchActions(ctx, t, may, redraw) {
  const done = (msg) => { toast(msg); redraw(); };
  return h('div', { class: 'actions' },
    may.assign ? h('button', { type: 'button', id: 'assign', onclick: async () => {
      const v = await dialog(t.technician_id ? 'Reassign' : 'Assign', field('Technician',
        select('technician', ctx.technicians.map((x) => [x.username, x.display_name || x.username]),
          ctx.technicians.find((x) => x.id === t.technician_id)?.username)), {
        submit: 'Assign',
        onSubmit: (v) => put(`/tickets/${seg(t.doc_id)}/assignment`, { technician: v.technician }),
      });
      if (v) done('Assigned');
    } }, t.technician_id ? 'Reassign' : 'Assign') : null,
    may.assign ? h('button', { type: 'button', class: 'secondary', id: 'appointment', onclick: async () => {
      const v = await dialog('Appointment window', [
        field('Start', h('input', { name: 'start', type: 'datetime-local', required: true, value: localInput(t.appointment_start) })),
        field('End', h('input', { name: 'end', type: 'datetime-local', required: true, value: localInput(t.appointment_end) }))], {
        onSubmit: (v) => put(`/tickets/${seg(t.doc_id)}/appointment`, { start: new Date(v.start).toISOString(), end: new Date(v.end).toISOString() }),
      });
      if (v) done('Appointment set');
    } }, 'Appointment') : null,
    may.cancel ? reasonButton('Cancel ticket', 'cancel', t, done) : null,
    may.reopen ? reasonButton('Reopen', 'reopen', t, done) : null);
}

function reasonButton(text, verb, t, done) {
  return h('button', { type: 'button', class: 'secondary', id: verb, onclick: async () => {
    const v = await dialog(`${text}: reason`, field('Reason', h('textarea', { name: 'reason', required: true, rows: 3 })), {
      submit: text,
      onSubmit: (v) => post(`/tickets/${seg(t.doc_id)}/${verb}`, { reason: v.reason }),
    });
    if (v) done(`${text}: done`);
  } }, text);
}

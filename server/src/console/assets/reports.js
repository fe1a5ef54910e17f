// KPI dashboard and the weekly/monthly/quarterly/yearly reports, drawn with
// Chart.js (vendored), downloadable as CSV. Every figure comes from
// GET /api/v1/reports/{period}: the console computes nothing.

import { get, qs, api } from './api.js';
import { h, clear, table, section, field, select, money, label, toast } from './ui.js';

const charts = [];

function chart(canvas, config) {
  const C = window.Chart;
  if (!C) return canvas.replaceWith(h('p', { class: 'muted' }, 'Charts are not available.'));
  config.options = { responsive: true, maintainAspectRatio: false, animation: false, ...config.options };
  charts.push(new C(canvas, config));
}

function plot(kind, data, options = {}) {
  const canvas = h('canvas', { role: 'img', 'aria-label': options.title || 'chart' });
  const box = h('div', { class: 'chart' }, canvas);
  queueMicrotask(() => chart(canvas, { type: kind, data, options: { plugins: { legend: { display: data.datasets.length > 1 }, title: { display: !!options.title, text: options.title } }, ...options.chart } }));
  return box;
}

function currentLabel(period) {
  const d = new Date();
  const y = d.getFullYear();
  if (period === 'year') return `${y}`;
  if (period === 'quarter') return `${y}-Q${Math.floor(d.getMonth() / 3) + 1}`;
  if (period === 'month') return `${y}-${String(d.getMonth() + 1).padStart(2, '0')}`;
  // ISO week
  const t = new Date(Date.UTC(y, d.getMonth(), d.getDate()));
  const dayNum = t.getUTCDay() || 7;
  t.setUTCDate(t.getUTCDate() + 4 - dayNum);
  const yearStart = new Date(Date.UTC(t.getUTCFullYear(), 0, 1));
  const week = Math.ceil(((t - yearStart) / 86400000 + 1) / 7);
  return `${t.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

export async function render(main, ctx, period = 'month', at = '') {
  const form = h('form', { class: 'filters', 'aria-label': 'Choose a report' },
    field('Period', select('period', [['week', 'week'], ['month', 'month'], ['quarter', 'quarter'], ['year', 'year']], period)),
    field('Which', h('input', { name: 'at', value: at || currentLabel(period), pattern: '^\\d{4}(-W\\d{2}|-Q[1-4]|-\\d{2})?$', title: '2026-11, 2026-W48, 2026-Q4 or 2026' })),
    h('button', { type: 'submit' }, 'Show'),
    h('button', { type: 'button', class: 'secondary', id: 'report-csv', onclick: () => csv() }, 'Download CSV'));
  form.period.addEventListener('change', () => { form.at.value = currentLabel(form.period.value); });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    location.hash = `#/reports/${form.period.value}/${encodeURIComponent(form.at.value)}`;
  });
  const csv = async () => {
    try { await csvNow(); } catch (e) { toast(e.message, 'bad'); }
  };
  const csvNow = async () => {
    const res = await api('GET', `/reports/${form.period.value}` + qs({ at: form.at.value, format: 'csv' }), { raw: true });
    const url = URL.createObjectURL(await res.blob());
    const a = h('a', { href: url, download: `report-${form.period.value}-${form.at.value}.csv` });
    document.body.append(a); a.click(); a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  while (charts.length) charts.pop().destroy();
  const r = await get(`/reports/${period}` + qs({ at: at || currentLabel(period) }));
  const o = r.overview;
  const tile = (n, text) => h('div', { class: 'tile' }, h('b', {}, n), ` ${text}`);
  const kpiTiles = r.kpis.map((k) => h('div', { class: `tile kpi ${k.met === false ? 'bad' : k.met ? 'good' : ''}`, dataset: { kpi: k.kpi } },
    h('b', {}, k.display || '—'), h('span', {}, k.name),
    k.target !== null && k.target !== undefined ? h('small', {}, `target ${k.target_kind === 'max' ? '≤' : '≥'} ${k.target}${k.unit === 'percent' ? ' %' : ''}`) : null));
  const percentKpis = r.kpis.filter((k) => k.unit === 'percent');
  const techChart = r.technicians.length && percentKpis.length ? plot('bar', {
    labels: percentKpis.map((k) => k.name),
    datasets: r.technicians.map((t) => ({
      label: t.username,
      data: percentKpis.map((k) => t.kpis.find((x) => x.kpi === k.kpi)?.value ?? null),
    })),
  }, { title: 'Per technician (%)', chart: { scales: { y: { min: 0, max: 100 } } } }) : h('p', { class: 'empty' }, 'No technician figures in this period.');
  const trendCharts = r.trends.map((t) => plot('line', {
    labels: t.points.map((p) => p.period),
    datasets: [{ label: t.name, data: t.points.map((p) => p.value), spanGaps: true, tension: 0.2 }],
  }, { title: `${t.name}${t.unit === 'percent' ? ' (%)' : t.unit === 'minutes' ? ' (min)' : ''}` }));
  const faults = r.problems.top_faults;
  clear(main,
    h('h1', {}, `Report: ${r.period.label}`, r.period.final ? '' : h('small', { class: 'muted' }, ' (period not over yet)')),
    form,
    section('Overview', h('div', { class: 'tiles' },
      tile(o.jobs_opened, 'jobs opened'), tile(o.jobs_completed, 'completed'), tile(o.jobs_cancelled, 'cancelled'),
      tile(o.visits, 'visits'), tile(Math.round(o.labour_minutes / 6) / 10, 'labour hours'),
      tile(money(o.parts_cost_cents), 'parts cost'), tile(o.surveys, 'surveys'), tile(o.callbacks_due, 'callbacks due'),
      tile(o.complaints_received, 'complaints'), tile(o.tickets_breached, 'tickets breached'))),
    section('KPIs against targets', h('div', { class: 'tiles', id: 'kpi-tiles' }, kpiTiles)),
    section('Technicians', techChart, table([
      ['Technician', (t) => t.username],
      ...r.kpis.map((k) => [k.name, (t) => t.kpis.find((x) => x.kpi === k.kpi)?.display ?? '']),
    ], r.technicians, { empty: 'No technician had jobs in this period.' })),
    section('Trend (this period and the three before)', h('div', { class: 'chart-grid' }, trendCharts)),
    section('Problems',
      faults.length ? plot('bar', { labels: faults.map((f) => f.key), datasets: [{ label: 'tickets', data: faults.map((f) => f.count) }] },
        { title: 'Most frequent faults', chart: { indexAxis: 'y', scales: { x: { ticks: { precision: 0 } } } } }) : h('p', { class: 'empty' }, 'No faults recorded.'),
      h('h3', {}, `Breached tickets (${r.problems.breached_total})`),
      table([
        ['Ticket', (b) => h('a', { href: `#/ticket/${b.doc_id}` }, b.ticket_no)], ['Pri.', (b) => b.priority],
        ['Technician', (b) => b.technician], ['Respond', (b) => label(b.respond)], ['Resolve', (b) => label(b.resolve)],
      ], r.problems.breached, { empty: 'No ticket breached its SLA.' }),
      h('h3', {}, 'Repeat failures'),
      table([['Asset / model', (c) => c.key], ['Tickets', (c) => c.count]], [...r.problems.repeat_assets, ...r.problems.repeat_models], { empty: 'No repeat failures.' })));
}

// Small DOM helpers. Every value from the API goes in as text (never as
// HTML), so nothing a device or customer typed can run as script.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
const dateTime = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit',
});
const dateOnly = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });

/** The viewer's time zone, shown once in the header. */
export const timeZone = zone;

/** An RFC 3339 time in the viewer's time zone ('' stays ''). */
export function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateTime.format(d);
}

export function day(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : dateOnly.format(d);
}

/** "2 h 5 min" from milliseconds; negative → "… ago". */
export function span(ms) {
  const neg = ms < 0;
  let m = Math.round(Math.abs(ms) / 60000);
  const d = Math.floor(m / 1440); m -= d * 1440;
  const hr = Math.floor(m / 60); m -= hr * 60;
  const parts = [];
  if (d) parts.push(`${d} d`);
  if (hr) parts.push(`${hr} h`);
  if (!d) parts.push(`${m} min`);
  return neg ? `${parts.join(' ')} ago` : parts.join(' ');
}

export function money(cents) {
  if (cents === null || cents === undefined) return '';
  return (cents / 100).toLocaleString(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
}

export const label = (s) => String(s ?? '').replaceAll('_', ' ');

export function badge(text, kind = text) {
  return h('span', { class: `badge b-${String(kind).replace(/[^a-z_]/gi, '')}` }, label(text));
}

/**
 * A table: columns are [header, row => cell]. An empty list shows `empty`.
 */
export function table(columns, rows, { empty = 'Nothing here yet.', rowAttrs } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, columns.map(([name]) => h('th', { scope: 'col' }, name)))),
      h('tbody', {}, rows.map((r) => h('tr', rowAttrs ? rowAttrs(r) : {}, columns.map(([, cell]) => h('td', {}, cell(r))))))));
}

export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), ...children);
}

export function field(labelText, input, hint) {
  return h('label', { class: 'field' }, h('span', {}, labelText), input, hint ? h('small', {}, hint) : null);
}

export function select(name, options, value) {
  return h('select', { name },
    options.map(([v, text]) => h('option', { value: v, selected: v === value }, text)));
}

/** Reads a form's named fields into an object of strings. */
export function formValues(form) {
  const out = {};
  for (const el of form.elements) {
    if (!el.name) continue;
    if (el.type === 'checkbox') out[el.name] = el.checked;
    else out[el.name] = el.value;
  }
  return out;
}

export function errorBox(err) {
  return h('div', { class: 'error', role: 'alert' }, err?.message || String(err));
}

let toastTimer;
/** A short message at the bottom of the screen (also read out by screen readers). */
export function toast(text, kind = 'ok') {
  const el = document.getElementById('toast');
  el.className = `toast ${kind}`;
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

/**
 * A modal dialog with a form; resolves with the form's values, or null when
 * cancelled. `onSubmit` may throw to keep the dialog open with the error.
 */
export function dialog(title, fields, { submit = 'Save', onSubmit } = {}) {
  return new Promise((resolve) => {
    const err = h('div');
    const form = h('form', { method: 'dialog' },
      h('h2', {}, title), fields, err,
      h('div', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => { dlg.close(); resolve(null); } }, 'Cancel'),
        h('button', { type: 'submit' }, submit)));
    const dlg = h('dialog', { class: 'modal' }, form);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      const values = formValues(form);
      try {
        const result = onSubmit ? await onSubmit(values) : values;
        dlg.close();
        dlg.remove();
        resolve(result ?? values);
      } catch (x) {
        clear(err, errorBox(x));
      }
    });
    dlg.addEventListener('cancel', () => resolve(null));
    document.body.append(dlg);
    dlg.showModal();
  });
}

export function link(href, text) {
  return h('a', { href }, text);
}

const timeOnly = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
/** A time window, the date once when both ends fall on the same day. */
export function windowOf(start, end) {
  if (!start) return '';
  const s = new Date(start); const e = new Date(end);
  if (Number.isNaN(s.getTime()) || Number.isNaN(e.getTime())) return `${start} – ${end}`;
  return s.toDateString() === e.toDateString()
    ? `${dateOnly.format(s)}, ${timeOnly.format(s)}–${timeOnly.format(e)}`
    : `${dateTime.format(s)} – ${dateTime.format(e)}`;
}

const pad = (n) => String(n).padStart(2, '0');
/** `YYYY-MM-DD` of a date in the viewer's time zone. */
export function localDate(d = new Date()) {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}
/** The value of a datetime-local input for a time (the viewer's zone, that day's offset). */
export function localInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? '' : `${localDate(d)}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
/** A path segment: ids go into URLs encoded, never as they came. */
export const seg = (v) => encodeURIComponent(String(v));

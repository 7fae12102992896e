// Renders /openapi.json as a page: no third-party code, served from the
// coordinator itself under a strict Content-Security-Policy.
'use strict';

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
};
const refName = (s) => (s && s.$ref ? s.$ref.split('/').pop() : null);
const schemaText = (s) => {
  if (!s) return '';
  const r = refName(s);
  if (r) return r;
  if (s.type === 'array') return `${schemaText(s.items)}[]`;
  if (Array.isArray(s.oneOf)) return s.oneOf.map(schemaText).join(' | ');
  return Array.isArray(s.type) ? s.type.join(' | ') : s.type || 'object';
};

async function main() {
  const doc = await (await fetch('/openapi.json')).json();
  document.getElementById('title').textContent = `${doc.info.title} ${doc.info.version}`;
  document.getElementById('intro').append(el('p', {}, doc.info.description || ''));
  const ops = document.getElementById('ops');
  ops.textContent = '';
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const box = el('div', { class: 'op', id: op.operationId || `${method}-${path}` });
      box.append(el('h3', {}, el('span', { class: 'method' }, method), el('code', {}, path)));
      if (op.summary) box.append(el('p', {}, op.summary));
      if (op.description) box.append(el('p', {}, op.description));
      if (op.security) box.append(el('p', {}, 'Needs ', el('code', {}, 'X-API-Key'), '.'));
      if (op.parameters?.length) {
        const t = el('table', {}, el('tr', {}, el('th', {}, 'parameter'), el('th', {}, 'in'), el('th', {}, 'type'), el('th', {}, 'description')));
        for (const p of op.parameters) t.append(el('tr', {}, el('td', {}, el('code', {}, p.name)), el('td', {}, p.in), el('td', {}, schemaText(p.schema)), el('td', {}, p.description || '')));
        box.append(t);
      }
      const body = op.requestBody?.content?.['application/json']?.schema;
      if (body) box.append(el('p', {}, 'Body: ', el('a', { href: `#schema-${refName(body)}` }, schemaText(body))));
      const t = el('table', {}, el('tr', {}, el('th', {}, 'status'), el('th', {}, 'body'), el('th', {}, 'when')));
      for (const [code, r] of Object.entries(op.responses || {})) {
        const s = Object.values(r.content || {})[0]?.schema;
        t.append(el('tr', {}, el('td', {}, code), el('td', {}, schemaText(s)), el('td', {}, r.description || '')));
      }
      box.append(t);
      ops.append(box);
    }
  }
  const schemas = document.getElementById('schemas');
  for (const [name, s] of Object.entries(doc.components?.schemas || {})) {
    schemas.append(el('h3', { id: `schema-${name}` }, name));
    if (s.description) schemas.append(el('p', {}, s.description));
    schemas.append(el('pre', {}, JSON.stringify(s, null, 2)));
  }
}

main().catch((e) => { document.getElementById('ops').textContent = `Could not load /openapi.json: ${e}`; });

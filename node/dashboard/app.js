// The weft dashboard: polls the node's JSON API every second and keeps the
// tables in step. Rows are keyed and updated in place rather than redrawn,
// so a Stop button stays the same element between polls and a click on it
// is never lost to a refresh.
'use strict';

const POLL_MS = 1000;

// api calls the node's JSON API. Every request carries X-Weft, which the
// server requires on anything but GET: a cross-site form cannot send it.
async function api(path, method = 'GET') {
  const resp = await fetch('api/v1/' + path, {
    method,
    headers: { 'X-Weft': '1' },
    cache: 'no-store',
    credentials: 'same-origin',
  });
  const body = await resp.json().catch(() => null);
  if (!resp.ok) {
    throw new Error((body && body.error) || resp.status + ' ' + resp.statusText);
  }
  return body;
}

// el makes an element with a class and text.
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// row makes a tr with one td per class name.
function row(cls, cells) {
  const tr = el('tr', cls);
  for (const c of cells) tr.appendChild(el('td', c));
  return tr;
}

function set(parent, selector, text) {
  const e = parent.querySelector(selector);
  if (e.textContent !== text) e.textContent = text;
}

// sync makes the keyed children of parent ([data-key]) match items in
// order, creating, updating and removing rows; a child without a key (a
// heading row) stays first.
function sync(parent, items, keyOf, create, update) {
  const old = new Map();
  for (const c of parent.querySelectorAll(':scope > [data-key]')) old.set(c.dataset.key, c);
  let at = parent.querySelector(':scope > :not([data-key])');
  for (const item of items) {
    const key = String(keyOf(item));
    let e = old.get(key);
    if (e) {
      old.delete(key);
    } else {
      e = create(item);
      e.dataset.key = key;
    }
    update(e, item);
    const want = at ? at.nextSibling : parent.firstChild;
    if (e !== want) parent.insertBefore(e, want);
    at = e;
  }
  for (const e of old.values()) e.remove();
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

function bytes(n) {
  if (!n) return '0 B';
  let i = 0;
  while (Math.abs(n) >= 1024 && i < UNITS.length - 1) {
    n /= 1024;
    i++;
  }
  return (i === 0 ? String(n) : n.toFixed(n < 10 ? 2 : 1)) + ' ' + UNITS[i];
}

function duration(s) {
  if (!(s > 0)) return '–';
  s = Math.round(s);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h) return h + 'h' + String(m).padStart(2, '0') + 'm';
  if (m) return m + 'm' + String(r).padStart(2, '0') + 's';
  return r + 's';
}

// ago formats a JSON time as how long ago it was.
function ago(t) {
  if (!t || t.startsWith('0001-')) return 'never';
  return duration((Date.now() - Date.parse(t)) / 1000) + ' ago';
}

// short shortens a peer ID: they all start alike, so keep both ends.
function short(id) {
  return id && id.length > 16 ? id.slice(0, 6) + '…' + id.slice(-6) : id || '';
}

function peerName(id, self) {
  return id === self ? short(id) + ' (this node)' : short(id);
}

function renderMembers(st) {
  const table = document.getElementById('members');
  const members = st.members || [];
  document.getElementById('no-mesh').hidden = !!st.peer_id;
  const sites = new Map();
  for (const m of members) {
    if (!sites.has(m.site)) sites.set(m.site, []);
    sites.get(m.site).push(m);
  }
  const groups = [...sites.entries()].sort((a, b) => a[0].localeCompare(b[0]));
  sync(table, groups, g => 'site:' + g[0], g => {
    const body = el('tbody', 'site');
    body.dataset.site = g[0];
    const head = el('tr', 'site-head');
    head.appendChild(el('th', 'site-name'));
    head.firstChild.colSpan = 6;
    body.appendChild(head);
    return body;
  }, (body, [site, ms]) => {
    const used = ms.reduce((a, m) => a + m.used, 0), free = ms.reduce((a, m) => a + m.free, 0);
    const alive = ms.filter(m => m.state === 'alive').length;
    set(body, '.site-name', `${site}: ${alive} of ${ms.length} alive, ${bytes(used)} used, ${bytes(free)} free`);
    ms.sort((a, b) => a.peer_id.localeCompare(b.peer_id));
    sync(body, ms, m => m.peer_id, m => {
      const tr = row('member', ['peer', 'state', 'used', 'free', 'capacity', 'addrs']);
      tr.dataset.peer = m.peer_id;
      tr.querySelector('.peer').title = m.peer_id;
      tr.querySelector('.capacity').appendChild(el('progress', 'usage'));
      return tr;
    }, (tr, m) => {
      set(tr, '.peer', peerName(m.peer_id, st.peer_id));
      const state = tr.querySelector('.state');
      set(tr, '.state', m.state);
      state.className = 'state state-' + m.state;
      set(tr, '.used', bytes(m.used));
      set(tr, '.free', bytes(m.free));
      const bar = tr.querySelector('.usage');
      bar.max = Math.max(m.used + m.free, 1);
      bar.value = m.used;
      set(tr, '.addrs', (m.addrs || []).join(' '));
    });
  });
}

function renderDisks(st, disks) {
  sync(document.querySelector('#disks tbody'), disks, d => d.name, d => {
    const tr = row('disk', ['name', 'owner', 'size', 'used', 'replicas', 'health']);
    tr.dataset.name = d.name;
    return tr;
  }, (tr, d) => {
    set(tr, '.name', d.name + (d.sync ? ' (sync)' : ''));
    set(tr, '.owner', d.owner ? peerName(d.owner, st.peer_id) : 'this node');
    tr.querySelector('.owner').title = d.owner || '';
    set(tr, '.size', bytes(d.size));
    set(tr, '.used', bytes(d.used_bytes));
    set(tr, '.replicas', String(d.replicas));
    const h = tr.querySelector('.health');
    const n = d.under_replicated || 0;
    set(tr, '.health', n === 0 ? 'healthy' : n + ' blocks under-replicated');
    h.className = 'health ' + (n === 0 ? 'ok' : 'bad');
  });
}

// sources merges who sent the bytes of a transfer: a pull records it on
// itself, a push on each of its targets.
function sources(t, self) {
  const from = new Map();
  const add = m => {
    for (const [p, n] of Object.entries(m || {})) from.set(p, (from.get(p) || 0) + n);
  };
  add(t.bytes_from);
  for (const tp of t.targets || []) add(tp.bytes_from);
  return [...from.entries()].sort((a, b) => b[1] - a[1]).map(([p, n]) => peerName(p, self) + ' ' + bytes(n)).join(', ');
}

function progressCell(td, bytesDone, total) {
  let bar = td.querySelector('progress');
  if (!bar) {
    bar = el('progress', 'bar');
    td.replaceChildren(bar, el('span', 'figures'));
  }
  bar.max = Math.max(total, 1);
  bar.value = Math.min(bytesDone, bar.max);
  set(td, '.figures', total ? `${bytes(bytesDone)} / ${bytes(total)}` : bytes(bytesDone));
}

// stop cancels a transfer. Its failure is shown apart from the polling
// errors, which the next poll clears.
async function stop(id, button) {
  button.disabled = true;
  button.textContent = 'stopping…';
  const msg = document.getElementById('action-error');
  try {
    await api('transfers/' + encodeURIComponent(id) + '/cancel', 'POST');
    msg.hidden = true;
  } catch (e) {
    msg.textContent = 'stop ' + id + ': ' + e.message;
    msg.hidden = false;
    button.disabled = false;
    button.textContent = 'Stop';
  }
  refresh();
}

function renderTransfers(st, transfers) {
  sync(document.querySelector('#transfers tbody'), transfers, t => t.id, t => {
    const tr = row('transfer', ['id', 'kind', 'what', 'state', 'progress', 'rate', 'eta', 'from', 'actions']);
    tr.dataset.id = t.id;
    const b = el('button', 'stop', 'Stop');
    b.type = 'button';
    b.addEventListener('click', () => stop(t.id, b));
    tr.querySelector('.actions').appendChild(b);
    return tr;
  }, (tr, t) => {
    const running = t.state === 'running';
    set(tr, '.id', t.id);
    set(tr, '.kind', t.kind + (t.priority && t.priority !== 'normal' ? ' (' + t.priority + ')' : ''));
    const targets = (t.targets || []).map(tp => tp.target + (tp.state !== t.state ? ' ' + tp.state : '')).join(', ');
    set(tr, '.what', t.source + (targets ? ' → ' + targets : ''));
    const state = tr.querySelector('.state');
    set(tr, '.state', t.state);
    state.className = 'state state-' + t.state;
    state.title = t.error || '';
    progressCell(tr.querySelector('.progress'), t.bytes_sent, t.total_bytes);
    set(tr, '.rate', running && t.rate ? bytes(t.rate) + '/s' : '–');
    set(tr, '.eta', running ? duration(t.eta_seconds) : '–');
    set(tr, '.from', sources(t, st.peer_id));
    tr.querySelector('button.stop').hidden = !running;
  });
}

function renderReplications(policies, transfers) {
  sync(document.querySelector('#replications tbody'), policies, p => p.disk + '/' + p.site + '/' + p.mode, p => {
    const tr = row('policy', ['disk', 'site', 'every', 'success', 'lag', 'sent', 'cycles', 'progress', 'error']);
    tr.dataset.disk = p.disk;
    tr.dataset.site = p.site;
    return tr;
  }, (tr, p) => {
    set(tr, '.disk', p.disk + (p.puller ? ' (pulled)' : ''));
    set(tr, '.site', p.site);
    set(tr, '.every', duration(p.every / 1e9));
    set(tr, '.success', ago(p.last_success));
    // lag_seconds is absent while the site holds nothing yet, or the
    // disk is gone: neither is "up to date".
    const lag = p.status === 'disk-gone' ? 'disk gone'
      : p.lag_seconds === undefined ? 'never'
      : p.lag_seconds > 0 ? duration(p.lag_seconds) : 'up to date';
    set(tr, '.lag', lag);
    set(tr, '.sent', bytes(p.last_bytes) + ' / ' + bytes(p.total_bytes));
    set(tr, '.cycles', String(p.cycles));
    set(tr, '.error', p.last_error || '');
    // A cycle in flight is a transfer of the replica it took, named
    // DISK@repl-SITE-<time>.
    const prefix = p.disk + '@repl-' + p.site + '-';
    const cycle = transfers.find(t => t.state === 'running' && t.source.startsWith(prefix));
    const cell = tr.querySelector('.progress');
    if (cycle) {
      progressCell(cell, cycle.bytes_sent, cycle.total_bytes);
    } else {
      cell.replaceChildren(document.createTextNode('idle'));
    }
  });
}

function renderHeal(h) {
  const dl = document.getElementById('heal');
  if (!h) {
    set(dl, '.heal-state', 'no mesh');
    return;
  }
  set(dl, '.heal-state', h.running ? 'running' : 'idle');
  const under = dl.querySelector('.heal-under');
  set(dl, '.heal-under', String(h.under_replicated));
  under.className = 'heal-under ' + (h.under_replicated === 0 ? 'ok' : 'bad');
  set(dl, '.heal-pending', h.running ? h.pending_blocks + ' blocks' : '–');
  set(dl, '.heal-copied', h.copied_blocks + ' blocks, ' + bytes(h.copied_bytes));
  set(dl, '.heal-dropped', h.dropped_blocks + ' blocks');
  set(dl, '.heal-passes', String(h.passes));
  set(dl, '.heal-last', ago(h.last_pass));
  set(dl, '.heal-error', h.last_error || 'none');
}

function showError(msg) {
  const e = document.getElementById('error');
  e.textContent = msg;
  e.hidden = !msg;
}

async function refresh() {
  try {
    const [st, disks, transfers, policies] = await Promise.all([
      api('status'), api('disks'), api('transfers'), api('replicate'),
    ]);
    document.getElementById('node').textContent = st.site + ' · ' + (st.peer_id ? short(st.peer_id) : st.id);
    document.title = 'weft · ' + st.site;
    renderMembers(st);
    renderDisks(st, disks);
    renderTransfers(st, transfers);
    renderReplications(policies, transfers);
    renderHeal(st.heal);
    document.getElementById('updated').textContent = 'updated ' + new Date().toLocaleTimeString();
    showError('');
  } catch (e) {
    showError('cannot reach the node: ' + e.message);
  }
}

async function poll() {
  await refresh();
  setTimeout(poll, POLL_MS);
}

poll();

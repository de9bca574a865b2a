// The console's pages: session history with filters and search, session detail with the recording
// timeline and players, live view and terminate. Text from the box is only ever set as text, never
// as HTML.
'use strict';

let me = null;
let player = null;
// The terminal recording shown, with how to show a search hit in it.
let castView = null;
// What happened in the session shown: from its audit events and, once a recording is played,
// from the recording itself (typed lines, resizes, markers).
let sessionIndex = null;

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) {
    if (k === null || k === undefined || k === false) continue;
    e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  }
  return e;
}

async function api(path, opts = {}) {
  const init = { credentials: 'same-origin', headers: {}, ...opts };
  if (init.method && init.method !== 'GET') {
    init.headers['content-type'] = 'application/json';
    if (me) init.headers['x-csrf-token'] = me.csrf;
  }
  const r = await fetch('/api/v1' + path, init);
  const body = await r.json().catch(() => ({}));
  if (r.status === 401 && me && path !== '/login') {
    // The login ended (expired, logged out elsewhere, access changed): log in again and come
    // back to this page.
    me = null;
    document.getElementById('nav').hidden = true;
    document.getElementById('who').replaceChildren();
    loginPage('Your login has ended. Log in again to go on where you were.');
  }
  if (!r.ok) {
    const err = new Error(body.error || r.statusText);
    err.status = r.status;
    throw err;
  }
  return body;
}

const main = () => document.getElementById('main');
function show(...nodes) {
  if (player) { try { player.dispose(); } catch (_) { /* already gone */ } player = null; }
  castView = null;
  sessionIndex = null;
  main().replaceChildren(...nodes);
}
const stateBox = (text, error) => el('p', { class: error ? 'state error' : 'state' }, text);

function navigate(url) {
  history.pushState(null, '', url);
  route();
}
document.addEventListener('click', (e) => {
  const a = e.target.closest && e.target.closest('a');
  if (a && a.origin === location.origin && !a.hasAttribute('download') && !e.ctrlKey && !e.metaKey) {
    e.preventDefault();
    navigate(a.pathname + a.search + a.hash);
  }
});
window.addEventListener('popstate', route);

function fmtTime(t) { return t ? t.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '—'; }
// Times are shown and entered in one stated zone: the box's (from /me) unless the viewer
// switched to their own (kept in this browser). Stated beside every table that uses it.
const viewerZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
function zoneIsViewers() { return localStorage.getItem('witness-zone') === 'viewer'; }
function zoneName() { return zoneIsViewers() ? viewerZone : (me && me.time_zone) || 'UTC'; }
function zoneParts(ms) {
  const f = new Intl.DateTimeFormat('en-US', { timeZone: zoneName(), hourCycle: 'h23', year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return Object.fromEntries(f.formatToParts(new Date(ms)).map((x) => [x.type, x.value]));
}
// A box time (UTC) in the stated zone, with the UTC time on hover.
function localTime(t) {
  if (!t) return '—';
  const d = new Date(t);
  if (isNaN(d)) return fmtTime(t);
  const p = zoneParts(d.getTime());
  const text = `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}`;
  return el('time', { datetime: t, title: fmtTime(t) + ' (UTC)' }, text);
}
// A date input's wall time (YYYY-MM-DDTHH:MM[:SS]) in the stated zone, as UTC.
function zonedToUtc(v) {
  const [day, time = '00:00'] = v.split('T');
  const [y, m, d] = day.split('-').map(Number);
  const [h, mi, s = 0] = time.split(':').map(Number);
  const wall = Date.UTC(y, m - 1, d, h, mi, s);
  if (isNaN(wall)) return v;
  const offset = (ms) => { const p = zoneParts(ms); return Date.UTC(+p.year, +p.month - 1, +p.day, +p.hour, +p.minute, +p.second) - ms; };
  // Twice: the offset at the guess may differ from the offset at the answer (a DST change).
  let ms = wall - offset(wall);
  ms = wall - offset(ms);
  return new Date(ms).toISOString();
}
// The switch between the box's zone and the viewer's, in the header.
function zoneSwitch() {
  const other = zoneIsViewers() ? `the box's (${(me && me.time_zone) || 'UTC'})` : `yours (${viewerZone})`;
  return el('button', { class: 'plain', id: 'zone-switch', title: 'Times are shown and entered in ' + zoneName(),
    onclick: () => { localStorage.setItem('witness-zone', zoneIsViewers() ? 'box' : 'viewer'); start(); } },
    `Times: ${zoneName()} · use ${other}`);
}
function fmtBytes(n) {
  if (n < 1024) return n + ' B';
  const u = ['KiB', 'MiB', 'GiB', 'TiB'];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < u.length - 1);
  return n.toFixed(1) + ' ' + u[i];
}
function fmtDuration(a, b) {
  if (!a || !b) return '—';
  const s = Math.max(0, Math.round((Date.parse(b) - Date.parse(a)) / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h ? h + 'h ' : '') + (h || m ? m + 'm ' : '') + (s % 60) + 's';
}
const badge = (s) => el('span', { class: 'status ' + s }, s);

// A hit's snippet with the match in <mark> (as text: nothing from the box is HTML).
function marked(hit) {
  const chars = [...hit.snippet];
  if (!Array.isArray(hit.mark)) return hit.snippet;
  const [a, z] = hit.mark;
  return el('span', {}, chars.slice(0, a).join(''), el('mark', {}, chars.slice(a, z).join('')), chars.slice(z).join(''));
}

async function start() {
  try {
    me = await api('/me');
  } catch (e) {
    if (e.status === 401) return loginPage();
    return show(stateBox('The box did not answer: ' + e.message, true));
  }
  document.getElementById('nav').hidden = false;
  document.getElementById('nav-live').hidden = me.role !== 'admin';
  document.getElementById('nav-audit').hidden = me.role === 'user';
  document.getElementById('nav-health').hidden = me.role !== 'admin';
  document.getElementById('who').replaceChildren(
    zoneSwitch(), ' ',
    `${me.user} (${me.role})`,
    el('button', { class: 'plain', id: 'logout', onclick: async () => { await api('/logout', { method: 'POST' }).catch(() => {}); location.href = '/'; } }, 'Log out'));
  route();
}

function loginPage(why) {
  const err = el('p', { class: 'state error', hidden: !why, id: 'login-note' }, why || '');
  const totp = el('label', { hidden: true }, 'One-time code', el('input', { name: 'totp', autocomplete: 'one-time-code', inputmode: 'numeric' }));
  const form = el('form', { class: 'login', id: 'login' },
    el('h1', {}, 'Witness console'),
    el('label', {}, 'User', el('input', { name: 'user', autocomplete: 'username', required: true, autofocus: true })),
    el('label', {}, 'Password', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
    totp, err, el('button', { type: 'submit' }, 'Log in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const body = { user: f.get('user'), password: f.get('password') };
    if (f.get('totp')) body.totp = f.get('totp');
    try {
      await api('/login', { method: 'POST', body: JSON.stringify(body) });
      start();
    } catch (x) {
      if (/one-time code/.test(x.message)) totp.hidden = false;
      err.textContent = x.message;
      err.hidden = false;
    }
  });
  show(form);
}

function route() {
  if (!me) return;
  const p = location.pathname;
  const m = p.match(/^\/sessions\/([A-Za-z0-9-]+)$/);
  if (m) return detailPage(m[1]);
  if (p === '/live') return livePage();
  if (p === '/audit') return auditPage();
  if (p === '/health') return healthPage();
  if (p === '/' || p === '/sessions') return listPage();
  show(el('h1', {}, 'No such page'), el('p', { class: 'state', id: 'not-found' }, `There is nothing at ${p}. `, el('a', { href: '/' }, 'Go to the session history')));
}

// Polls `f` every `ms` while `node` is on the page.
function whileShown(node, ms, f) {
  const timer = setInterval(() => { if (!document.body.contains(node)) clearInterval(timer); else f(); }, ms);
}

const FILTERS = ['q', 'user', 'target', 'protocol', 'kind', 'status', 'from', 'to'];
const KINDS = [['shell', 'SSH shell'], ['exec', 'SSH command'], ['transfer', 'scp/sftp transfer'], ['rdp', 'RDP desktop']];

// What a session was, in a few words: its kinds, the commands it ran, the files it moved.
function describeKind(s) {
  const parts = (s.kinds || []).map((k) => {
    if (k === 'exec') return 'command: ' + (s.commands || []).filter((c) => !/^scp( |$)/.test(c)).join('; ');
    if (k === 'transfer') return `transfer: ${s.transfers} ${s.transfers === 1 ? 'file' : 'files'}, ${fmtBytes(s.transfer_bytes || 0)}`;
    return (KINDS.find(([v]) => v === k) || [k, k])[1];
  });
  return parts.join(' + ') || 'no channel opened';
}

async function listPage() {
  const params = new URLSearchParams(location.search);
  const field = (name, label, input) => el('label', {}, label, input);
  const select = (name, options) => {
    const s = el('select', { name }, el('option', { value: '' }, 'any'), options.map((o) => el('option', { value: o }, o)));
    s.value = params.get(name) || '';
    return s;
  };
  const input = (name, attrs = {}) => el('input', { name, value: params.get(name) || '', ...attrs });
  const form = el('form', { class: 'filters', id: 'filters' },
    field('q', 'Search in session output', input('q', { id: 'search', placeholder: 'a word printed in the session', size: 28 })),
    field('user', 'User', input('user', { size: 10 })),
    field('target', 'Target', input('target', { size: 10 })),
    field('protocol', 'Protocol', select('protocol', ['ssh', 'rdp'])),
    field('kind', 'Kind', (() => {
      const k = el('select', { name: 'kind' }, el('option', { value: '' }, 'any'), KINDS.map(([v, label]) => el('option', { value: v }, label)));
      k.value = params.get('kind') || '';
      return k;
    })()),
    field('status', 'Recording', select('status', ['recording', 'processing', 'completed', 'uploaded', 'failed'])),
    field('from', `Started after (${zoneName()})`, input('from', { type: 'datetime-local' })),
    field('to', `Started before (${zoneName()})`, input('to', { type: 'datetime-local' })),
    el('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    navigate('/sessions' + (q.toString() ? '?' + q : ''));
  });
  const rules = el('p', { class: 'rules', id: 'search-rules' },
    'Search: whole words, any case, all of them within about a second of output. ',
    el('code', {}, 'deplo*'), ' finds words starting with it (3 letters or more); ',
    el('code', {}, '"disk full"'), ' finds the words side by side, in order, on one line. ',
    'Covers SSH output, RDP typed keys (when recorded) and text read off RDP screens.');
  const results = el('div', { id: 'results' }, stateBox('Loading sessions…'));
  show(el('h1', {}, 'Session history'), form, rules, results);
  const query = new URLSearchParams();
  for (const k of FILTERS) {
    let v = params.get(k);
    if (!v) continue;
    if ((k === 'from' || k === 'to') && !v.endsWith('Z')) v = zonedToUtc(v);
    query.set(k, v);
  }
  // Pages of the newest `limit` (100) started before `before`: the CSV export takes the whole
  // filtered list, the page one page of it.
  const pageSize = Math.max(1, Math.min(1000, parseInt(params.get('limit'), 10) || 100));
  const paged = new URLSearchParams(query);
  paged.set('limit', pageSize);
  const before = params.get('before');
  if (before && (!paged.get('to') || before < paged.get('to'))) paged.set('to', before);
  let list;
  try {
    list = await api('/sessions?' + paged);
  } catch (e) {
    return results.replaceChildren(stateBox('Could not load sessions: ' + e.message, true));
  }
  if (!list.length) {
    const filtered = [...query.keys()].length > 0;
    return results.replaceChildren(stateBox(filtered ? 'No session matches these filters.' : 'No sessions recorded yet. Sessions appear here as soon as someone connects through the box.'));
  }
  const searching = query.has('q');
  const full = list.length === pageSize;
  const older = new URLSearchParams(params);
  if (full) older.set('before', list[0].started_at);
  const newest = new URLSearchParams(params);
  newest.delete('before');
  const csv = el('p', { class: 'rules', id: 'history-summary' },
    `${list.length} ${list.length === 1 ? 'session' : 'sessions'}${before ? ` started before ${fmtTime(before)}` : ''}${full ? ' (a page: there may be older ones)' : ''}, newest first. Times in ${zoneName()}; hover a time for UTC. `,
    el('a', { href: '/api/v1/history.csv?' + query, download: 'witness-sessions.csv', id: 'history-csv' }, 'Export the whole filtered list as CSV'), ' (times in UTC).');
  const pager = el('div', { class: 'controls', id: 'history-pager' },
    before ? el('a', { href: '/sessions' + (newest.toString() ? '?' + newest : ''), id: 'history-newest' }, 'Newest sessions') : null,
    full ? el('a', { href: '/sessions?' + older, id: 'history-older' }, 'Older sessions') : null);
  const rows = list.slice().reverse().map((s) => {
    const place = s.hit && Array.isArray(s.hit.rect) ? `&box=${s.hit.rect.join(',')}` : '';
    const href = '/sessions/' + s.id + (s.hit ? `#t=${s.hit.at}&r=${s.hit.recording_id}${place}&q=${encodeURIComponent(query.get('q'))}` : '');
    return el('tr', { class: 'session-row', 'data-id': s.id },
      el('td', {}, el('a', { href }, localTime(s.started_at))),
      el('td', {}, s.user), el('td', {}, s.target), el('td', {}, s.protocol), el('td', { class: 'kind', 'data-kinds': (s.kinds || []).join(' ') }, describeKind(s)), el('td', {}, s.client || '—'),
      el('td', {}, s.live ? 'running' : fmtDuration(s.started_at, s.ended_at)),
      el('td', {}, badge(s.live ? 'recording' : s.status), s.held ? el('span', { class: 'status held', title: 'Under a legal hold: never deleted' }, 'hold') : null),
      el('td', {}, s.end_reason || (s.live ? '' : '—')),
      el('td', {}, fmtBytes(s.bytes)),
      searching ? el('td', { class: 'snippet' }, s.hit ? el('a', { href, class: 'hit' }, `${s.hit.at.toFixed(1)} s: `, marked(s.hit)) : '') : null);
  });
  results.replaceChildren(csv, el('div', { class: 'table-wrap' }, el('table', { id: 'sessions-table' },
    el('thead', {}, el('tr', {}, ['Started', 'User', 'Target', 'Protocol', 'Kind', 'From', 'Duration', 'Recording', 'End reason', 'Stored'].map((h) => el('th', {}, h)), searching ? el('th', {}, 'Match') : null)),
    el('tbody', {}, rows))), pager);
}

async function detailPage(id) {
  show(stateBox('Loading session…'));
  let d;
  try {
    d = await api('/sessions/' + id);
  } catch (e) {
    return show(stateBox(e.status === 404 ? 'No such session.' : 'Could not load the session: ' + e.message, true));
  }
  const s = d.session;
  const hash = new URLSearchParams(location.hash.slice(1));
  const dl = el('dl', { class: 'facts', id: 'facts' });
  for (const [k, v] of [['User', s.user], ['Target', s.target], ['Protocol', s.protocol], ['From', s.client || '—'],
    ['Started', localTime(s.started_at)], ['Ended', d.live ? 'still running' : localTime(s.ended_at)],
    ['End reason', s.end_reason || '—'], ['Recovered after a crash', s.recovered ? 'yes' : 'no'], ['Stored on the box (encrypted)', fmtBytes(s.bytes)]]) {
    dl.append(el('dt', {}, k), el('dd', {}, v));
  }
  if (d.hold) dl.append(el('dt', {}, 'Legal hold'), el('dd', { id: 'hold' }, `${d.hold.reason} (since ${fmtTime(d.hold.set_at)})`));
  const parts = [el('h1', {}, `${s.user} → ${s.target} `, badge(d.live ? 'recording' : s.status)), dl];
  if (d.live && me.role === 'admin') {
    const msg = el('span', { id: 'terminate-result' });
    parts.push(el('div', { class: 'controls' },
      el('button', { id: 'terminate', class: 'danger', onclick: async () => {
        if (!confirm(`End ${s.user}'s session on ${s.target} now?`)) return;
        try { await api(`/sessions/${id}/terminate`, { method: 'POST' }); msg.textContent = 'Session terminated.'; }
        catch (e) { msg.textContent = 'Could not terminate: ' + e.message; }
      } }, 'Terminate session'), msg));
    parts.push(el('h2', {}, 'Live view'), el('div', { class: 'player-box', id: 'live-player' }));
  }
  parts.push(el('h2', {}, 'Recordings'));
  if (!d.recordings.length) {
    parts.push(stateBox((s.kinds || []).includes('transfer')
      ? `This session moved files (${describeKind(s)}); file transfers are not recorded as video or terminal, each one is in the session index below with its SHA-256.`
      : 'This session has no recordings (it ended before a terminal or desktop was opened).'));
  }
  const playerSlot = el('div', { id: 'player-slot' });
  const hitsSlot = el('div', { id: 'hits-slot' });
  for (const r of d.recordings) {
    const upload = r.upload
      ? (r.upload.state === 'uploaded' ? `in the store since ${fmtTime(r.upload.uploaded_at)}` : `waiting for the store (${r.upload.attempts} attempts${r.upload.last_error ? ': ' + r.upload.last_error : ''})`)
      : 'not queued for the store';
    parts.push(el('div', { class: 'recording', 'data-id': r.id },
      el('ol', { class: 'timeline' }, r.timeline.map((t) => el('li', { class: t.reached ? 'reached' : '' }, t.status + (t.at ? ' · ' + fmtTime(t.at) : '')))),
      el('p', {}, `${r.channel} · ${fmtBytes(r.bytes)} stored (encrypted) · ${r.duration ? r.duration.toFixed(1) + ' s' : '—'} · ${upload}${r.on_box ? '' : ' · played from the store'}`),
      el('div', { class: 'controls' },
        r.status === 'recording' ? null : el('button', { class: 'play', onclick: () => play(r, playerSlot, 0) }, 'Play'),
        r.status === 'recording'
          ? el('span', { class: 'rules download-later' }, 'Download is offered once the recording has finished.')
          : el('a', { href: `/api/v1/recordings/${r.id}/content?download=1`, download: true, class: 'download' }, 'Download')),
      r.status === 'recording' ? null : downloadFacts(r)));
  }
  const indexSlot = el('div', { id: 'index-slot' });
  if (me.role !== 'user') {
    const result = el('div', { id: 'evidence-result' });
    const make = el('button', { id: 'evidence-make', class: 'plain', onclick: async () => {
      make.disabled = true;
      result.replaceChildren(stateBox('Making the evidence bundle…'));
      try {
        const b = await api(`/sessions/${id}/evidence`, { method: 'POST' });
        result.replaceChildren(el('p', {}, `${b.file_name}.tar · ${fmtBytes(b.bytes)} · SHA-256 `, el('code', { id: 'evidence-sha256' }, b.sha256), ' ',
          el('a', { href: b.url, download: `${b.file_name}.tar`, id: 'evidence-download' }, 'Download'),
          el('br'), 'Check it after the download: ', el('code', {}, `sha256sum ${b.file_name}.tar`), ' must print the same; then ',
          el('code', {}, `tar -xf ${b.file_name}.tar && witness verify ${b.file_name} --key-file BOX_KEY`), ' (the key from ', el('code', {}, 'witness evidence key'), ').'));
      } catch (e) {
        result.replaceChildren(stateBox('Could not make the evidence bundle: ' + e.message, true));
      }
      make.disabled = false;
    } }, 'Make evidence bundle');
    parts.push(el('h2', {}, 'Evidence'), el('div', { class: 'controls' }, make,
      el('span', { class: 'rules' }, 'The session\u2019s recordings with their signed manifests, as witness evidence export writes them, in one archive.')), result);
  }
  parts.push(hitsSlot, playerSlot, el('h2', {}, 'Session index'), indexSlot);
  parts.push(el('h2', {}, 'Audit events'));
  parts.push(d.audit.length
    ? el('div', { class: 'table-wrap' }, el('table', { id: 'audit-table' },
      el('thead', {}, el('tr', {}, ['When', 'Event', 'By', 'About', 'Detail'].map((h) => el('th', {}, h)))),
      el('tbody', {}, d.audit.map((a) => el('tr', {}, el('td', {}, localTime(a.at)), el('td', {}, a.kind), el('td', { class: 'actor' }, a.actor || 'the box'), el('td', {}, a.user || '—'), el('td', { class: 'snippet' }, JSON.stringify(a.detail)))))))
    : stateBox('No audit events for this session.'));
  show(...parts);
  if (d.live) {
    // A running session: the page follows it and shows its end as soon as the box knows it.
    const facts = document.getElementById('facts');
    let checking = false;
    whileShown(facts, 500, async () => {
      if (checking) return;
      checking = true;
      try {
        // The running list, not the session: asking for the session is an audited view.
        const running = await api('/live');
        if (!running.some((x) => x.id === id) && document.body.contains(facts)) detailPage(id);
      } catch (_) { /* the next poll tries again */ }
      checking = false;
    });
  }
  sessionIndex = { d, fromCast: {}, slot: indexSlot, playerSlot };
  renderIndex();
  const liveVideo = d.recordings.find((r) => r.status === 'recording' && r.format === 'mp4');
  if (d.live && me.role === 'admin' && liveVideo) {
    watchVideo(liveVideo, document.getElementById('live-player'));
  } else if (d.live && me.role === 'admin') {
    player = AsciinemaPlayer.create({ driver: 'eventsource', url: `/api/v1/sessions/${id}/live` }, document.getElementById('live-player'), { autoPlay: true, fit: false, terminalFontSize: '14px' });
  }
  const wanted = d.recordings.find((r) => r.id === hash.get('r')) || (hash.has('t') ? d.recordings[0] : null);
  const box = (hash.get('box') || '').split(',').map(Number);
  const place = box.length === 4 && box.every((n) => Number.isFinite(n) && n >= 0) ? box : null;
  if (hash.get('q')) return searchHits(id, d, hash.get('q'), playerSlot, hitsSlot);
  if (wanted && wanted.status !== 'recording') play(wanted, playerSlot, parseFloat(hash.get('t') || '0'), place);
}

// What the download of a finished recording is, byte for byte: `sha256sum` of the downloaded
// file prints this.
function downloadFacts(r) {
  const p = el('p', { class: 'download-facts rules' }, 'Working out the download\u2019s SHA-256…');
  api(`/recordings/${r.id}/download`).then((d) => {
    p.replaceChildren('The download: ', el('code', {}, d.file_name), ` · ${d.bytes} bytes (${fmtBytes(d.bytes)}) · SHA-256 `,
      el('code', { class: 'download-sha256' }, d.sha256), ' — ', el('code', {}, `sha256sum ${d.file_name}`), ' prints the same.');
  }).catch((e) => p.replaceChildren('The download\u2019s SHA-256 is not known: ' + e.message));
  return p;
}

// Every place the search matched in this session, stepped through with previous and next: the
// player stops at the output event that printed the match, with the match marked on the screen.
async function searchHits(id, d, q, playerSlot, hitsSlot) {
  hitsSlot.replaceChildren(stateBox(`Finding “${q}” in this session…`));
  let hits;
  try {
    hits = await api(`/sessions/${id}/hits?q=${encodeURIComponent(q)}`);
  } catch (e) {
    return hitsSlot.replaceChildren(stateBox('Could not search this session: ' + e.message, true));
  }
  if (!hits.length) return hitsSlot.replaceChildren(stateBox(`“${q}” is not in this session's text.`));
  let i = Math.max(0, Math.min(hits.length - 1, parseInt(new URLSearchParams(location.hash.slice(1)).get('i') || '0', 10) || 0));
  const where = el('span', { id: 'hit-where' });
  const text = el('span', { class: 'snippet', id: 'hit-snippet' });
  const prev = el('button', { class: 'plain', id: 'hit-prev', onclick: () => go(i - 1) }, '◀ Previous');
  const next = el('button', { class: 'plain', id: 'hit-next', onclick: () => go(i + 1) }, 'Next ▶');
  const go = async (k) => {
    i = (k + hits.length) % hits.length;
    const h = hits[i];
    where.textContent = `Hit ${i + 1} of ${hits.length} · ${fmtSecs(h.at)} · `;
    text.replaceChildren(marked(h));
    history.replaceState(null, '', `#q=${encodeURIComponent(q)}&i=${i}`);
    const r = d.recordings.find((x) => x.id === h.recording_id);
    if (!r) return;
    if (r.format === 'mp4') return play(r, playerSlot, h.at, Array.isArray(h.rect) ? h.rect : null);
    if (castView && castView.recording === r.id) return castView.showHit(h, hits);
    await play(r, playerSlot, h.at, null, { hit: h, hits });
  };
  hitsSlot.replaceChildren(el('div', { class: 'hits', id: 'hits' },
    el('strong', {}, `“${q}”: `), where, text, el('span', { class: 'hit-buttons' }, prev, next)));
  go(i);
}

// A running RDP session: its video as written so far (whole fragments), fetched again every few
// seconds and shown from near its end, so the view follows the session a few seconds behind.
function watchVideo(r, slot) {
  const video = el('video', { id: 'live-video', autoplay: true, muted: true, preload: 'auto' });
  const load = () => {
    if (!document.body.contains(video)) return;
    // The box audits one live view per login and recording, however often it is fetched.
    video.src = `/api/v1/recordings/${r.id}/content?at=${Date.now()}`;
  };
  video.addEventListener('loadedmetadata', () => { if (isFinite(video.duration)) video.currentTime = Math.max(0, video.duration - 0.5); });
  video.addEventListener('error', () => slot.replaceChildren(stateBox('The live video could not be played.', true)));
  // One line under the picture, not a panel: what the admin sees and how far behind it is.
  slot.replaceChildren(video, el('p', { class: 'live-note', id: 'live-note' },
    el('span', { class: 'live-dot' }, '\u25cf live'), ' the desktop as recorded so far, a few seconds behind (fetched again every 4 s). Speeds, skip idle and the activity bar come with the recording once the session has ended.'));
  load();
  const timer = setInterval(() => { if (document.body.contains(video)) load(); else clearInterval(timer); }, 4000);
}

const INDEX_KINDS = { command: 'Command', input: 'Typed', transfer: 'Transfer', file: 'File operation', resize: 'Resize', marker: 'Marker', end: 'End', access: 'Access', forward: 'Forwarding', refused: 'Refused' };

// Index entries from the session's audit events and recordings: each with the recording it falls
// in and its time in that recording.
function auditIndex(d) {
  const recs = d.recordings;
  const place = (when) => {
    const t = Date.parse(when);
    const r = recs.find((x) => Date.parse(x.started_at) <= t && (!x.ended_at || t <= Date.parse(x.ended_at) + 1000)) || recs[0];
    return r ? { rec: r.id, at: Math.max(0, (t - Date.parse(r.started_at)) / 1000) } : { rec: null, at: 0 };
  };
  const out = [];
  for (const r of recs) {
    const exec = /^exec: (.*)$/s.exec(r.channel);
    if (exec) out.push({ rec: r.id, at: 0, kind: 'command', text: exec[1] });
  }
  for (const a of d.audit) {
    const x = a.detail || {};
    let kind = null, text = null;
    if ((a.kind === 'sftp' || a.kind === 'scp_file') && (x.direction === 'upload' || x.direction === 'download')) {
      kind = 'transfer';
      text = `${x.direction} ${x.path} · ${fmtBytes(x.bytes || 0)} · SHA-256 ${x.sha256}`;
    } else if (a.kind === 'sftp' || a.kind === 'scp_file') {
      kind = 'file';
      text = `${x.op} ${x.path || [x.from, x.to].filter(Boolean).join(' → ') || x.request || ''}${x.ok === false ? ' (failed)' : ''}`;
    } else if (a.kind === 'session_terminated') {
      kind = 'end';
      text = `terminated by ${x.by || a.actor || 'the box'}`;
    } else if (x.reason === 'access_changed') {
      kind = 'access';
      text = x.message || 'the grant expired or was revoked';
    } else if (a.kind === 'target_lost' || a.kind === 'recording_failed') {
      kind = 'end';
      text = a.kind.replace('_', ' ');
    } else if (a.kind === 'forward_opened') {
      kind = 'forward';
      text = JSON.stringify(x);
    } else if (/refused$/.test(a.kind)) {
      kind = 'refused';
      text = `${a.kind.replace(/_/g, ' ')} ${JSON.stringify(x)}`;
    }
    if (kind) out.push({ ...place(a.at), kind, text, sha256: x.sha256 || null, path: x.path || null });
  }
  return out;
}

// Index entries from a terminal recording: each line typed (when input is recorded), resizes and
// markers (input left out because the target did not echo it).
function castIndex(r, all) {
  const out = [];
  let line = '', lineAt = null;
  for (const [t, code, data] of all) {
    if (code === 'i') {
      for (const c of data) {
        if (c === '\r' || c === '\n') {
          const typed = line.trim();
          if (typed) out.push({ rec: r.id, at: lineAt ?? t, kind: 'input', text: typed });
          line = ''; lineAt = null;
        } else if (c === '\u007f' || c === '\b') line = line.slice(0, -1);
        else if (c >= ' ') { if (lineAt === null) lineAt = t; line += c; }
      }
    } else if (code === 'r') out.push({ rec: r.id, at: t, kind: 'resize', text: `terminal resized to ${data}` });
    else if (code === 'm') out.push({ rec: r.id, at: t, kind: 'marker', text: data });
  }
  return out;
}

function indexEntries() {
  if (!sessionIndex) return [];
  const all = auditIndex(sessionIndex.d).concat(...Object.values(sessionIndex.fromCast));
  const order = new Map(sessionIndex.d.recordings.map((r, i) => [r.id, i]));
  return all.sort((a, b) => (order.get(a.rec) ?? 0) - (order.get(b.rec) ?? 0) || a.at - b.at);
}

function renderIndex() {
  if (!sessionIndex) return;
  const { d, slot, playerSlot } = sessionIndex;
  const entries = indexEntries();
  const castShown = castView && castView.recording;
  if (castView) castView.drawMarkers(entries.filter((e) => e.rec === castShown));
  const typed = d.recordings.some((r) => sessionIndex.fromCast[r.id]);
  const note = typed ? null : el('p', { class: 'rules' }, 'Typed lines, resizes and markers from the recording join the index once it is played.');
  if (!entries.length) return slot.replaceChildren(stateBox('Nothing in this session to index yet.'), note || '');
  const rec = (id) => d.recordings.find((r) => r.id === id);
  slot.replaceChildren(note || '', el('div', { class: 'table-wrap' }, el('table', { id: 'session-index' },
    el('thead', {}, el('tr', {}, ['At', 'What', 'Detail'].map((h) => el('th', {}, h)))),
    el('tbody', {}, entries.map((e) => el('tr', { class: 'index-entry kind-' + e.kind, 'data-kind': e.kind, 'data-at': e.at, 'data-rec': e.rec || '', 'data-sha256': e.sha256 || '', tabindex: 0, title: 'Click to play from here',
      onclick: () => {
        const r = rec(e.rec);
        if (!r || r.status === 'recording') return;
        if (castView && castView.recording === r.id) castView.seekTo(e.at);
        else play(r, playerSlot, e.at, null, null, true);
      } },
    el('td', {}, fmtSecs(e.at)), el('td', {}, INDEX_KINDS[e.kind] || e.kind), el('td', { class: 'snippet' }, e.text)))))));
}

// The player's clock: asciinema-player merges output events less than a frame apart into the
// first of them and, skipping idle time, takes out of every gap what is over the limit. The same
// steps here give the player's time of any moment of the recording (and back).
const MIN_FRAME = 1 / 60;
function playerClock(all, limit) {
  const heads = [];
  let head;
  for (const e of all) {
    if (head !== undefined && e[1] === 'o' && head[1] === 'o' && e[0] - head[0] < MIN_FRAME) continue;
    heads.push(e);
    head = e;
  }
  const real = [], shown = [];
  let last = 0, cut = 0;
  for (const e of heads) {
    const over = e[0] - last - limit;
    last = e[0];
    if (over > 0) cut += over;
    real.push(e[0]);
    shown.push(e[0] - cut);
  }
  const find = (xs, t) => { let lo = 0, hi = xs.length - 1, k = -1; while (lo <= hi) { const m = (lo + hi) >> 1; if (xs[m] <= t) { k = m; lo = m + 1; } else hi = m - 1; } return k; };
  return {
    // A moment of the recording (an event's time, to the index's millisecond) in player time.
    toPlayer: (t) => { const k = find(real, t + 0.0006); return k < 0 ? 0 : shown[k]; },
    toReal: (t) => { const k = find(shown, t); return k < 0 ? 0 : real[k] + (t - shown[k]); },
  };
}

// Marks `text` on the terminal's screen (the lowest row showing it: the newest output), over the
// player so the player's own rendering is left alone. Whether it was found.
function markOnScreen(box, text) {
  for (const m of box.querySelectorAll('.hit-mark')) m.remove();
  if (!text) return false;
  const lines = [...box.querySelectorAll('.ap-line')];
  for (const line of lines.reverse()) {
    const at = line.textContent.indexOf(text);
    if (at < 0) continue;
    const walker = document.createTreeWalker(line, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    let pos = 0, node, started = false;
    while ((node = walker.nextNode())) {
      const len = node.textContent.length;
      if (!started && at < pos + len) { range.setStart(node, at - pos); started = true; }
      if (started && at + text.length <= pos + len) { range.setEnd(node, at + text.length - pos); break; }
      pos += len;
    }
    const frame = box.getBoundingClientRect();
    for (const r of range.getClientRects()) {
      box.append(el('div', { class: 'hit-mark', style: `left:${r.left - frame.left + box.scrollLeft}px;top:${r.top - frame.top + box.scrollTop}px;width:${r.width}px;height:${r.height}px` }));
    }
    return true;
  }
  return false;
}

async function play(r, slot, at, place, search, pauseAt) {
  if (r.format === 'mp4') return playVideo(r, slot, at, place);
  slot.replaceChildren(stateBox('Loading the recording…'));
  let text;
  try {
    const resp = await fetch(`/api/v1/recordings/${r.id}/content`, { credentials: 'same-origin' });
    if (!resp.ok) throw new Error((await resp.json().catch(() => ({}))).error || resp.statusText);
    text = await resp.text();
  } catch (e) {
    return slot.replaceChildren(stateBox('Could not load the recording: ' + e.message, true));
  }
  const all = [];
  for (const line of text.split('\n').slice(1)) {
    try { const e = JSON.parse(line); if (Array.isArray(e) && typeof e[0] === 'number') all.push(e); } catch (_) { /* partial line */ }
  }
  const events = all.filter((e) => e[1] === 'o');
  const duration = events.length ? events[events.length - 1][0] : 0;
  const buckets = new Array(120).fill(0);
  for (const [t, , data] of events) buckets[Math.min(119, Math.floor((t / (duration || 1)) * 120))] += data.length;
  const peak = Math.max(1, ...buckets);
  const speed = el('select', { id: 'speed' }, [1, 2, 4, 8, 16, 32].map((v) => el('option', { value: v }, v + '×')));
  const skip = el('input', { type: 'checkbox', id: 'skip-idle', checked: true });
  const box = el('div', { class: 'player-box', id: 'player' });
  // The timeline: output volume over time, the index's markers, a time axis and the playhead.
  const span = duration || 1;
  const pct = (t) => `${Math.min(100, Math.max(0, (t / span) * 100))}%`;
  const activity = el('div', { class: 'activity', id: 'activity' },
    buckets.map((b) => el('span', { style: `height:${Math.max(2, Math.round((b / peak) * 100))}%` })));
  const markerLayer = el('div', { class: 'tl-markers', id: 'timeline-markers' });
  const head = el('div', { class: 'playhead', id: 'cast-playhead' });
  const ticks = 5;
  const axis = el('div', { class: 'tl-axis', id: 'timeline-axis' },
    Array.from({ length: ticks + 1 }, (_, k) => el('span', { style: `left:${(k / ticks) * 100}%` }, fmtSecs((k / ticks) * duration))));
  const timeline = el('div', { class: 'timeline-bar', id: 'timeline', 'data-duration': duration, title: 'Click to play from there' }, activity, markerLayer, head);
  let clock = playerClock(all, 2);
  let hits = search ? search.hits.filter((h) => h.recording_id === r.id) : [];
  const create = (startAt, autoPlay) => {
    if (player) { try { player.dispose(); } catch (_) { /* gone */ } }
    box.replaceChildren();
    const limit = skip.checked ? 2 : Infinity;
    clock = playerClock(all, limit);
    const markers = hits.length ? hits.map((h) => [clock.toPlayer(h.at), h.matched || 'match']) : (at > 0 ? [[clock.toPlayer(at), 'match']] : undefined);
    player = AsciinemaPlayer.create({ data: text }, box, {
      autoPlay, startAt, speed: parseFloat(speed.value), idleTimeLimit: skip.checked ? 2 : undefined, fit: false, terminalFontSize: '14px', markers,
    });
    player.addEventListener('play', () => { for (const m of box.querySelectorAll('.hit-mark')) m.remove(); });
  };
  // A hit: the player stops at the event that printed the match, the match marked on screen.
  const showHit = async (h, all_hits) => {
    if (all_hits) hits = all_hits.filter((x) => x.recording_id === r.id);
    if (!player) create(0, false);
    const p = player;
    await p.pause();
    await p.seek(clock.toPlayer(h.at));
    box.dataset.hitAt = String(h.at);
    // The terminal redraws on its own frames after a seek: mark once the screen shows the word,
    // and again after the next frames, so a mark made on the screen before the seek moves.
    const frame = () => new Promise((ok) => requestAnimationFrame(() => setTimeout(ok, 25)));
    for (let k = 0; k < 40 && p === player; k++) {
      await frame();
      if (markOnScreen(box, h.matched)) break;
    }
    for (const wait of [150, 400]) {
      await new Promise((ok) => setTimeout(ok, wait));
      if (p !== player || box.dataset.hitAt !== String(h.at)) return;
      markOnScreen(box, h.matched);
    }
    (document.getElementById('hits') || slot).scrollIntoView({ block: 'start' });
  };
  const restart = async () => {
    const now = player ? clock.toReal(await player.getCurrentTime()) : 0;
    create(now, true);
  };
  speed.addEventListener('change', restart);
  skip.addEventListener('change', restart);
  timeline.addEventListener('click', (e) => {
    const m = e.target.closest('.tl-marker');
    const rect = timeline.getBoundingClientRect();
    const t = m ? parseFloat(m.dataset.at) : ((e.clientX - rect.left) / rect.width) * duration;
    if (player) player.seek(clock.toPlayer(t));
  });
  const drawMarkers = (entries) => markerLayer.replaceChildren(...entries.map((e) => el('span', {
    class: 'tl-marker kind-' + e.kind, 'data-at': e.at, 'data-kind': e.kind, style: `left:${pct(e.at)}`, title: `${fmtSecs(e.at)} · ${INDEX_KINDS[e.kind] || e.kind}: ${e.text}`,
  })));
  // Where the player is, in the recording's own time.
  const follow = setInterval(async () => {
    if (!document.body.contains(head)) return clearInterval(follow);
    if (!player) return;
    const t = clock.toReal(await player.getCurrentTime());
    head.style.left = pct(t);
    head.dataset.at = String(t);
  }, 100);
  const seekTo = async (t) => {
    if (!player) create(0, false);
    await player.pause();
    await player.seek(clock.toPlayer(t));
    slot.scrollIntoView({ block: 'start' });
  };
  slot.replaceChildren(el('h2', {}, `Playing ${r.channel}`),
    el('div', { class: 'controls' }, el('label', {}, 'Speed ', speed), el('label', {}, skip, ' skip idle time'), el('span', {}, `${duration.toFixed(1)} s recorded`)),
    timeline, axis, box);
  castView = { recording: r.id, showHit, drawMarkers, seekTo };
  if (sessionIndex) {
    sessionIndex.fromCast[r.id] = castIndex(r, all);
    renderIndex();
  }
  if (search) {
    create(0, false);
    await showHit(search.hit);
  } else if (pauseAt) {
    await seekTo(at);
  } else {
    create(Math.max(0, at - 1), true);
    slot.scrollIntoView({ block: 'start' });
  }
}

// RDP video. Chromium caps playbackRate at 16×; above it the rest is made up by seeking ahead
// against the wall clock (keyframes come every few frames, so seeks are cheap). Skip idle and the
// activity bar use the spans the box recorded while the screen changed.
const NATIVE_MAX_RATE = 16;
const IDLE_GAP = 2; // seconds without a change that skip idle jumps over
const LEAD_IN = 0.3; // it lands this long before the next change

// Where skip idle goes from `t`, or null: a gap longer than IDLE_GAP before a change is left for
// LEAD_IN before that change; after the last change, for the end.
function idleSkip(spans, t, end) {
  let prevEnd = 0;
  for (const [a, b] of spans) {
    if (t < a) return a - prevEnd > IDLE_GAP && t < a - LEAD_IN - 0.05 ? a - LEAD_IN : null;
    if (t <= b) return null;
    prevEnd = b;
  }
  return end - prevEnd > IDLE_GAP && t < end - 0.05 ? end : null;
}

const fmtSecs = (t) => (t >= 60 ? Math.floor(t / 60) + ' min ' : '') + (t % 60).toFixed(1) + ' s';

// A search hit's place on the screen, `[x, y, w, h]` in video pixels: outlined over the video
// while it plays near the hit's moment.
function hitBox(video, at, place) {
  const box = el('div', { class: 'hit-box', id: 'hit-box', hidden: true });
  const update = () => {
    const [x, y, w, h] = place;
    const vw = video.videoWidth, vh = video.videoHeight;
    const near = Math.abs(video.currentTime - at) < 3;
    box.hidden = !(vw > 0 && vh > 0 && near);
    if (box.hidden) return;
    Object.assign(box.style, { left: `${(x / vw) * 100}%`, top: `${(y / vh) * 100}%`, width: `${(w / vw) * 100}%`, height: `${(h / vh) * 100}%` });
  };
  for (const ev of ['loadedmetadata', 'timeupdate', 'seeked']) video.addEventListener(ev, update);
  return box;
}

// The thumbnail strip under an RDP video: one small picture per settled change (what the box
// read the screen's text from), hovering shows it larger, clicking plays from its moment. Fills
// `strip` once the box says which there are; `changes` gets their moments for [ and ].
function thumbStrip(r, video, strip, changes) {
  const preview = el('img', { class: 'thumb-preview', id: 'thumb-preview', alt: '', hidden: true });
  api(`/recordings/${r.id}/thumbnails`).then((times) => {
    if (!Array.isArray(times) || !times.length) {
      strip.replaceChildren(el('p', { class: 'state', id: 'no-thumbs' }, r.text && r.text.state !== 'done'
        ? 'No timeline pictures yet: the screen\u2019s text is still being read.'
        : 'No timeline pictures for this video.'));
      return;
    }
    changes.splice(0, changes.length, ...times);
    strip.replaceChildren(...times.map((t, n) => {
      const src = `/api/v1/recordings/${r.id}/thumbnails/${n}`;
      const img = el('img', { class: 'thumb', src, loading: 'lazy', alt: `The screen at ${fmtSecs(t)}`, title: `${fmtSecs(t)}: click to play from here`, 'data-at': t, tabindex: 0 });
      img.addEventListener('mouseenter', () => {
        preview.src = src;
        preview.hidden = false;
        const s = strip.parentElement.getBoundingClientRect(), b = img.getBoundingClientRect();
        preview.style.left = `${Math.max(0, Math.min(b.left - s.left - 96, s.width - 480))}px`;
      });
      img.addEventListener('mouseleave', () => { preview.hidden = true; });
      const seek = () => { video.currentTime = t; };
      img.addEventListener('click', seek);
      img.addEventListener('keydown', (e) => { if (e.key === 'Enter') seek(); });
      return img;
    }));
    strip.parentElement.append(preview);
  }).catch((e) => strip.replaceChildren(el('p', { class: 'state error' }, 'The timeline could not be loaded: ' + e.message)));
}

// Keys in the video player (not while typing in a field): space play/pause, ← → 10 s, [ ] the
// previous/next change, n p the next/previous search hit. One listener for the page; it acts on
// the player shown now.
let videoKeys = null;
document.addEventListener('keydown', (e) => {
  if (!videoKeys || !document.body.contains(videoKeys.video) || e.ctrlKey || e.metaKey || e.altKey) return;
  if (e.target.closest && e.target.closest('input, select, textarea, button, a')) return;
  const v = videoKeys.video;
  const at = (t) => { v.currentTime = Math.max(0, Math.min(t, isFinite(v.duration) ? v.duration : t)); };
  const now = v.currentTime;
  if (e.key === ' ') (v.paused ? v.play() : v.pause());
  else if (e.key === 'ArrowLeft') at(now - 10);
  else if (e.key === 'ArrowRight') at(now + 10);
  else if (e.key === ']') { const t = videoKeys.changes().find((c) => c > now + 0.25); if (t !== undefined) at(t); }
  else if (e.key === '[') { const t = videoKeys.changes().filter((c) => c < now - 0.25).pop(); if (t !== undefined) at(t); }
  else if (e.key === 'n' || e.key === 'p') { const b = document.getElementById(e.key === 'n' ? 'hit-next' : 'hit-prev'); if (!b) return; b.click(); }
  else return;
  e.preventDefault();
});

function playVideo(r, slot, at, place) {
  const video = el('video', { id: 'video', controls: true, controlslist: 'noplaybackrate', autoplay: true, muted: true, preload: 'metadata', src: `/api/v1/recordings/${r.id}/content` });
  const spans = Array.isArray(r.activity) ? r.activity.filter((s) => Array.isArray(s) && s[1] > s[0]) : null;
  const usable = spans !== null && spans.length > 0;
  const speed = el('select', { id: 'speed' }, [1, 2, 4, 8, 16, 32].map((v) => el('option', { value: v }, v + '×')));
  const skip = el('input', { type: 'checkbox', id: 'skip-idle', checked: usable, disabled: !usable });
  const state = el('span', { id: 'video-state', class: 'video-state' }, 'Loading the video…');
  const head = el('div', { class: 'playhead', id: 'playhead' });
  const bar = el('div', { class: 'video-activity', id: 'video-activity', title: 'When the screen changed: click to play from there' });
  const duration = r.duration || 0;
  const end = () => (isFinite(video.duration) && video.duration > 0 ? video.duration : duration);

  const draw = () => {
    const d = end() || 1;
    bar.replaceChildren(...spans.map(([a, b], i) => el('span', {
      class: 'span', role: 'button', tabindex: 0, 'data-start': a, 'data-end': b, 'data-index': i, title: `${fmtSecs(a)} – ${fmtSecs(b)}: click to play from here`,
      style: `left:${(Math.min(a, d) / d) * 100}%;width:${(Math.max(0, Math.min(b, d) - Math.min(a, d)) / d) * 100}%`,
    })), head);
  };
  const drawHead = () => { head.style.left = `${Math.min(100, (video.currentTime / (end() || 1)) * 100)}%`; };

  // Speed: the native rate up to 16×; above, `anchor` ties media time to the wall clock and the
  // timer seeks to where the wanted rate has got to.
  let rate = 1;
  let anchor = null;
  let ownSeek = null; // where the rate's seek in flight goes, and when it started
  const emulating = () => rate > NATIVE_MAX_RATE;
  const reanchor = () => { anchor = { media: video.currentTime, wall: performance.now() }; };
  const setRate = () => {
    rate = parseFloat(speed.value);
    video.playbackRate = Math.min(rate, NATIVE_MAX_RATE);
    reanchor();
    showState();
  };
  let skipped = null;
  const showState = () => {
    if (video.error) return;
    if (video.ended) state.textContent = 'Ended.';
    else if (video.paused) state.textContent = 'Paused.';
    else if (video.readyState < 3 && !video.seeking && !emulating()) state.textContent = 'Loading…';
    else state.textContent = `Playing at ${rate}×` + (skipped ? ` · skipped ${fmtSecs(skipped)} without changes` : '') + '.';
  };
  const jump = (to) => {
    skipped = to - video.currentTime;
    ownSeek = null;
    video.currentTime = to;
    reanchor();
    showState();
  };
  const tick = () => {
    if (!document.body.contains(video)) return clearInterval(timer);
    drawHead();
    if (video.paused || video.ended || video.seeking || video.readyState < 2) return;
    const now = video.currentTime;
    if (skip.checked && usable) {
      const to = idleSkip(spans, now, end());
      if (to !== null) return jump(to);
    }
    // One seek at a time: the next waits for this one's `seeked` (or a second, if none comes).
    if (emulating() && anchor && (ownSeek === null || performance.now() - ownSeek.wall > 1000)) {
      const want = anchor.media + ((performance.now() - anchor.wall) / 1000) * rate;
      // Stalled for seconds (the network): go on from here rather than leap.
      if (want - now > rate * 2) reanchor();
      else if (want > now + 0.05) {
        ownSeek = { to: Math.min(want, end()), wall: performance.now() };
        video.currentTime = ownSeek.to;
      }
    }
  };
  const timer = setInterval(tick, 25);

  speed.addEventListener('change', setRate);
  skip.addEventListener('change', () => { skipped = null; showState(); });
  video.addEventListener('loadedmetadata', () => {
    if (at > 0) video.currentTime = at;
    setRate();
  });
  // A fragmented MP4's length is known once it is read: the bar follows it.
  video.addEventListener('durationchange', () => { if (usable) draw(); drawHead(); });
  video.addEventListener('seeked', () => {
    // The rate's own seeks keep the anchor; any other (the controls, the bar, skip idle) moves it.
    // By the time `seeked` is handled the video may have played on from where the seek went.
    const ahead = ownSeek && ((performance.now() - ownSeek.wall) / 1000) * NATIVE_MAX_RATE + 0.3;
    if (ownSeek === null || video.currentTime < ownSeek.to - 0.3 || video.currentTime > ownSeek.to + ahead) reanchor();
    ownSeek = null;
    drawHead();
  });
  video.addEventListener('play', () => { skipped = null; reanchor(); showState(); });
  for (const ev of ['pause', 'playing', 'waiting', 'ended', 'canplay']) video.addEventListener(ev, showState);

  // A desktop is black until the target draws it: a video opened at its start is shown from its
  // first picture, not from seconds of black (which stay in the video: seek to 0 to see them).
  // The picture is hidden until that is known.
  const firstPicture = el('span', { id: 'first-picture', class: 'video-state', hidden: true });
  let blackChecks = at > 0 || !usable ? 0 : 8;
  const reveal = () => { blackChecks = 0; video.style.opacity = ''; };
  const isBlack = () => {
    const c = document.createElement('canvas');
    c.width = 64; c.height = 36;
    const g = c.getContext('2d', { willReadFrequently: true });
    g.drawImage(video, 0, 0, c.width, c.height);
    const px = g.getImageData(0, 0, c.width, c.height).data;
    let dark = 0;
    for (let i = 0; i < px.length; i += 4) if (px[i] < 16 && px[i + 1] < 16 && px[i + 2] < 16) dark++;
    // The pointer may be drawn on the black desktop already.
    return dark >= 0.98 * c.width * c.height;
  };
  const skipBlack = () => {
    if (blackChecks <= 0 || video.readyState < 2) return;
    blackChecks--;
    let black;
    try { black = isBlack(); } catch (_) { return reveal(); }
    const next = black ? spans.find(([a]) => a > video.currentTime + 0.05) : null;
    if (!next) return reveal();
    video.currentTime = next[0];
    reanchor();
    firstPicture.textContent = ` The first ${fmtSecs(next[0])} are black (nothing drawn yet): shown from the first picture; seek to 0 to see them.`;
    firstPicture.hidden = false;
    if (blackChecks === 0) reveal();
  };
  if (blackChecks > 0) {
    video.style.opacity = '0';
    setTimeout(reveal, 4000);
  }
  video.addEventListener('loadeddata', skipBlack);
  video.addEventListener('seeked', skipBlack);
  video.addEventListener('error', () => {
    state.textContent = '';
    slot.append(stateBox('The video could not be played.', true));
  });
  bar.addEventListener('click', (e) => {
    const s = e.target.closest('.span');
    const rect = bar.getBoundingClientRect();
    const t = s ? parseFloat(s.dataset.start) : ((e.clientX - rect.left) / rect.width) * end();
    video.currentTime = Math.max(0, Math.min(t, end()));
    drawHead();
  });
  bar.addEventListener('keydown', (e) => {
    const s = e.target.closest('.span');
    if (!s || (e.key !== 'Enter' && e.key !== ' ')) return;
    e.preventDefault();
    video.currentTime = parseFloat(s.dataset.start);
  });

  // Changes for [ and ]: the thumbnails' moments once known, the activity spans' starts before.
  const thumbTimes = [];
  const strip = el('div', { class: 'thumb-strip', id: 'thumbs' }, el('span', { class: 'state' }, 'Loading the timeline…'));
  thumbStrip(r, video, strip, thumbTimes);
  videoKeys = { video, changes: () => (thumbTimes.length ? thumbTimes : (usable ? spans.map(([a]) => a) : [])) };

  let below;
  if (usable) {
    draw();
    below = bar;
  } else {
    const why = spans !== null
      ? 'The screen did not change in this video, so there is no activity to show or skip.'
      : r.recovered
        ? 'No activity timeline: this video was recovered after the box stopped uncleanly, so skip idle is off. Seek with the video\u2019s own controls.'
        : 'No activity timeline: the box did not record one for this video (recorded before it kept them), so skip idle is off. Seek with the video\u2019s own controls.';
    below = el('p', { class: 'state', id: 'no-activity' }, why);
  }
  slot.replaceChildren(el('h2', {}, `Playing ${r.channel}`),
    el('div', { class: 'controls' }, el('label', {}, 'Speed ', speed), el('label', {}, skip, ' skip idle time'),
      el('span', {}, `${duration ? fmtSecs(duration) + ' recorded' : ''}${usable ? ` · ${spans.length} ${spans.length === 1 ? 'span' : 'spans'} of activity` : ''}`), state, firstPicture),
    place ? el('div', { class: 'video-frame' }, video, hitBox(video, at, place)) : video, below,
    el('div', { class: 'timeline', id: 'timeline' }, strip),
    el('p', { class: 'rules', id: 'player-keys' }, 'Keys: space play/pause · ← → 10 s · [ ] previous/next change · n p next/previous search hit.'));
  slot.scrollIntoView({ block: 'start' });
}

// The box-wide audit log (auditors and admins): filters, paging, the hash chain checked.
async function auditPage() {
  const params = new URLSearchParams(location.search);
  const input = (name, attrs = {}) => el('input', { name, value: params.get(name) || '', ...attrs });
  const form = el('form', { class: 'filters', id: 'audit-filters' },
    el('label', {}, 'Event kind', input('kind', { size: 16, placeholder: 'web_login or web_*' })),
    el('label', {}, 'User', input('user', { size: 10 })),
    el('label', {}, `After (${zoneName()})`, input('from', { type: 'datetime-local' })),
    el('label', {}, `Before (${zoneName()})`, input('to', { type: 'datetime-local' })),
    el('button', { type: 'submit' }, 'Show'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    navigate('/audit' + (q.toString() ? '?' + q : ''));
  });
  const chain = el('p', { class: 'state', id: 'audit-chain' }, 'Checking the audit log\u2019s hash chain…');
  const body = el('div', { id: 'audit-body' }, stateBox('Loading…'));
  show(el('h1', {}, 'Audit log'), form, chain,
    el('p', { class: 'rules' }, `Times in ${zoneName()}; hover a time for UTC. Newest first.`), body);
  api('/audit/chain').then((c) => {
    chain.textContent = c.intact ? `Hash chain intact: ${c.events} events checked.` : `Hash chain BROKEN at event ${c.broken_at}: ${c.why}`;
    chain.className = c.intact ? 'state chain-ok' : 'state error';
  }).catch((e) => { chain.textContent = 'Could not check the hash chain: ' + e.message; chain.className = 'state error'; });
  const query = new URLSearchParams();
  for (const k of ['kind', 'user', 'from', 'to', 'before']) {
    let v = params.get(k);
    if (!v) continue;
    if ((k === 'from' || k === 'to') && !v.endsWith('Z')) v = zonedToUtc(v);
    query.set(k, v);
  }
  let page;
  try {
    page = await api('/audit?' + query);
  } catch (e) {
    return body.replaceChildren(stateBox('Could not load the audit log: ' + e.message, true));
  }
  if (!page.events.length) return body.replaceChildren(stateBox('No audit event matches these filters.'));
  const older = new URLSearchParams(params);
  if (page.next_before) older.set('before', page.next_before);
  body.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { id: 'audit-log' },
    el('thead', {}, el('tr', {}, ['#', 'When', 'Event', 'By', 'About', 'Session', 'Detail'].map((h) => el('th', {}, h)))),
    el('tbody', {}, page.events.map((a) => el('tr', { class: 'audit-row', 'data-kind': a.kind },
      el('td', {}, a.id), el('td', {}, localTime(a.at)), el('td', {}, a.kind), el('td', { class: 'actor' }, a.actor || 'the box'),
      el('td', {}, a.user || '—'),
      el('td', {}, a.session_id ? el('a', { href: '/sessions/' + a.session_id, class: 'audit-session' }, a.session_id.slice(0, 8) + '…') : '—'),
      el('td', { class: 'snippet' }, JSON.stringify(a.detail))))))),
  el('div', { class: 'controls' },
    params.has('before') ? el('a', { href: '/audit' + (() => { const q = new URLSearchParams(params); q.delete('before'); return q.toString() ? '?' + q : ''; })(), id: 'audit-newest' }, 'Newest') : null,
    page.next_before ? el('a', { href: '/audit?' + older, id: 'audit-older' }, 'Older events') : null));
}

// The box's health (admins): disk, store backlog, video encoder, keys.
async function healthPage() {
  const body = el('div', { id: 'health-body' }, stateBox('Loading…'));
  show(el('h1', {}, 'Box health'), body);
  const render = async () => {
    let h;
    try {
      h = await api('/health');
    } catch (e) {
      return body.replaceChildren(stateBox('Could not load the box\u2019s health: ' + e.message, true));
    }
    const facts = (id, rows) => {
      const dl = el('dl', { class: 'facts', id });
      for (const [k, v, bad] of rows) dl.append(el('dt', {}, k), el('dd', { class: bad ? 'bad' : '' }, v));
      return dl;
    };
    const d = h.disk, s = h.store, k = h.keys;
    body.replaceChildren(
      el('h2', {}, 'Disk'), facts('health-disk', [
        ['Used', `${d.used_percent}% (high watermark ${d.high_watermark_percent}%)`, d.refusing_sessions],
        ['Free', fmtBytes(d.free_bytes) + ` (minimum ${fmtBytes(d.min_free_bytes)})`, d.free_bytes < d.min_free_bytes],
        ['New sessions', d.refusing_sessions ? 'REFUSED: recording storage is full' : 'accepted', d.refusing_sessions]]),
      el('h2', {}, 'Store'), facts('health-store', [
        ['Destination', s.destination || '—'], ['State', s.state, s.state !== 'online'],
        ['Waiting to upload', `${s.pending} recordings, ${fmtBytes(s.pending_bytes)}`],
        ['Oldest waiting since', localTime(s.oldest_pending_since)], ['Uploaded', String(s.uploaded)],
        ['Last success', localTime(s.last_success_at)], ['Last error', s.last_error ? `${s.last_error} (${fmtTime(s.last_error_at)})` : '—', !!s.last_error],
        ['Store key may', s.key_access || 'not checked yet']]),
      el('h2', {}, 'Recordings in the pipeline (seal, text, upload, verify, prune)'), (s.jobs || []).length
        ? el('div', { class: 'table-wrap' }, el('table', { id: 'health-jobs' },
          el('thead', {}, el('tr', {}, ['Recording', 'Step', 'State', 'Attempts', 'Next try', 'Why it waits'].map((x) => el('th', {}, x)))),
          el('tbody', {}, s.jobs.map((j) => el('tr', { class: 'job-row', 'data-step': j.step, 'data-state': j.state },
            el('td', { title: j.recording }, j.recording.slice(0, 8) + '…'), el('td', {}, j.step), el('td', {}, j.state),
            el('td', {}, String(j.attempts)), el('td', {}, j.state === 'waiting' ? localTime(j.next_attempt_at) : '—'),
            el('td', { class: j.attempts > 0 ? 'bad' : '' }, j.reason || '—'))))))
        : stateBox('Every finished recording is through: sealed, stored, verified.'),
      el('h2', {}, 'Recording'), facts('health-recording', [
        ['Video encoder', h.encoder], ['Sessions running', String(h.sessions_active)],
        ['Recordings', h.recordings_by_status.map(([st, n]) => `${n} ${st}`).join(', ') || 'none']]),
      el('h2', {}, 'Panel'), h.panel ? facts('health-panel', [
        ['LEDs show', h.panel.state, h.panel.state === 'fault'],
        ['Healthy', h.panel.healthy ? 'yes' : 'NO: ' + h.panel.problems.join('; '), !h.panel.healthy],
        ['Watchdog', !h.panel.watchdog_present ? 'none' : h.panel.watchdog_petting ? 'petted' : 'NOT petted: the box will reset', h.panel.watchdog_present && !h.panel.watchdog_petting],
        ['Updated', localTime(h.panel.updated_at)]]) : stateBox('The panel has not published its state yet.'),
      el('h2', {}, 'Keys'), facts('health-keys', [
        ['Active key', k.active_key || 'none yet (made with the first recording)'],
        ['Sealed to the TPM', k.sealed_to_tpm ? 'yes' : 'no (plain files on the data partition)'],
        ['Usable', k.error ? 'NO: ' + k.error : 'yes', !!k.error]]),
      el('p', { class: 'rules' }, `Times in ${zoneName()}; hover for UTC. Refreshed every 5 s.`));
  };
  await render();
  whileShown(body, 5000, render);
}

async function livePage() {
  const title = el('h1', {}, 'Live sessions');
  const body = el('div', { id: 'live-body' }, stateBox('Loading…'));
  show(title, body);
  await liveList(body);
  // The list follows who connects and who leaves.
  whileShown(body, 2000, () => liveList(body));
}

async function liveList(body) {
  let list;
  try {
    list = await api('/live');
  } catch (e) {
    return body.replaceChildren(stateBox('Could not load live sessions: ' + e.message, true));
  }
  if (!list.length) return body.replaceChildren(stateBox('Nobody is connected through the box right now.'));
  body.replaceChildren(el('div', { class: 'table-wrap' }, el('table', { id: 'live-table' },
    el('thead', {}, el('tr', {}, ['Started', 'User', 'Target', 'Protocol', 'From'].map((h) => el('th', {}, h)))),
    el('tbody', {}, list.map((s) => el('tr', { class: 'session-row', 'data-id': s.id },
      el('td', {}, el('a', { href: '/sessions/' + s.id }, localTime(s.started_at))), el('td', {}, s.user), el('td', {}, s.target), el('td', {}, s.protocol), el('td', {}, s.client || '—')))))));
}

start();

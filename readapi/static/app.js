// ingest results page: plain JavaScript, no dependencies, served from the
// binary. It reads the JSON read API of the same server (see package
// readapi) and draws the chart as SVG itself. The word cloud is the
// server's SVG (GET /publications/{key}/cloud.svg, laid out in Go by
// package wordcloud): fetched with the token like the JSON, parsed as XML
// and imported into the page, so there is one layout and the page's
// Content-Security-Policy needs no blob: or data: images.
//
// The URL fragment carries the view: #pub=KEY selects a publication on
// load (and on back/forward); #token=TOKEN hands the page a read token,
// which it keeps in sessionStorage and removes from the address bar.
'use strict';

(() => {
  const PAGE_SIZE = 20;           // entities per page: chart and list
  const STATUS_EVERY_MS = 3000;   // live strip refresh
  const PUBS_EVERY_MS = 15000;    // publication list refresh
  const TOKEN_KEY = 'ingest.readToken';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const CLOUD_WIDTH = 800;        // the cloud's canvas, in SVG units (package wordcloud)

  const intFmt = new Intl.NumberFormat();
  const rateFmt = new Intl.NumberFormat(undefined, { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  const $ = (id) => document.getElementById(id);

  const state = {
    pubs: [],
    pubsJSON: '',
    filter: '',        // the publications filter box, lower-cased
    key: null,         // selected publication key
    cursors: [''],     // cursors[i] is the "after" of page i
    page: 0,
    next: null,
    top: 0,            // count of the publication's most frequent entity: the chart's scale
    entities: [],
    seq: 0,            // discards answers to superseded entity requests
    cloudSeq: 0,       // the same for the word cloud
    childrenSig: '',
    chartBox: 0,       // width of the chart's box when last drawn
  };

  // ---- small DOM helpers (text only: never innerHTML with data) ----

  function el(tag, props, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props || {})) {
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('data-') || k.startsWith('aria-')) e.setAttribute(k, v);
      else e[k] = v;
    }
    e.append(...children);
    return e;
  }

  function svg(tag, attrs, text) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  // ---- token and API ----

  function token() {
    try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
  }

  function setToken(t) {
    try { sessionStorage.setItem(TOKEN_KEY, t); } catch { /* private mode: this load only */ }
    memoryToken = t;
  }
  let memoryToken = '';

  class APIError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // request fetches path with the token; accept is the type wanted.
  async function request(path, accept) {
    const headers = { Accept: accept };
    const t = token() || memoryToken;
    if (t) headers.Authorization = 'Bearer ' + t;
    let res;
    try {
      res = await fetch(path, { headers, cache: 'no-store' });
    } catch (e) {
      throw new APIError(0, 'cannot reach the service (' + e.message + ')');
    }
    if (!res.ok) {
      let body = null;
      try { body = await res.json(); } catch { /* not JSON: use the status */ }
      if (res.status === 401) showAuth();
      throw new APIError(res.status, (body && body.error) || (res.status + ' ' + res.statusText));
    }
    hideAuth();
    return res;
  }

  async function api(path) {
    const res = await request(path, 'application/json');
    try {
      return await res.json();
    } catch (e) {
      throw new APIError(res.status, 'the answer is not JSON (' + e.message + ')');
    }
  }

  function showAuth() {
    const form = $('auth');
    if (form.hidden) {
      form.hidden = false;
      $('token').focus();
    }
  }

  function hideAuth() {
    $('auth').hidden = true;
  }

  function showError(where, err) {
    const box = $('error');
    box.dataset.where = where;
    setText(box, err.message);
    box.hidden = false;
  }

  function clearError(where) {
    const box = $('error');
    if (box.dataset.where === where) {
      box.hidden = true;
      box.dataset.where = '';
    }
  }

  // ---- fragment ----

  function readFragment() {
    const params = new URLSearchParams(location.hash.slice(1));
    if (params.has('token')) {
      setToken(params.get('token'));
      params.delete('token');
      const rest = params.toString();
      history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    }
    return params.get('pub');
  }

  // ---- publications ----

  async function loadPublications() {
    try {
      const pubs = await api('/publications');
      const sig = JSON.stringify(pubs);
      if (sig !== state.pubsJSON) {
        state.pubs = pubs;
        state.pubsJSON = sig;
        renderPublications();
      }
      clearError('publications');
      document.body.dataset.publications = 'loaded';
    } catch (e) {
      setText($('pubs-note'), 'Could not load the publications.');
      showError('publications', e);
      document.body.dataset.publications = 'error';
    }
  }

  // MAX_PUB_ROWS bounds the rows drawn at once: with tens of thousands of
  // publications the filter box narrows the list instead.
  const MAX_PUB_ROWS = 200;

  function renderPublications() {
    const rows = $('pub-rows');
    const focusedKey = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.key : undefined;
    const max = state.pubs.reduce((m, p) => Math.max(m, p.articles), 0) || 1;
    const total = state.pubs.reduce((m, p) => m + p.articles, 0);
    const f = state.filter;
    const matching = f === '' ? state.pubs
      : state.pubs.filter((p) => p.key.includes(f) || (p.name || '').toLowerCase().includes(f));
    const shown = matching.slice(0, MAX_PUB_ROWS);
    rows.replaceChildren(...shown.map((p) => {
      const fill = el('span', { class: 'pub-fill' });
      fill.style.width = (100 * p.articles / max).toFixed(1) + '%';
      const button = el('button', {
        type: 'button', class: 'pub', 'data-key': p.key, title: 'key: ' + p.key,
      }, el('span', { class: 'pub-name', text: p.name || p.key }),
      el('span', { class: 'pub-bar', 'aria-hidden': 'true' }, fill));
      button.addEventListener('click', () => choose(p.key));
      return el('tr', { 'data-key': p.key },
        el('td', {}, button),
        el('td', { class: 'num', text: intFmt.format(p.articles) }));
    }));
    $('pubs-table').hidden = shown.length === 0;
    $('pub-filter').hidden = state.pubs.length <= 10;
    let note = `${intFmt.format(state.pubs.length)} publications, ${intFmt.format(total)} articles.`;
    if (state.pubs.length === 0) {
      note = 'Nothing stored yet. Post articles to /post/enqueue; results appear after the workers flush.';
    } else if (f !== '' || matching.length > shown.length) {
      note += ` ${intFmt.format(matching.length)} match` +
        (matching.length > shown.length ? `; the first ${intFmt.format(shown.length)} are shown: narrow the filter.` : '.');
    }
    setText($('pubs-note'), note);
    markSelected();
    if (focusedKey !== undefined) {
      const again = [...rows.querySelectorAll('button.pub')].find((b) => b.dataset.key === focusedKey);
      if (again) again.focus();
    }
    if (state.key !== null) renderHeading();
  }

  function markSelected() {
    for (const b of $('pub-rows').querySelectorAll('button.pub')) {
      b.setAttribute('aria-current', String(b.dataset.key === state.key));
    }
  }

  function pubByKey(key) {
    return state.pubs.find((p) => p.key === key);
  }

  // ---- entities ----

  // choose selects a publication through the fragment, so that the view
  // can be bookmarked and back/forward work.
  function choose(key) {
    const hash = '#pub=' + encodeURIComponent(key);
    if (location.hash === hash) select(key, true);
    else location.hash = hash;
  }

  function select(key, force) {
    if (key === state.key && !force) return;
    state.key = key;
    state.cursors = [''];
    state.page = 0;
    state.next = null;
    state.top = 0;
    markSelected();
    renderHeading();
    loadEntities();
    loadCloud();
  }

  async function loadEntities() {
    const seq = ++state.seq;
    const key = state.key;
    const after = state.cursors[state.page];
    let url = '/publications/' + encodeURIComponent(key) + '/entities?limit=' + PAGE_SIZE;
    if (after) url += '&after=' + encodeURIComponent(after);
    const detail = $('detail');
    detail.setAttribute('aria-busy', 'true');
    try {
      const page = await api(url);
      if (seq !== state.seq) return;
      state.entities = page.entities;
      state.next = page.next;
      if (state.page === 0) state.top = page.entities.length ? page.entities[0].count : 0;
      clearError('entities');
      renderEntities();
      document.body.dataset.entities = 'loaded';
    } catch (e) {
      if (seq !== state.seq) return;
      $('entities-view').hidden = true;
      setText($('detail-sub'), e.status === 404 ? 'This publication is not stored.' : 'Could not load its entities.');
      showError('entities', e);
      document.body.dataset.entities = 'error';
    } finally {
      if (seq === state.seq) detail.removeAttribute('aria-busy');
    }
  }

  function renderHeading() {
    const p = pubByKey(state.key);
    setText($('detail-h'), p ? (p.name || p.key) : state.key);
    if (p) {
      setText($('detail-sub'), `${intFmt.format(p.articles)} articles · entities by how often they occur`);
    }
  }

  function renderEntities() {
    const first = state.page * PAGE_SIZE;
    const ents = state.entities;
    $('entities-view').hidden = false;
    renderHeading();
    $('entity-rows').replaceChildren(...ents.map((e, i) => el('tr', {},
      el('td', { class: 'num rank', text: intFmt.format(first + i + 1) }),
      el('td', { class: 'word', text: e.word }),
      el('td', { class: 'num', text: intFmt.format(e.count) }))));
    if (ents.length === 0) {
      $('entity-rows').append(el('tr', {}, el('td', { colSpan: 3, class: 'muted', text: 'No entities stored for this publication.' })));
    }
    const range = ents.length ? `Entities ${intFmt.format(first + 1)}–${intFmt.format(first + ents.length)}` : '';
    setText($('range'), range);
    // aria-disabled rather than disabled: a disabled button drops the
    // keyboard focus of whoever just pressed it.
    $('prev').setAttribute('aria-disabled', String(state.page === 0));
    $('next').setAttribute('aria-disabled', String(!state.next));
    drawChart();
  }

  // ---- chart: horizontal bars in SVG, scaled to the publication's top count ----

  function niceStep(raw) {
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) {
      if (m * mag >= raw) return m * mag;
    }
    return 10 * mag;
  }

  function clip(word, n) {
    const chars = [...word];
    return chars.length > n ? chars.slice(0, n - 1).join('') + '…' : word;
  }

  function drawChart() {
    const box = $('chart-box');
    const ents = state.entities;
    const name = $('detail-h').textContent;
    if (ents.length === 0) {
      box.replaceChildren();
      setText($('chart-caption'), '');
      return;
    }
    state.chartBox = Math.round(box.clientWidth);
    const width = Math.max(300, state.chartBox || 600);
    const rowH = 24, barH = 16, padTop = 4, axisH = 24, valueW = 52;
    const top = Math.max(state.top, ents[0].count, 1);
    const step = Math.max(1, niceStep(top / 5)); // about five ticks; counts are whole numbers
    const domain = top; // the top entity's bar spans the width; ticks stop below it
    const height = padTop + ents.length * rowH + axisH;

    const first = state.page * PAGE_SIZE;
    const titleId = 'chart-title';
    const root = svg('svg', {
      viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-labelledby': titleId,
    });
    root.append(svg('title', { id: titleId },
      `Bar chart: entities ${first + 1} to ${first + ents.length} of ${name} by count`));
    box.replaceChildren(root);

    // Labels first, to measure the widest and size the label column.
    const labels = ents.map((e, i) => {
      const t = svg('text', { class: 'label', y: padTop + i * rowH + rowH / 2, 'dominant-baseline': 'central', 'text-anchor': 'end' },
        clip(e.word, width < 500 ? 18 : 28));
      root.append(t);
      return t;
    });
    let labelW = 0;
    for (const t of labels) labelW = Math.max(labelW, t.getComputedTextLength());
    labelW = Math.min(Math.ceil(labelW) + 10, Math.round(width * 0.4));
    const x0 = labelW + 6;
    const span = Math.max(40, width - x0 - valueW);
    const x = (v) => x0 + span * v / domain;

    const grid = svg('g', {});
    for (let i = 0; i * step <= domain * (1 + 1e-9); i++) {
      const v = i * step;
      const gx = Math.round(x(v)) + 0.5;
      grid.append(svg('line', { class: v === 0 ? 'axis' : 'grid', x1: gx, x2: gx, y1: padTop - 2, y2: height - axisH + 2 }));
      grid.append(svg('text', { class: 'tick', x: gx, y: height - axisH + 16, 'text-anchor': 'middle' }, intFmt.format(v)));
    }
    root.insertBefore(grid, labels[0]);

    ents.forEach((e, i) => {
      const y = padTop + i * rowH;
      labels[i].setAttribute('x', labelW);
      const w = Math.max(1, span * Math.max(0, e.count) / domain);
      const bar = svg('rect', { class: 'bar', x: x0, y: y + (rowH - barH) / 2, width: w.toFixed(1), height: barH, rx: 3 });
      bar.append(svg('title', {}, `${e.word}: ${intFmt.format(e.count)}`));
      root.append(bar);
      root.append(svg('text', { class: 'value', x: x0 + w + 6, y: y + rowH / 2, 'dominant-baseline': 'central' }, intFmt.format(e.count)));
    });
    setText($('chart-caption'), `Bars are scaled to the most frequent entity (${intFmt.format(top)}); the list below has the same data.`);
  }

  // ---- word cloud: the server's SVG, imported as DOM nodes ----

  // As many words as the cloud's width shows readably: the server's
  // default (60) across a wide panel, fewer where it is narrower (by the
  // area lost: the square of the width), so that the server's layout
  // draws them larger.
  function cloudWords() {
    const f = Math.min(1, ($('detail').clientWidth || CLOUD_WIDTH) / CLOUD_WIDTH);
    return Math.max(12, Math.round(60 * f * f));
  }

  async function loadCloud() {
    const seq = ++state.cloudSeq;
    const box = $('cloud-box');
    try {
      const res = await request('/publications/' + encodeURIComponent(state.key) + '/cloud.svg?limit=' + cloudWords(), 'image/svg+xml');
      const text = await res.text();
      if (seq !== state.cloudSeq) return;
      // Parsed as XML, never as HTML: the server escaped every word, and
      // importNode runs nothing (the SVG has no script in any case).
      const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
      const root = doc.documentElement;
      if (doc.getElementsByTagName('parsererror').length || root.namespaceURI !== SVG_NS || root.localName !== 'svg') {
        throw new APIError(res.status, 'the word cloud is not SVG');
      }
      const node = document.importNode(root, true);
      node.removeAttribute('width');
      node.removeAttribute('height');
      box.replaceChildren(node);
      const texts = node.querySelectorAll('text');
      const n = texts.length;
      // The smallest word as drawn on screen, in CSS pixels: the browser
      // test checks it is readable.
      const scale = node.getBoundingClientRect().width / node.viewBox.baseVal.width;
      const smallest = Math.min(...Array.from(texts, t => Number(t.getAttribute('font-size'))));
      if (n && scale > 0) box.dataset.minPx = (smallest * scale).toFixed(1);
      setText($('cloud-caption'), n
        ? `Word cloud of the ${intFmt.format(n)} most frequent entities: size by count.`
        : '');
      box.hidden = n === 0;
      document.body.dataset.cloud = 'loaded';
    } catch (e) {
      if (seq !== state.cloudSeq) return;
      box.replaceChildren();
      box.hidden = true;
      setText($('cloud-caption'), e.status === 404 ? '' : 'Could not load the word cloud: ' + e.message);
      document.body.dataset.cloud = 'error';
    }
  }

  // ---- live strip ----

  const STATE_CLASS = { running: 'ok', ready: 'ok', starting: 'warn', restarting: 'warn', stopping: 'warn', draining: 'warn' };

  async function loadStatus() {
    try {
      const s = await api('/status');
      renderStatus(s);
      setText($('updated'), 'updated ' + timeFmt.format(new Date()));
      document.body.dataset.status = 'loaded';
    } catch (e) {
      setText($('updated'), 'live status unavailable: ' + e.message);
      document.body.dataset.status = 'error';
    }
  }

  function renderStatus(s) {
    setText($('rate'), rateFmt.format(s.accepted_per_sec));
    setText($('queue'), `${intFmt.format(s.queue_depth)} / ${intFmt.format(s.queue_capacity)}`);
    const pct = s.queue_capacity > 0 ? Math.min(100, 100 * s.queue_depth / s.queue_capacity) : 0;
    const fill = $('queue-fill');
    fill.style.width = pct.toFixed(1) + '%';
    fill.className = 'meter-fill' + (pct >= 95 ? ' full' : pct >= 70 ? ' high' : '');
    const service = $('service');
    setText(service, s.draining ? 'draining' : 'accepting');
    service.className = 'badge ' + (s.draining ? 'warn' : 'ok');

    const sig = JSON.stringify(s.children);
    if (sig === state.childrenSig) return;
    state.childrenSig = sig;
    const list = $('children');
    if (s.children.length === 0) {
      list.replaceChildren(el('li', { class: 'empty', text: 'no child processes' }));
      return;
    }
    list.replaceChildren(...s.children.map((c) => {
      const cls = STATE_CLASS[c.state] || (/exit|dead|fail|kill/.test(c.state) ? 'bad' : '');
      return el('li', { class: 'child', 'data-role': c.role, 'data-pid': String(c.pid) },
        el('span', { class: 'dot ' + cls, 'aria-hidden': 'true' }),
        el('span', { class: 'name', text: `${c.role} ${c.id}` }),
        el('span', { class: 'pid', text: `pid ${c.pid}` }),
        el('span', { class: 'state', text: c.state }),
        el('span', { class: 'restarts' + (c.restarts > 0 ? ' some' : ''), text: `${intFmt.format(c.restarts)} ${c.restarts === 1 ? 'restart' : 'restarts'}` }));
    }));
  }

  // ---- timers: one request at a time per loop, paused while hidden ----

  function every(ms, fn) {
    const tick = async () => {
      if (!document.hidden) await fn();
      setTimeout(tick, ms);
    };
    setTimeout(tick, ms);
  }

  // ---- start ----

  function wire() {
    $('pub-filter').addEventListener('input', (ev) => {
      state.filter = ev.target.value.trim().toLowerCase();
      renderPublications();
    });
    const busy = () => $('detail').hasAttribute('aria-busy');
    $('prev').addEventListener('click', () => {
      if (state.page > 0 && !busy()) {
        state.page--;
        loadEntities();
      }
    });
    $('next').addEventListener('click', () => {
      if (state.next && !busy()) {
        state.cursors[state.page + 1] = state.next;
        state.page++;
        loadEntities();
      }
    });
    $('auth').addEventListener('submit', (ev) => {
      ev.preventDefault();
      setToken($('token').value.trim());
      $('token').value = '';
      hideAuth();
      refreshAll();
    });
    window.addEventListener('hashchange', () => {
      const key = readFragment();
      if (key !== null) select(key);
    });
    // Redraw the chart when its box changes width (window resized, layout
    // switched between one and two columns), so text keeps its size.
    new ResizeObserver(() => {
      if (Math.round($('chart-box').clientWidth) !== state.chartBox && state.entities.length) drawChart();
    }).observe($('chart-box'));
  }

  async function refreshAll() {
    const pending = [loadStatus(), loadPublications()];
    if (state.key !== null) select(state.key, true);
    await Promise.all(pending);
  }

  async function start() {
    wire();
    const key = readFragment();
    const status = loadStatus();
    await loadPublications();
    if (key !== null) select(key);
    else if (state.pubs.length) markSelected();
    await status;
    every(STATUS_EVERY_MS, loadStatus);
    every(PUBS_EVERY_MS, loadPublications);
  }

  start();
})();

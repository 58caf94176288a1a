// ebpftoolkit interactive timeline: level of detail, hover data, brush and tap on top of Bokeh.
// Runs as the body of the one Bokeh CustomJS of a timeline, on every event it is attached to (mode(): which).
// args: src (the drawn glyphs), sel (selection sent back to Python), store (a source holding hdr, the JSON
// header, and blob, base64 of the zlib-compressed columns), fig, xr, yr, info / readout (Bokeh Divs, or null: DOM ids uid+"-info" and
// uid+"-readout"), uid.  State lives on src (src._ebt) and is shared by every callback.
const mode = which();
const LIMIT = 8000;          // exact glyphs drawn at most; above, visible events are aggregated in time bins
const S = src._ebt || (src._ebt = {ready: false, loading: null, queued: false});

function which() {
  const ev = cb_obj && cb_obj.event_name;
  if (ev === "rangesupdate" || ev === "reset") return "range";
  if (ev === "selectiongeometry") return "brush";
  if (ev === "mousemove") return "move";
  if (ev === "document_ready") return "init";
  if (cb_obj === src.selected) return "tap";
  if (cb_obj === fig) return "init";          // its first layout (inner_width set)
  return "range";                             // the x or y range set from code
}

function say(el, id, html) {
  if (el) { el.text = html; return; }
  const d = document.getElementById(uid + id);
  if (d) d.innerHTML = html;
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
function fmtDur(ns) {
  if (ns < 0) return "";
  if (ns < 1e3) return ns.toFixed(0) + " ns";
  if (ns < 1e6) return (ns / 1e3).toFixed(1) + " us";
  if (ns < 1e9) return (ns / 1e6).toFixed(2) + " ms";
  return (ns / 1e9).toFixed(3) + " s";
}
function fmtBytes(b) {
  if (!(b >= 0)) return "";
  if (b < 1024) return b + " B";
  if (b < 1048576) return (b / 1024).toFixed(1) + " KiB";
  return (b / 1048576).toFixed(1) + " MiB";
}

function decode() {
  if (S.loading) return S.loading;
  const H = S.H = JSON.parse(store.data.hdr[0]);
  const bin = atob(store.data.blob[0]), n8 = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) n8[i] = bin.charCodeAt(i);
  const inflate = c => new Response(new Blob([n8.subarray(c.zoffset, c.zoffset + c.zlength)]).stream()
    .pipeThrough(new DecompressionStream("deflate"))).arrayBuffer();
  S.loading = Promise.all(H.layout.map(inflate)).then(bufs => {
    // columns as timeline_codec.encode wrote them: integers in byte planes, floats as they are
    const R = {}, n = H.n;
    H.layout.forEach((c, j) => {
      const buf = bufs[j];
      if (c.float) { R[c.name] = new Float64Array(buf); return; }
      const u8 = new Uint8Array(buf), m = c.length / c.size;
      const out = c.signed ? new Int32Array(m) : new Float64Array(m);
      for (let p = 0, f = 1; p < c.size; p++, f *= 256) {
        const o = p * m;
        for (let i = 0; i < m; i++) out[i] += u8[o + i] * f;
      }
      if (c.signed && c.size === 4) for (let i = 0; i < m; i++) out[i] = out[i] | 0;
      R[c.name] = out;
    });
    const C = {row: new Int32Array(n), cat: new Int32Array(n), name: new Int32Array(n), kind: new Uint8Array(n),
               thread: new Int32Array(n), bytes: new Float64Array(n), frame: new Float64Array(n)};
    const F = H.combo_fields, fi = {};
    F.forEach((f, i) => fi[f] = i);
    const start = new Float64Array(n), dur = new Float64Array(n), q = H.quantum_ns, steps = H.dur_steps;
    const srow = new Float64Array(n), last = new Float64Array(16).fill(-1);
    let t = 0, fr = -1;
    for (let i = 0; i < n; i++) {
      const co = H.combos[R.combo[i]];
      C.row[i] = co[fi.row]; C.cat[i] = co[fi.cat]; C.name[i] = co[fi.name]; C.kind[i] = co[fi.kind];
      C.thread[i] = co[fi.thread];
      C.bytes[i] = "bytes" in fi ? (co[fi.bytes] === null ? NaN : co[fi.bytes]) : R.bytes[i];
      C.frame[i] = fr += R.dframe[i];
      t += R.dstart[i] + R.dstart_hi[i] * 4294967296;
      start[i] = t * q / 1e9;
      srow[i] = last[C.kind[i]] += R.dsrc[i] + 1;
      if (H.log_dur) dur[i] = R.dcode[i] === 0 ? -1 : Math.round(Math.pow(2, (R.dcode[i] - 1) / steps) - 1) / 1e9;
      else dur[i] = R.dur_hi[i] === 0xFFFFFFFF ? -1 : (R.dur_lo[i] + R.dur_hi[i] * 4294967296) / 1e9;
    }
    // long spans (process lifetimes, exec runs) are always drawn; the rest is searched by start
    const longIdx = [], shortIdx = [];
    let maxDur = 0;
    for (let i = 0; i < n; i++) {
      const k = C.kind[i];
      if (k === 0 || (k === 1 && dur[i] >= 0)) longIdx.push(i);
      else { shortIdx.push(i); if (dur[i] > maxDur) maxDur = dur[i]; }
    }
    const sIdx = Int32Array.from(shortIdx), sStart = new Float64Array(sIdx.length);
    for (let j = 0; j < sIdx.length; j++) sStart[j] = start[sIdx[j]];
    C.src = srow;
    Object.assign(S, {C, start, dur, longIdx, sIdx, sStart, maxDur, ready: true});
    return S;
  });
  return S.loading;
}

function lower(a, x) { let lo = 0, hi = a.length; while (lo < hi) { const m = (lo + hi) >> 1; if (a[m] < x) lo = m + 1; else hi = m; } return lo; }

// events overlapping [a, b] in rows [r0, r1]: long ones and short ones found by binary search
function visible(a, b, r0, r1, cb) {
  const {C, start, dur, longIdx, sIdx, sStart, maxDur} = S;
  for (const i of longIdx) {
    const r = C.row[i];
    if (r >= r0 && r <= r1 && start[i] <= b && start[i] + Math.max(dur[i], 0) >= a) cb(i);
  }
  const lo = lower(sStart, a - maxDur);
  for (let j = lo; j < sIdx.length && sStart[j] <= b; j++) {
    const i = sIdx[j], r = C.row[i];
    if (r >= r0 && r <= r1 && start[i] + Math.max(dur[i], 0) >= a) cb(i);
  }
}

function geometry(i, px) {
  // [x0, x1, y0, y1] of event i: instants get 2 px; header rows stack lifetime, frames and exec marks
  const {C, start, dur} = S, k = C.kind[i], r = C.row[i];
  const x0 = start[i], d = dur[i];
  const x1 = d > 0 ? Math.max(x0 + d, x0 + px) : x0 + 2 * px;
  if (k === 0 || (k === 1 && d >= 0)) return [x0, x1, r + 0.35, r + 0.65];
  if (k === 4) return [x0, x1, r + 0.7, r + 0.95];
  return [x0 - (d > 0 ? 0 : px), x1 - (d > 0 ? 0 : px), r + 0.1, r + 0.9];
}

function describe(i) {
  const {C, start, dur} = S, H = S.H;
  const k = C.kind[i], name = (H.names[C.name[i]] || "") + (k === 4 && C.frame[i] >= 0 ? " " + C.frame[i] : "");
  return {name, cat: H.cats[C.cat[i]] || "", t: start[i].toFixed(6) + " s",
          dur: fmtDur(dur[i] * 1e9), bytes: fmtBytes(C.bytes[i]), frame: C.frame[i] >= 0 ? String(C.frame[i]) : "",
          thread: H.threads[C.thread[i]] || "", kind: H.kinds[C.kind[i]], row: C.src[i]};
}

function render() {
  if (!S.ready) { decode().then(render); return; }
  const t0 = performance.now(), H = S.H, a = xr.start, b = xr.end;
  const W = Math.max(fig.inner_width || fig.width || 800, 100), px = (b - a) / W;
  const r0 = Math.max(0, Math.floor(Math.min(yr.start, yr.end)) - 1);
  const r1 = Math.ceil(Math.max(yr.start, yr.end)) + 1;
  const hits = [], kinds = {};
  visible(a, b, r0, r1, i => { hits.push(i); const k = H.kinds[S.C.kind[i]]; kinds[k] = (kinds[k] || 0) + 1; });
  const out = {x0: [], x1: [], y0: [], y1: [], color: [], alpha: [], name: [], cat: [], t: [], dur: [], bytes: [],
               frame: [], thread: [], n: [], ev: []};
  const push = (g, color, alpha, d, n, ev) => {
    out.x0.push(g[0]); out.x1.push(g[1]); out.y0.push(g[2]); out.y1.push(g[3]); out.color.push(color);
    out.alpha.push(alpha); out.name.push(d.name); out.cat.push(d.cat); out.t.push(d.t); out.dur.push(d.dur);
    out.bytes.push(d.bytes); out.frame.push(d.frame); out.thread.push(d.thread); out.n.push(n); out.ev.push(ev);
  };
  const C = S.C;
  let aggregated = false;
  if (hits.length <= LIMIT) {
    for (const i of hits) {
      const k = C.kind[i];
      push(geometry(i, px), H.colors[C.cat[i]], k === 4 ? (C.frame[i] % 2 ? 0.35 : 0.7) : 0.85, describe(i), 1, i);
    }
  } else {
    aggregated = true;
    const NB = Math.max(50, Math.floor(W / 3)), bw = (b - a) / NB, cells = new Map();
    for (const i of hits) {
      const k = C.kind[i];
      if (k === 0 || (k === 1 && S.dur[i] >= 0)) { push(geometry(i, px), H.colors[C.cat[i]], 0.85, describe(i), 1, i); continue; }
      const s = Math.max(0, Math.floor((S.start[i] - a) / bw));
      const e = Math.min(NB - 1, Math.floor((S.start[i] + Math.max(S.dur[i], 0) - a) / bw), s + 64);
      const band = k === 4 ? 1 : 0;
      for (let bin = s; bin <= e; bin++) {
        const key = (C.row[i] * 2 + band) * NB + bin;
        let c = cells.get(key);
        if (!c) cells.set(key, c = {n: 0, cat: C.cat[i], mixed: false, busy: 0});
        c.n++; if (c.cat !== C.cat[i]) c.mixed = true;
        c.busy += Math.max(S.dur[i], 0);
      }
    }
    let maxn = 1;
    for (const c of cells.values()) maxn = Math.max(maxn, c.n);
    for (const [key, c] of cells) {
      const bin = key % NB, rb = (key - bin) / NB, row = rb >> 1, band = rb & 1;
      const x0 = a + bin * bw, g = band ? [x0, x0 + bw, row + 0.7, row + 0.95] : [x0, x0 + bw, row + 0.1, row + 0.9];
      const d = {name: c.n + " events in " + fmtDur(bw * 1e9), cat: H.cats[c.cat] + (c.mixed ? " and others" : ""),
                 t: x0.toFixed(6) + " s", dur: c.busy > 0 ? fmtDur(c.busy * 1e9) + " busy" : "", bytes: "", frame: "",
                 thread: "", kind: "", row: -1};
      push(g, H.colors[c.cat], 0.25 + 0.75 * Math.log1p(c.n) / Math.log1p(maxn), d, c.n, -1);
    }
  }
  src.data = out;
  S.shown = {a, b, n: hits.length, kinds, aggregated, glyphs: out.x0.length, ms: performance.now() - t0, renders: (S.shown ? S.shown.renders : 0) + 1};
  say(readout, "-readout", `${hits.length} events in view (${a.toFixed(6)} s to ${b.toFixed(6)} s)` +
      (aggregated ? ": aggregated in time bins, zoom in for single calls" : ""));
}

function listing(idx, title) {
  const H = S.H, C = S.C, counts = {};
  for (const i of idx) { const c = H.cats[C.cat[i]]; counts[c] = (counts[c] || 0) + 1; }
  let html = `<b>${esc(title)}</b>: ${idx.length} events` +
    (Object.keys(counts).length ? " (" + Object.entries(counts).map(([c, n]) => esc(c) + " " + n).join(", ") + ")" : "");
  html += "<table class='tl-list'><tr><th>start</th><th>duration</th><th>call</th><th>category</th><th>bytes</th><th>frame</th><th>pid/tid</th></tr>";
  for (const i of idx.slice(0, 200)) {
    const d = describe(i);
    html += `<tr><td>${d.t}</td><td>${d.dur}</td><td>${esc(d.name)}</td><td>${esc(d.cat)}</td><td>${d.bytes}</td><td>${d.frame}</td><td>${esc(d.thread)}</td></tr>`;
  }
  if (idx.length > 200) html += `<tr><td colspan=7>... ${idx.length - 200} more</td></tr>`;
  return html + "</table>";
}

function choose(idx, title) {
  const C = S.C, H = S.H, cap = idx.slice(0, 100000);
  sel.data = {kind: cap.map(i => H.kinds[C.kind[i]]), row: cap.map(i => C.src[i]), event: cap};
  say(info, "-info", listing(idx, title) + (idx.length > cap.length ? "<p>(the first 100000 are sent back)</p>" : ""));
}

function brush(g) {
  if (!S.ready) return;
  const a = Math.min(g.x0, g.x1), b = Math.max(g.x0, g.x1);
  const r0 = Math.floor(Math.min(g.y0, g.y1)), r1 = Math.floor(Math.max(g.y0, g.y1));
  const idx = [];
  visible(a, b, r0, r1, i => { const k = S.C.kind[i]; if (k !== 0 && !(k === 1 && S.dur[i] >= 0)) idx.push(i); });
  idx.sort((p, q) => S.start[p] - S.start[q]);
  choose(idx, `selected ${a.toFixed(6)} s to ${b.toFixed(6)} s`);
}

function zoomTo(a, b) {
  const pad = Math.max((b - a) * 0.05, 1e-6);
  xr.setv({start: a - pad, end: b + pad});
}

if (mode === "init") {
  if (S.inited) { render(); return; }
  S.inited = true;
  decode().then(() => {
    render();
    const api = window.ebpftoolkitTimeline = window.ebpftoolkitTimeline || {};
    // for tests and scripts: the range, what is drawn, page coordinates of a point of the plot
    api[uid] = {zoom: zoomTo, range: () => [xr.start, xr.end], shown: () => S.shown, t0_ns: S.H.t0_ns,
                view: () => Bokeh.index.get_one(fig),
                pixel: (x, y) => {
                  const v = Bokeh.index.get_one(fig), r = v.el.getBoundingClientRect();
                  return [r.left + v.frame.x_scale.compute(x), r.top + v.frame.y_scale.compute(y)];
                },
                info: () => { const d = info ? null : document.getElementById(uid + "-info"); return d ? d.innerText : info.text; },
                brush: (a, b) => brush({x0: a, x1: b, y0: -1, y1: 1e9})};
    api.last = api[uid];
    document.querySelectorAll(".tl-zoom").forEach(el => el.addEventListener("click", () => {
      const t0 = S.H.t0_ns;
      zoomTo((Number(el.dataset.startNs) - t0) / 1e9, (Number(el.dataset.endNs) - t0) / 1e9);
    }));
  });
} else if (mode === "range") {
  if (!S.queued) { S.queued = true; requestAnimationFrame(() => { S.queued = false; render(); }); }
} else if (mode === "brush") {
  if (cb_obj.final !== false) brush(cb_obj.geometry);
} else if (mode === "tap") {
  const k = src.selected.indices;
  if (k.length) {
    const evs = k.map(j => src.data.ev[j]).filter(i => i >= 0);
    if (evs.length) choose(evs, "clicked");
  }
} else if (mode === "move") {
  if (S.ready) say(readout, "-readout", `cursor ${cb_obj.x.toFixed(6)} s` + (S.shown ? ` | ${S.shown.n} events in view` +
      (S.shown.aggregated ? " (aggregated)" : "") : ""));
}

// rnn-zoo live page: one EventSource for the table and fleet figures, one for the selected device's chart.
// Every string from a publisher (device ids, labels, error reasons) is set with textContent, never as markup.
// The table is virtualised: only the rows in view exist in the DOM, so 10,000 devices stay responsive.
"use strict";

(function () {
  const ROW_H = 26;
  const OVERSCAN = 8;
  const token = new URLSearchParams(location.search).get("token") || "";
  const q = (extra) => {
    const p = new URLSearchParams(extra || {});
    if (token) p.set("token", token);
    const s = p.toString();
    return s ? "?" + s : "";
  };
  const $ = (id) => document.getElementById(id);

  // id -> {id, model, step, label, conf, out, seen, errors, lastError}
  const devices = new Map();
  let models = {};
  let ring = 300;
  let order = []; // ids in view order (filtered, sorted)
  let sortKey = "id";
  let sortDir = 1;
  let filter = "";
  let selected = null;
  let orderDirty = true;
  let renderQueued = false;
  const pool = []; // row elements in use
  // What the benchmark and the tests read.
  // lastRenderMs: the last redraw; lastOrderRenderMs: the last one that also filtered and sorted every row.
  const stats = { rowsEvents: 0, lastApplyMs: 0, lastRenderMs: 0, lastOrderRenderMs: 0, orderRenders: 0,
    rendered: 0, devices: 0, points: 0 };
  window.__live = { stats, devices, order: () => order };

  const tbody = $("tbody");
  const spacer = $("spacer");

  function setStatus(text, cls) {
    const el = $("status");
    el.textContent = text;
    el.className = "status " + (cls || "");
  }

  // -- the fleet stream ------------------------------------------------------------------------------------
  function connect() {
    const es = new EventSource("events" + q());
    es.addEventListener("hello", (e) => {
      const msg = JSON.parse(e.data);
      models = msg.models || {};
      ring = msg.ring || ring;
    });
    es.addEventListener("rows", (e) => {
      const t0 = performance.now();
      const rows = JSON.parse(e.data);
      for (const r of rows) {
        const [id, model, step, label, conf, out, seen, errors, lastError] = r;
        const known = devices.get(id);
        if (!known) orderDirty = true;
        else if (sortKey !== "id") orderDirty = true;
        devices.set(id, { id, model, step, label, conf, out, seen, errors, lastError });
      }
      stats.rowsEvents += 1;
      stats.devices = devices.size;
      stats.lastApplyMs = performance.now() - t0;
      queueRender();
    });
    es.addEventListener("fleet", (e) => showFleet(JSON.parse(e.data)));
    es.onopen = () => setStatus("live", "live");
    es.onerror = () => setStatus("reconnecting…", "down");
  }

  function fmtSeconds(s) {
    if (s === null || s === undefined) return "–";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(1) + " ms";
    return s.toFixed(2) + " s";
  }

  function fmtCounts(obj) {
    const parts = Object.entries(obj || {}).filter(([, n]) => n > 0);
    if (!parts.length) return "none";
    return parts.map(([k, n]) => k + ": " + n).join("\n");
  }

  function showFleet(f) {
    $("f-rate").textContent = f.readings_per_s.toFixed(1);
    $("f-readings").textContent = String(f.readings);
    $("f-devices").textContent = String(f.devices);
    $("f-p50").textContent = fmtSeconds(f.latency_p50_s);
    $("f-p99").textContent = fmtSeconds(f.latency_p99_s);
    $("f-evictions").textContent = String(Object.values(f.evictions || {}).reduce((a, b) => a + b, 0));
    $("f-errors").textContent = fmtCounts(f.errors);
    if (f.connected === false) setStatus("service: broker down", "down");
    else setStatus("live", "live");
  }

  // -- the table ------------------------------------------------------------------------------------------
  const keyOf = {
    id: (d) => d.id,
    model: (d) => d.model || "",
    step: (d) => d.step,
    label: (d) => (d.label !== null ? d.label : String(d.out)),
    conf: (d) => (d.conf === null ? -1 : d.conf),
    seen: (d) => d.seen,
    errors: (d) => d.errors,
  };

  function rebuildOrder() {
    const f = filter;
    const list = [];
    for (const d of devices.values()) {
      if (f && !(d.id.toLowerCase().includes(f) || (d.model || "").toLowerCase().includes(f) ||
        (d.label || "").toLowerCase().includes(f))) continue;
      list.push(d);
    }
    const k = keyOf[sortKey];
    list.sort((a, b) => {
      const x = k(a), y = k(b);
      return (x < y ? -1 : x > y ? 1 : 0) * sortDir;
    });
    order = list.map((d) => d.id);
    orderDirty = false;
    $("count").textContent = order.length === devices.size ? devices.size + " devices" :
      order.length + " of " + devices.size + " devices";
    spacer.style.height = order.length * ROW_H + "px";
  }

  function queueRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(render);
  }

  function makeRow() {
    const row = document.createElement("div");
    row.className = "row";
    const cells = [];
    for (let i = 0; i < 7; i++) {
      const c = document.createElement("span");
      if (i === 2 || i === 4 || i === 5 || i === 6) c.className = "num";
      row.appendChild(c);
      cells.push(c);
    }
    const bar = document.createElement("span");
    bar.className = "bar";
    const confText = document.createTextNode("");
    cells[4].appendChild(bar);
    cells[4].appendChild(confText);
    row._cells = cells;
    row._bar = bar;
    row._confText = confText;
    row.addEventListener("click", () => select(row._id));
    tbody.appendChild(row);
    return row;
  }

  function fillRow(row, d, now) {
    const c = row._cells;
    row._id = d.id;
    c[0].textContent = d.id;
    c[0].title = d.id;
    c[1].textContent = d.model || "–";
    c[2].textContent = String(d.step);
    c[3].textContent = d.label !== null ? d.label : d.out ? d.out.join(", ") : "–";
    if (d.conf !== null && d.conf !== undefined) {
      row._bar.style.width = Math.round(d.conf * 40) + "px";
      row._confText.textContent = d.conf.toFixed(2);
    } else {
      row._bar.style.width = "0px";
      row._confText.textContent = "–";
    }
    const ago = Math.max(0, now - d.seen);
    c[5].textContent = d.seen ? (ago < 60 ? ago.toFixed(1) + " s" : Math.round(ago / 60) + " min") : "–";
    c[6].textContent = d.errors ? d.errors + (d.lastError ? " · " + d.lastError : "") : "0";
    c[6].title = d.lastError || "";
    c[6].className = d.errors ? "num bad" : "num";
    row.classList.toggle("selected", d.id === selected);
  }

  function render() {
    renderQueued = false;
    const t0 = performance.now();
    const reorder = orderDirty;
    if (reorder) rebuildOrder();
    const top = tbody.scrollTop;
    const height = tbody.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(order.length, Math.ceil((top + height) / ROW_H) + OVERSCAN);
    const need = last - first;
    while (pool.length < need) pool.push(makeRow());
    const now = Date.now() / 1000;
    for (let i = 0; i < pool.length; i++) {
      const row = pool[i];
      if (i < need) {
        const d = devices.get(order[first + i]);
        row.style.display = "";
        row.style.transform = "translateY(" + (first + i) * ROW_H + "px)";
        fillRow(row, d, now);
      } else {
        row.style.display = "none";
        row._id = null;
      }
    }
    stats.rendered = need;
    stats.lastRenderMs = performance.now() - t0;
    if (reorder) {
      stats.lastOrderRenderMs = stats.lastRenderMs;
      stats.orderRenders += 1;
    }
  }

  tbody.addEventListener("scroll", queueRender, { passive: true });
  window.addEventListener("resize", queueRender);
  setInterval(queueRender, 1000); // "last seen" ages even when nothing arrives
  $("filter").addEventListener("input", (e) => {
    filter = e.target.value.trim().toLowerCase();
    orderDirty = true;
    tbody.scrollTop = 0;
    queueRender();
  });
  for (const h of $("thead").children) {
    h.addEventListener("click", () => {
      const k = h.dataset.key;
      if (sortKey === k) sortDir = -sortDir;
      else { sortKey = k; sortDir = k === "seen" || k === "errors" || k === "conf" ? -1 : 1; }
      for (const o of $("thead").children) o.classList.toggle("sorted", o.dataset.key === sortKey);
      orderDirty = true;
      queueRender();
    });
  }
  $("thead").children[0].classList.add("sorted");

  // -- the selected device's chart ---------------------------------------------------------------------------
  let deviceStream = null;
  let chart = null;
  let series = null; // [[times], [s1], [s2], ...]

  function select(id) {
    if (id === null || id === undefined) return;
    selected = id;
    queueRender();
    if (deviceStream) deviceStream.close();
    if (chart) { chart.destroy(); chart = null; }
    $("detail-title").textContent = id;
    $("detail-note").textContent = "waiting for its outputs…";
    deviceStream = new EventSource("events/device" + q({ id }));
    deviceStream.addEventListener("device", (e) => {
      const msg = JSON.parse(e.data);
      const names = models[msg.model];
      $("detail-note").textContent = (msg.model || "") + (names ? " · class probabilities" : " · outputs and readings") +
        " · last " + ring + " steps";
    });
    deviceStream.addEventListener("points", (e) => addPoints(JSON.parse(e.data)));
  }

  const COLORS = ["#4fb3ff", "#ffb454", "#7ee787", "#ff6b6b", "#d2a8ff", "#f778ba", "#79c0ff", "#e3b341", "#56d364"];

  function makeChart(first) {
    const d = devices.get(selected);
    const names = d ? models[d.model] : null;
    const nOut = first[2].length;
    const nRead = !names && first[3] ? Math.min(first[3].length, nOut) : 0;
    const s = [{ label: "step" }];
    for (let i = 0; i < nOut; i++) {
      s.push({ label: names ? names[i] : "output " + i, stroke: COLORS[i % COLORS.length], width: 1.5 });
    }
    for (let i = 0; i < nRead; i++) {
      s.push({ label: "reading " + i, stroke: COLORS[(i + nOut) % COLORS.length], dash: [4, 4], width: 1 });
    }
    series = Array.from({ length: 1 + nOut + nRead }, () => []);
    const el = $("chart");
    const width = Math.max(300, el.clientWidth || 500);
    chart = new uPlot({
      width, height: 300, series: s,
      scales: names ? { x: { time: false }, y: { range: [0, 1] } } : { x: { time: false } },
      axes: [{ stroke: "#8592a0", grid: { stroke: "#2a3540" } }, { stroke: "#8592a0", grid: { stroke: "#2a3540" } }],
    }, series, el);
  }

  function addPoints(points) {
    if (!points.length) return;
    if (!chart) makeChart(points[0]);
    const nOut = chart.series.length - 1;
    for (const [step, , out, reading] of points) {
      // x is the device's step; a step that goes back is a reset: the chart starts the new sequence.
      if (series[0].length && step <= series[0][series[0].length - 1]) for (const s of series) s.length = 0;
      series[0].push(step);
      let j = 1;
      for (let i = 0; i < out.length && j <= nOut; i++) series[j++].push(out[i]);
      for (let i = 0; j <= nOut; i++) series[j++].push(reading ? reading[i] : null);
    }
    while (series[0].length > ring) for (const s of series) s.shift();
    stats.points += points.length;
    chart.setData(series);
  }

  connect();
})();

"""The position viewer page: one self-contained HTML file (inline CSS, vanilla JS, SVG).

The page reads its data from ``<script type="application/json" id="viewer-data">`` and
fetches nothing. ``__TITLE__`` and ``__DATA__`` are replaced by :mod:`longpos.viz.positions`
(the title HTML-escaped, the data JSON with ``<`` escaped so it cannot close the script).
"""

TEMPLATE = r"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy"
      content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>__TITLE__</title>
<style>
:root { --fg: #1d2329; --muted: #66707a; --line: #d8dde2; --bg: #fff; --panel: #f5f7f9;
        --pt: #3f6fb5; --sel: #d62728; --nb: #ff9f1c; --value: #e07b00; --key: #2ca02c;
        --needle: #f2c14e; --distractor: #9a9a9a; --dvalue: #5f5f5f; --query: #8e44ad; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 10px 14px 6px; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.1rem; margin: 0 0 2px; }
.meta { color: var(--muted); font-size: 0.85rem; word-break: break-word; }
main { display: flex; flex-wrap: wrap; gap: 10px; padding: 10px 14px; }
.controls { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; width: 100%; }
.controls label { display: flex; align-items: center; gap: 6px; font-size: 0.9rem; }
select, button { font: inherit; min-height: 36px; padding: 4px 8px; border: 1px solid var(--line);
                 border-radius: 6px; background: var(--bg); color: var(--fg); }
button[aria-pressed="true"] { background: var(--fg); color: var(--bg); }
#plot-wrap { flex: 1 1 560px; min-width: 0; }
#plot { width: 100%; display: block; touch-action: manipulation; user-select: none; }
#side { flex: 1 1 280px; min-width: 0; display: flex; flex-direction: column; gap: 8px; }
.panel { background: var(--panel); border-radius: 8px; padding: 8px 10px; font-size: 0.88rem; }
#info b { font-family: ui-monospace, Menlo, Consolas, monospace; }
#tokens { width: 100%; max-height: 34vh; overflow: auto; padding: 8px; border: 1px solid var(--line);
          border-radius: 8px; font: 13px/1.9 ui-monospace, Menlo, Consolas, monospace;
          white-space: normal; word-break: break-all; }
.tok { cursor: pointer; padding: 1px 0; border-radius: 3px; border-bottom: 2px solid transparent; }
.tok.sep { margin-right: 0.45em; display: inline-block; line-height: 1.5; white-space: nowrap; }
.tok:hover { background: #e6eefb; }
.tok.m-value { background: #fde3c3; border-bottom-color: var(--value); }
.tok.m-key { background: #d9f0d9; border-bottom-color: var(--key); }
.tok.m-needle { background: #fbf0cf; border-bottom-color: var(--needle); }
.tok.m-distractor { background: #ececec; border-bottom-color: var(--distractor); }
.tok.m-distractor_value { background: #d6d6d6; border-bottom-color: var(--dvalue); }
.tok.m-query { background: #eadcf3; border-bottom-color: var(--query); }
.tok.nb { outline: 2px solid var(--nb); }
.tok.sel { background: var(--sel) !important; color: #fff; outline: 2px solid var(--sel); }
.legend { display: flex; flex-wrap: wrap; gap: 4px 12px; font-size: 0.8rem; color: var(--muted); }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 50%; margin-right: 4px;
      vertical-align: -1px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
.pt { fill: var(--pt); fill-opacity: 0.75; cursor: pointer; }
.pt.m-value { fill: var(--value); fill-opacity: 1; }
.pt.m-key { fill: var(--key); fill-opacity: 1; }
.pt.m-needle { fill: var(--needle); fill-opacity: 1; }
.pt.m-distractor { fill: var(--distractor); }
.pt.m-distractor_value { fill: var(--dvalue); fill-opacity: 1; }
.pt.m-query { fill: var(--query); fill-opacity: 1; }
.pt.clip { fill-opacity: 0; stroke: currentColor; stroke-width: 1; color: var(--pt); }
.pt.nb { stroke: var(--nb); stroke-width: 2; }
.pt.sel { fill: var(--sel); fill-opacity: 1; stroke: #000; stroke-width: 1.5; }
.axis { stroke: #9aa3ab; stroke-width: 1; }
.grid { stroke: #eef0f2; stroke-width: 1; }
.ref { stroke: #b9c0c7; stroke-dasharray: 4 4; stroke-width: 1; }
.fit { stroke: #c0392b; stroke-width: 1.5; stroke-opacity: 0.7; }
.qline { stroke: var(--query); stroke-width: 1.5; stroke-dasharray: 2 3; }
.qlabel { fill: var(--query); font-weight: 600; }
#scale { font-size: 0.82rem; color: var(--muted); }
@media (max-width: 600px) {
  body { font-size: 14px; }
  header, main { padding-left: 8px; padding-right: 8px; }
  #tokens { max-height: 28vh; }
}
</style>
</head>
<body>
<header>
  <h1 id="title">__TITLE__</h1>
  <div class="meta" id="meta"></div>
</header>
<main>
  <div class="controls">
    <label>Layer <select id="layer" data-testid="layer"></select></label>
    <label>Head <select id="head" data-testid="head"></select></label>
    <button id="focus" type="button" aria-pressed="false" data-testid="focus"
            title="Zoom the position axis to the inliers (1.5 x IQR rule)">Focus</button>
    <label title="Least-squares line through the points of this head; its slope is how far the
position moves per token (1: like RoPE's index; 0: position does not grow with distance)"><input
type="checkbox" id="ref" checked> trend line</label>
    <span class="meta" id="yrange" data-testid="yrange"></span>
  </div>
  <div id="plot-wrap">
    <svg id="plot" data-testid="plot" role="img" aria-label="token index against assigned position"></svg>
    <div class="legend" id="legend"></div>
  </div>
  <div id="side">
    <div class="panel" id="stats"></div>
    <div class="panel" id="scale" data-testid="scale"></div>
    <div class="panel" id="info" data-testid="info">Click a token or a point.</div>
  </div>
  <div id="tokens" data-testid="tokens" aria-label="context tokens"></div>
</main>
<script type="application/json" id="viewer-data">__DATA__</script>
<script>
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("viewer-data").textContent);
  var T = D.tokens.length;
  var ROLES = ["value", "key", "distractor_value", "needle", "distractor", "query"];
  var COLORS = {value: "--value", key: "--key", distractor_value: "--dvalue", needle: "--needle",
                distractor: "--distractor", query: "--query"};
  var role = new Array(T).fill("");
  ROLES.slice().reverse().forEach(function (r) {  // the first role in ROLES wins
    (D.marks[r] || []).forEach(function (i) { if (i >= 0 && i < T) role[i] = r; });
  });
  var state = {layer: D.default_layer, head: 0, focus: false, ref: true, sel: null};
  var $ = function (id) { return document.getElementById(id); };
  var tokEls = [];

  function esc(s) {
    return String(s).replace(/[&<>"]/g, function (c) {
      return {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c];
    });
  }
  function shown(s) {  // visible form of a token in the strip
    return s.replace(/ /g, "\u00a0").replace(/\n/g, "\u21b5").replace(/\t/g, "\u2192") || "\u2205";
  }
  function fmt(v) {
    var a = Math.abs(v);
    if (a !== 0 && (a >= 1e5 || a < 1e-3)) return v.toExponential(2);
    return (Math.round(v * 1000) / 1000).toString();
  }
  function values() {
    var L = D.layers[state.layer];
    if (!L.heads) { var v = new Array(T); for (var i = 0; i < T; i++) v[i] = i; return v; }
    return L.heads[state.head];
  }
  function quantile(sorted, q) {
    var p = (sorted.length - 1) * q, lo = Math.floor(p), hi = Math.ceil(p);
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (p - lo);
  }
  function yRange(v) {
    var s = v.slice().sort(function (a, b) { return a - b; });
    var lo = s[0], hi = s[s.length - 1];
    if (state.focus) {
      var q1 = quantile(s, 0.25), q3 = quantile(s, 0.75), iqr = q3 - q1;
      lo = Math.max(lo, q1 - 1.5 * iqr); hi = Math.min(hi, q3 + 1.5 * iqr);
      // tighten to the inlier points themselves
      var ins = s.filter(function (x) { return x >= lo && x <= hi; });
      if (ins.length) { lo = ins[0]; hi = ins[ins.length - 1]; }
    }
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    var pad = 0.05 * (hi - lo);
    return [lo - pad, hi + pad];
  }
  function ticks(lo, hi, n) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / n)));
    var err = (hi - lo) / n / step;
    if (err >= 7.5) step *= 10; else if (err >= 3.5) step *= 5; else if (err >= 1.5) step *= 2;
    var out = [];
    for (var k = Math.ceil(lo / step); k * step <= hi + 1e-9 * step; k++) {
      out.push(k === 0 ? 0 : k * step);
    }
    return out;
  }

  function fitLine(v) {  // least squares y = a + b x over all tokens
    var n = v.length, mx = (n - 1) / 2, my = 0, sxy = 0, sxx = 0;
    for (var i = 0; i < n; i++) my += v[i];
    my /= n;
    for (var j = 0; j < n; j++) { sxy += (j - mx) * (v[j] - my); sxx += (j - mx) * (j - mx); }
    var b = sxx > 0 ? sxy / sxx : 0;
    return {a: my - b * mx, b: b};
  }
  function queryIndex() {  // the last query token: where the answer is predicted from
    var q = D.marks.query || [];
    return q.length ? q[q.length - 1] : null;
  }

  function buildControls() {
    var ls = $("layer");
    D.layers.forEach(function (L, i) {
      var o = document.createElement("option");
      o.value = i;
      o.textContent = "L" + L.index + " \u00b7 " + L.technique + (L.heads ? "" : " (index)");
      ls.appendChild(o);
    });
    ls.value = state.layer;
    ls.addEventListener("change", function () {
      state.layer = +ls.value; state.head = 0; buildHeads(); render();
    });
    $("head").addEventListener("change", function () { state.head = +$("head").value; render(); });
    $("focus").addEventListener("click", function () {
      state.focus = !state.focus;
      $("focus").setAttribute("aria-pressed", state.focus ? "true" : "false");
      render();
    });
    $("ref").addEventListener("change", function () { state.ref = $("ref").checked; render(); });
    buildHeads();
    var lg = $("legend");
    var items = [["token", "--pt"]];
    ROLES.forEach(function (r) { if ((D.marks[r] || []).length) items.push([r, COLORS[r]]); });
    items.push(["selected", "--sel"]);
    lg.innerHTML = items.map(function (it) {
      return '<span><span class="sw" style="background:var(' + it[1] + ')"></span>' +
             esc(it[0].replace("_", " ")) + "</span>";
    }).join("") + "<span>hollow: outside the focus range</span>";
    $("meta").textContent = D.subtitle || "";
    $("scale").innerHTML = "<b>Position scale.</b> y is the position a layer rotates queries and " +
      "keys by, in token units: RoPE and NoPE layers use the token index (0 \u2026 " + (T - 1) +
      "); RePo's learned positions are on the same scale (two tokens whose positions differ by 1 " +
      "are rotated as if one token apart), so a narrow range means RePo packs the context " +
      "closer than its index." + (D.train_length ? " Training length: " + D.train_length +
      " tokens." : "") + " The red line is the least-squares trend (its slope: position per " +
      "token); the dashed grey y = x line (the index) is drawn when it fits the view." +
      (queryIndex() !== null ? " The purple line marks the query token (#" + queryIndex() +
      "), where the answer is predicted." : "");
  }
  function buildHeads() {
    var hs = $("head"), L = D.layers[state.layer];
    hs.innerHTML = "";
    var n = L.heads ? L.heads.length : 1;
    for (var h = 0; h < n; h++) {
      var o = document.createElement("option");
      o.value = h;
      o.textContent = L.heads ? (L.head_label || "head") + " " + h : "all heads (integer index)";
      hs.appendChild(o);
    }
    hs.disabled = !L.heads || n < 2;
    hs.value = state.head;
  }

  function buildTokens() {
    var box = $("tokens"), html = [];
    for (var i = 0; i < T; i++) {
      var cls = "tok" + (D.separate_tokens ? " sep" : "") + (role[i] ? " m-" + role[i] : "");
      html.push('<span class="' + cls + '" data-i="' + i + '" title="#' + i +
                (role[i] ? " (" + role[i] + ")" : "") + '">' + esc(shown(D.tokens[i])) + "</span>");
      if (D.tokens[i].indexOf("\n") >= 0) html.push("<br>");  // keep the text's lines
    }
    box.innerHTML = html.join("");
    tokEls = box.querySelectorAll(".tok");
    box.addEventListener("click", function (e) {
      var t = e.target.closest(".tok");
      if (t) select(+t.getAttribute("data-i"), false);
    });
  }

  function render() {
    var svg = $("plot"), v = values();
    var W = Math.max(280, svg.parentNode.clientWidth || 600);
    var H = Math.round(Math.max(240, Math.min(480, window.innerHeight * 0.5, W * 0.75)));
    var m = {l: 64, r: 12, t: 10, b: 40}, pw = W - m.l - m.r, ph = H - m.t - m.b;
    var yr = yRange(v), x0 = -0.5, x1 = Math.max(T - 0.5, 0.5);
    var sx = function (x) { return m.l + (x - x0) / (x1 - x0) * pw; };
    var sy = function (y) { return m.t + (1 - (y - yr[0]) / (yr[1] - yr[0])) * ph; };
    var out = [];
    out.push('<defs><clipPath id="pa"><rect x="' + m.l + '" y="' + m.t + '" width="' + pw +
             '" height="' + ph + '"/></clipPath></defs>');
    ticks(yr[0], yr[1], 6).forEach(function (t) {
      out.push('<line class="grid" x1="' + m.l + '" x2="' + (m.l + pw) + '" y1="' + sy(t) +
               '" y2="' + sy(t) + '"/><text x="' + (m.l - 6) + '" y="' + (sy(t) + 4) +
               '" text-anchor="end">' + fmt(t) + "</text>");
    });
    ticks(0, Math.max(T - 1, 1), Math.max(2, Math.floor(pw / 70))).forEach(function (t) {
      out.push('<line class="axis" x1="' + sx(t) + '" x2="' + sx(t) + '" y1="' + (m.t + ph) +
               '" y2="' + (m.t + ph + 4) + '"/><text x="' + sx(t) + '" y="' + (m.t + ph + 16) +
               '" text-anchor="middle">' + fmt(t) + "</text>");
    });
    out.push('<line class="axis" x1="' + m.l + '" x2="' + (m.l + pw) + '" y1="' + (m.t + ph) +
             '" y2="' + (m.t + ph) + '"/><line class="axis" x1="' + m.l + '" x2="' + m.l +
             '" y1="' + m.t + '" y2="' + (m.t + ph) + '"/>');
    out.push('<text x="' + (m.l + pw / 2) + '" y="' + (H - 6) + '" text-anchor="middle">token index</text>');
    out.push('<text transform="translate(12,' + (m.t + ph / 2) + ') rotate(-90)" text-anchor="middle">' +
             "assigned position</text>");
    var fit = fitLine(v);
    if (state.ref) {
      if (yr[1] - yr[0] >= 0.5 * (x1 - x0)) {  // y = x is only informative at the index's scale
        out.push('<line class="ref" clip-path="url(#pa)" x1="' + sx(x0) + '" y1="' + sy(x0) +
                 '" x2="' + sx(x1) + '" y2="' + sy(x1) + '"/>');
      }
      out.push('<line class="fit" data-testid="fit" clip-path="url(#pa)" x1="' + sx(x0) +
               '" y1="' + sy(fit.a + fit.b * x0) + '" x2="' + sx(x1) + '" y2="' +
               sy(fit.a + fit.b * x1) + '"><title>trend: ' + fmt(fit.a) + " + " + fmt(fit.b) +
               " \u00d7 index</title></line>");
    }
    var qi = queryIndex();
    if (qi !== null) {
      out.push('<line class="qline" data-testid="query-line" x1="' + sx(qi) + '" x2="' + sx(qi) +
               '" y1="' + m.t + '" y2="' + (m.t + ph) + '"/><text class="qlabel" x="' +
               (sx(qi) - 4) + '" y="' + (m.t + 12) + '" text-anchor="end">query</text>');
    }
    var r = T > 1500 ? 1.8 : T > 400 ? 2.6 : 3.6, pts = [], last = [];
    for (var i = 0; i < T; i++) {
      var y = v[i], clip = y < yr[0] || y > yr[1];
      var cy = sy(Math.min(Math.max(y, yr[0]), yr[1]));
      var near = state.sel !== null && Math.abs(i - state.sel) <= 2;
      var cls = "pt" + (role[i] ? " m-" + role[i] : "") + (clip ? " clip" : "") +
                (i === state.sel ? " sel" : near ? " nb" : "");
      var s = '<circle class="' + cls + '" data-i="' + i + '" cx="' + sx(i).toFixed(2) +
              '" cy="' + cy.toFixed(2) + '" r="' + (i === state.sel ? r * 2 : near ? r * 1.4 : r) +
              '"><title>#' + i + " " + esc(JSON.stringify(D.tokens[i])) + " \u2192 " + fmt(y) +
              "</title></circle>";
      (near || role[i] ? last : pts).push(s);  // marked and selected points on top
    }
    out.push(pts.join(""), last.join(""));
    svg.setAttribute("viewBox", "0 0 " + W + " " + H);
    svg.setAttribute("height", H);
    svg.setAttribute("data-layer", D.layers[state.layer].index);
    svg.setAttribute("data-head", state.head);
    svg.setAttribute("data-ymin", yr[0]);
    svg.setAttribute("data-ymax", yr[1]);
    svg.innerHTML = out.join("");
    $("yrange").textContent = "y \u2208 [" + fmt(yr[0]) + ", " + fmt(yr[1]) + "]" +
                              (state.focus ? " (focus)" : "");
    var s = v.slice().sort(function (a, b) { return a - b; });
    var L = D.layers[state.layer];
    $("stats").innerHTML = "<b>L" + L.index + " \u00b7 " + esc(L.technique) + "</b>" +
      (L.heads ? ", " + esc(L.head_label || "head") + " " + state.head : ", integer index") +
      "<br>span (max \u2212 min): " + fmt(s[s.length - 1] - s[0]) +
      "<br>min " + fmt(s[0]) + ", median " + fmt(quantile(s, 0.5)) + ", max " + fmt(s[s.length - 1]) +
      "<br>trend: " + fmt(fit.b) + " position per token (index: 1)" +
      "<br>" + T + " tokens";
    showInfo();
  }

  function showInfo() {
    var box = $("info");
    if (state.sel === null) { box.textContent = "Click a token or a point."; return; }
    var v = values(), i = state.sel, rows = [];
    for (var j = Math.max(0, i - 2); j <= Math.min(T - 1, i + 2); j++) {
      rows.push((j === i ? "\u25b6 " : "\u2003 ") + "#" + j + " <b>" + esc(JSON.stringify(D.tokens[j])) +
                "</b> \u2192 " + fmt(v[j]) + (role[j] ? " <i>(" + role[j] + ")</i>" : ""));
    }
    box.innerHTML = rows.join("<br>");
  }

  function select(i, scroll) {
    if (i === state.sel) i = null;
    var box = $("tokens");
    box.querySelectorAll(".tok.sel, .tok.nb").forEach(function (e) { e.classList.remove("sel", "nb"); });
    state.sel = i;
    if (i !== null) {
      for (var j = Math.max(0, i - 2); j <= Math.min(T - 1, i + 2); j++) {
        tokEls[j].classList.add(j === i ? "sel" : "nb");
      }
      if (scroll) tokEls[i].scrollIntoView({block: "nearest", inline: "nearest"});
    }
    render();
  }

  $("plot").addEventListener("click", function (e) {
    var c = e.target.closest("circle");
    if (c) select(+c.getAttribute("data-i"), true);
  });
  document.addEventListener("keydown", function (e) {
    if (state.sel === null || e.target.tagName === "SELECT") return;
    if (e.key === "ArrowRight" && state.sel < T - 1) select(state.sel + 1, true);
    else if (e.key === "ArrowLeft" && state.sel > 0) select(state.sel - 1, true);
  });
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) cancelAnimationFrame(pending);
    pending = requestAnimationFrame(render);
  });
  buildControls();
  buildTokens();
  render();
  window.longposViewer = {state: state, select: select, render: render};
})();
</script>
</body>
</html>
"""

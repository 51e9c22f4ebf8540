"""The self-contained HTML document a view is drawn in: its style, its one script, and the policy that
lets only that script run; every text from a run is made inert with `esc`. A notebook gets the
document inside a sandboxed iframe.
"""

from __future__ import annotations

import base64
import hashlib
import html

SCRIPT = """(function () {
  var tl = document.getElementById("timeline");
  var calls = tl.querySelectorAll(".bar.call").length, cells = tl.querySelectorAll(".bar.cell").length;
  document.getElementById("tl-count").textContent =
    calls + (calls === 1 ? " call, " : " calls, ") + cells + (cells === 1 ? " cell" : " cells");
  function each(open) {
    var all = document.querySelectorAll("#tree details");
    for (var i = 0; i < all.length; i++) all[i].open = open;
  }
  document.getElementById("expand").addEventListener("click", function () { each(true); });
  document.getElementById("collapse").addEventListener("click", function () { each(false); });
  tl.addEventListener("click", function (e) {
    var bar = e.target.closest("[data-for]");
    var el = bar && document.getElementById(bar.getAttribute("data-for"));
    if (!el) return;
    for (var p = el; p; p = p.parentElement) if (p.tagName === "DETAILS") p.open = true;
    el.scrollIntoView({ block: "center" });
    el.classList.add("hit");
    setTimeout(function () { el.classList.remove("hit"); }, 1500);
  });
})();"""
SCRIPT_HASH = "sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
CSP = f"default-src 'none'; style-src 'unsafe-inline'; script-src '{SCRIPT_HASH}'; base-uri 'none'; form-action 'none'"

STYLE = """
body{
  font:13px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:16px 20px;
  color:#1d2330;background:#fff}
h1{font-size:18px;margin:0 0 4px}
h2{font-size:15px;margin:22px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:3px}
.muted{color:#6b7385}
.ok{color:#1f7a3a;font-weight:600}
.bad{color:#b3261e;font-weight:600}
.run{color:#a86b00;font-weight:600}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin-top:8px}
.kv b{font-weight:600}
pre{
  margin:2px 0 6px;padding:6px 8px;background:#f5f7fa;border:1px solid #e3e7ee;border-radius:4px;
  white-space:pre-wrap;overflow-wrap:anywhere;max-height:28em;overflow:auto;
  font:12px/1.4 ui-monospace,Menlo,Consolas,monospace}
pre.code{background:#f1f5ff}
pre.err{background:#fff3f2;border-color:#f3c7c3}
pre.answer{background:#effaf1;border-color:#c5e8cd}
.clip{color:#6b7385;font-style:italic;font-size:12px}
.gap{
  color:#8a5a00;background:#fff7e0;border:1px solid #f0d890;border-radius:4px;padding:2px 6px;
  margin:2px 0;display:inline-block}
.note{color:#8a5a00}
table{border-collapse:collapse;font-size:12px;margin:4px 0 8px}
th,td{padding:2px 8px;text-align:right;border-bottom:1px solid #edf0f4}
th{background:#f5f7fa;font-weight:600}
td.l,th.l{text-align:left}
details{margin:2px 0 2px 4px}
details>summary{cursor:pointer;padding:1px 0}
details.node{border-left:3px solid #c9b8ef;padding-left:8px;margin:6px 0}
details.turn{border-left:2px solid #b9cdf3;padding-left:8px}
details.cell{border-left:2px solid #a7d8b5;padding-left:8px}
summary b{font-weight:600}
.hit{outline:2px solid #f2a900;outline-offset:1px}
button{font:inherit;font-size:12px;margin-right:6px}
#timeline{position:relative;border:1px solid #e3e7ee;border-radius:4px;padding:4px 0;overflow:hidden}
.overlay{position:absolute;top:0;bottom:0;left:110px;right:12px;pointer-events:none}
.tlrow{display:flex;border-bottom:1px solid #f0f2f6}
.tlrow:last-child{border-bottom:0}
.tllab{
  box-sizing:border-box;flex:0 0 110px;padding:0 6px;font-size:11px;white-space:nowrap;overflow:hidden;
  text-overflow:ellipsis;line-height:14px}
.track{position:relative;flex:1;margin-right:12px}
.axis .track{height:18px}
.tick{
  position:absolute;top:0;height:100%;border-left:1px solid #d4d9e2;padding-left:2px;font-size:10px;
  color:#6b7385}
.span{position:absolute;top:0;bottom:0;background:#f4f0fd}
.bar{position:absolute;height:11px;min-width:2px;border-radius:2px;cursor:pointer;opacity:.9}
.bar:hover{opacity:1;outline:1px solid #1d2330}
.bar.cell{background:#3a9d5d}
.bar.root{background:#3b6fd4}
.bar.sub{background:#e08a1e}
.bar.aggregate{background:#8e44ad}
.bar.other{background:#6b7385}
.bar.cached{background-image:repeating-linear-gradient(45deg,transparent 0 3px,#fff8 3px 6px)}
.bar.failed{outline:1px solid #b3261e}
.gapmark{position:absolute;top:0;bottom:0;width:0;border-left:2px dashed #d08b00;pointer-events:auto;z-index:1}
.legend span.sw{
  display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 3px 0 10px;
  vertical-align:-1px}
"""


def esc(value: object) -> str:
    """Any text from a run, made inert."""
    return html.escape(str(value), quote=True)


def page_html(title: str, body: str, script: bool = True) -> str:
    """A whole document around `body`, under the strict policy that runs only `SCRIPT` (when given)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>{body}"
        + (f"<script>{SCRIPT}</script>" if script else "")
        + "</body></html>"
    )


def iframe(page: str, height_px: int = 640) -> str:
    """The page inside a sandboxed iframe (scripts run, but in an origin of their own): for notebooks."""
    return (
        f'<iframe sandbox="allow-scripts" srcdoc="{esc(page)}" '
        f'style="width:100%;height:{height_px}px;border:1px solid #dde2ea;border-radius:4px"></iframe>'
    )

"""The search page served at `/`: a search box, the scorer, k and the index (engine) to search, and
the hits: each with its hybrid score split into dense and sparse parts, its matching terms (those
the model added beyond the document's words marked as expansions), its text with the matches
shaded, and a link to explain's page. One self-contained HTML file; it talks to `POST /search`."""
from __future__ import annotations

import html
import json

STYLE = """
body{font:15px system-ui,sans-serif;margin:2em auto;max-width:62em;color:#222}
form{display:flex;gap:.5em;flex-wrap:wrap;align-items:center}
#q{flex:1;min-width:20em;font-size:16px;padding:.4em}
.hit{border-top:1px solid #ddd;padding:.8em 0}
.head{display:flex;gap:1em;align-items:baseline}
.id{font-weight:600}.score{font-family:monospace}
.split{display:flex;width:18em;height:10px;background:#eee}
.split .dense{background:#4a7}.split .sparse{background:#e78000}
.terms span{display:inline-block;margin:2px;padding:0 6px;border-radius:8px;font-size:13px;background:#fde3c8}
.terms span.expansion{background:#dbe8fb;border:1px dashed #47a}
.text{line-height:1.6;font-size:14px}
.legend span{display:inline-block;width:11px;height:11px;margin:0 4px 0 10px;vertical-align:middle}
#status{color:#666;margin:.5em 0}
"""

SCRIPT = """
const INDEXES = JSON.parse(document.getElementById('indexes').textContent);
const $ = (id) => document.getElementById(id);
function scorers() {
  const info = INDEXES[$('index').value];
  $('scorer').innerHTML = '';
  for (const s of info.scorers) {
    const o = document.createElement('option'); o.value = s; o.textContent = s;
    if (s === info.default_scorer) o.selected = true;
    $('scorer').appendChild(o);
  }
  $('about').textContent = `${info.documents} documents in ${info.engine}; model ${info.model}; fusion ${info.fusion}`;
}
function el(tag, cls, text) {
  const e = document.createElement(tag); if (cls) e.className = cls; if (text !== undefined) e.textContent = text; return e;
}
async function search(event) {
  event.preventDefault();
  const body = {query: $('q').value, k: parseInt($('k').value, 10), scorer: $('scorer').value, index: $('index').value};
  $('status').textContent = 'searching...';
  const started = performance.now();
  const answer = await fetch('search', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                        body: JSON.stringify(body)});
  const data = await answer.json();
  $('hits').innerHTML = '';
  if (!answer.ok) { $('status').textContent = 'error: ' + (data.detail && data.detail.map ?
      data.detail.map(d => d.msg).join('; ') : data.detail); return; }
  $('status').textContent = `${data.hits.length} hits by ${data.scorer} in ${Math.round(performance.now() - started)} ms`;
  data.hits.forEach((hit, i) => {
    const div = el('div', 'hit'), head = el('div', 'head');
    head.appendChild(el('span', 'rank', `${i + 1}.`));
    head.appendChild(el('span', 'id', hit.id));
    head.appendChild(el('span', 'score', hit.score.toFixed(4)));
    if (hit.dense_part !== undefined) {
      const d = Math.abs(hit.dense_part), s = Math.abs(hit.sparse_part), total = (d + s) || 1;
      const split = el('span', 'split');
      split.title = `dense ${hit.dense_part.toFixed(4)} + sparse ${hit.sparse_part.toFixed(4)}`;
      const bd = el('span', 'dense'), bs = el('span', 'sparse');
      bd.style.flex = d / total; bs.style.flex = s / total; split.append(bd, bs);
      head.appendChild(split);
      head.appendChild(el('span', 'parts', `dense ${hit.dense_part.toFixed(3)} (${Math.round(100 * d / total)}%) + ` +
                                             `sparse ${hit.sparse_part.toFixed(3)} (${Math.round(100 * s / total)}%)`));
    }
    const link = el('a', 'explain', 'why?');
    link.href = `explain?index=${encodeURIComponent(body.index)}&query=${encodeURIComponent(body.query)}` +
                `&id=${encodeURIComponent(hit.id)}`;
    link.target = '_blank';
    head.appendChild(link);
    div.appendChild(head);
    if (hit.terms && hit.terms.length) {
      const terms = el('div', 'terms');
      for (const t of hit.terms) {
        const chip = el('span', t.expansion ? 'expansion' : 'match', t.term);
        chip.title = `query x document ${t.weight}` + (t.expansion ? ' (not in the text: an expansion)' : '');
        terms.appendChild(chip);
      }
      div.appendChild(terms);
    }
    const text = el('div', 'text'); text.innerHTML = hit.html || ''; div.appendChild(text);  // escaped by the server
    $('hits').appendChild(div);
  });
}
$('index').addEventListener('change', scorers);
$('form').addEventListener('submit', search);
scorers();
"""


def render_page(indexes: dict[str, dict], max_k: int) -> str:
    options = "".join(f"<option value='{html.escape(name)}'>{html.escape(name)} ({html.escape(info['engine'])})</option>"
                      for name, info in indexes.items())
    data = json.dumps(indexes).replace("</", "<\\/")
    return f"""<!doctype html><html><head><meta charset='utf-8'><title>HybridPQA search</title>
<style>{STYLE}</style></head><body>
<h2>HybridPQA search</h2>
<form id='form'><input id='q' name='q' placeholder='Ask a question' autofocus>
<label>scorer <select id='scorer'></select></label>
<label>k <input id='k' type='number' min='1' max='{max_k}' value='10' style='width:4em'></label>
<label>index <select id='index'>{options}</select></label>
<button id='go' type='submit'>Search</button></form>
<div id='about'></div>
<p class='legend'>hybrid score: <span style='background:#4a7'></span>dense part
<span style='background:#e78000'></span>sparse part; terms: <span style='background:#fde3c8'></span>in the text
<span style='background:#dbe8fb;border:1px dashed #47a'></span>expansion</p>
<div id='status'></div><div id='hits'></div>
<script type='application/json' id='indexes'>{data}</script>
<script>{SCRIPT}</script></body></html>"""

"""The Snakemake report of a tiny finished run, rendered in a real browser (headless Chromium).

The report is a JavaScript app: what matters is the DOM after its scripts ran, so the page is
dumped after a virtual-time budget, and the browser's console is read from its log on stderr.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_tiny_snakemake

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium; .ci/run does)"
)


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=10000",
            "--enable-logging=stderr",
            "--v=0",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def console_errors(stderr: str) -> list[str]:
    """Uncaught exceptions of the page, from Chromium's log on stderr (its console lines carry
    no level: console.error calls are caught by :data:`RECORDER` instead)."""
    return [line for line in stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]


#: Put first in <head>: records console.error calls, uncaught errors and failed resource loads.
RECORDER = """<script>window.__errors = [];
const __error = console.error;
console.error = (...a) => { window.__errors.push(a.join(' ')); __error(...a); };
window.addEventListener('error', ev => window.__errors.push(
  'error: ' + (ev.message || (ev.target && (ev.target.src || ev.target.href)) || ev.type)), true);
window.addEventListener('unhandledrejection', ev => window.__errors.push('rejection: ' + ev.reason));
</script>"""

#: Put last in <body>: what a reader does. Opens 0. Summary, shows its HTML page (decoded from
#: the report's data URI into the DOM, where --dump-dom sees it; the app shows it in an iframe)
#: and a figure, then notes whether each image decoded and the errors seen.
DRIVER = """<script>window.addEventListener('load', () => setTimeout(() => {
  const out = document.createElement('div'); out.id = 'hepflows-check';
  const find = name => Object.values(results).find(r => r.name === name);
  const decode = uri => new TextDecoder().decode(
    Uint8Array.from(atob(uri.split(',')[1]), c => c.charCodeAt(0)));
  app.showCategory('0. Summary');
  const summary = find('summary.html');
  out.innerHTML = summary ? decode(summary.data_uri) : 'NO SUMMARY';
  document.body.appendChild(out);
  const figure = find('overview.png') || find('m_bb.png');
  app.setView({content: 'img', contentPath: figure.data_uri});
  setTimeout(() => {
    const imgs = [...document.querySelectorAll('img')].filter(i => i.src.startsWith('data:image/png'));
    out.dataset.pngs = imgs.length;
    out.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
    out.dataset.errors = JSON.stringify(window.__errors);
    out.dataset.categories = JSON.stringify(Object.keys(categories));
    out.dataset.done = 'yes';
  }, 1000);
}, 500));
</script>"""


def instrumented(report: Path, dest: Path) -> Path:
    """A copy of ``report`` with :data:`RECORDER` and :data:`DRIVER`."""
    text = report.read_text()
    head, body = text.index("<head>") + len("<head>"), text.rindex("</body>")
    dest.write_text(text[:head] + RECORDER + text[head:body] + DRIVER + text[body:])
    return dest


@pytest.fixture(scope="module")
def report(tiny_workflow, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "report.html"
    run_tiny_snakemake(tiny_workflow, "--cores", "1", "--report", str(out))
    return out


def test_report_renders_the_verdict_colours_and_images(report, tmp_path):
    page = instrumented(report, tmp_path / "report.html")
    result = chromium(page, tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-3000:]
    dom = result.stdout
    check = re.search(r'<div id="hepflows-check"([^>]*)>(.*?)</div>\s*(<script|</body>)', dom, re.S)
    assert check, dom[-3000:]
    attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', check.group(1)))
    assert attrs.get("done") == "yes", attrs
    # the summary sorts first, then the verdict
    categories = json.loads(html.unescape(attrs["categories"]))
    assert sorted(categories)[0] == "0. Summary" and "1. Verdict" in categories
    # the summary page: the sentence, the verdict table and its status colours
    summary = check.group(2)
    assert re.search(
        r"Generated events are (in)?distinguishable from MC: \d+ of \d+ cells", summary
    )
    assert "Kolmogorov-Smirnov statistic" in summary and "Wall time per step" in summary
    colours = set(re.findall(r"background:\s*(#[0-9a-f]{6})", summary, re.I))
    assert colours & {"#b7e1a1", "#ffd27f", "#f4a3a3"}, colours
    # the figure shown, every PNG on the page decoded, no error on the console
    assert int(attrs["pngs"]) >= 1 and attrs["decoded"] == attrs["pngs"], attrs
    assert json.loads(html.unescape(attrs["errors"])) == []
    assert console_errors(result.stderr) == [], result.stderr[-3000:]


def test_report_screenshot_is_not_blank(report, tmp_path):
    png = tmp_path / "report.png"
    page = instrumented(report, tmp_path / "report.html")
    result = chromium(
        page,
        tmp_path / "profile",
        f"--screenshot={png}",
        "--window-size=1280,900",
        "--hide-scrollbars",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert png.stat().st_size > 5_000
    from PIL import Image

    with Image.open(png) as image:
        lo, hi = image.convert("L").getextrema()
        colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
    assert hi - lo > 50 and colours > 20, "blank screenshot"
    assert console_errors(result.stderr) == [], result.stderr[-3000:]

"""report.html in real headless Chromium: every plot drawn, no console error, no network, hostile text inert, and
a screenshot written (also copied to /tmp/report_screenshot.png for a person to look at).

Needs Debian's `chromium` (`apt-get install chromium`; .ci/run installs it); skipped with that reason without it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dpo_doctor.views import render_all
from tests.fixtures.report_fixture import write_fixture_report

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p and Path(p).exists()), None)
SCREENSHOT_COPY = Path("/tmp/report_screenshot.png")
HOSTILE = "<script>alert(1)</script> </script><img src=x onerror=alert(1)> [click](javascript:alert(1))"

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found at /usr/bin/chromium "
                                 "(apt-get install chromium; .ci/run installs it)")]


class Elements(HTMLParser):
    """Element names and on* handler attributes of a document (script bodies are opaque, as in a browser)."""

    def __init__(self):
        super().__init__()
        self.tags, self.handlers = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [(tag, k) for k, _ in attrs if k.startswith("on")]


def chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    """One headless run; every host name resolves to nothing, so a network request would fail and log an error."""
    with tempfile.TemporaryDirectory() as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", f"--user-data-dir={profile}",
                 "--virtual-time-budget=5000", "--host-resolver-rules=MAP * ~NOTFOUND",
                 "--enable-logging=stderr", "--v=0"]
        return subprocess.run([CHROMIUM, *flags, *args, url], capture_output=True, text=True, timeout=180)


def console_lines(proc: subprocess.CompletedProcess) -> list[str]:
    """Console output of the page (errors, uncaught exceptions, failed loads); a clean report logs nothing."""
    return [ln for ln in proc.stderr.splitlines() if ":CONSOLE" in ln]


def check_drawn(dom: str, html_source: str) -> int:
    """Every figure div in the source became a Plotly plot with its SVG and at least one trace."""
    ids = re.findall(r'<div class="plot" id="(fig-[^"]+)"', html_source)
    assert ids, "the report has no figure"
    for fid in ids:
        start = dom.index(f'id="{fid}"')
        chunk = dom[dom.rindex("<div", 0, start): dom.find('id="fig-', start + 1) % (len(dom) + 1)]
        assert "js-plotly-plot" in chunk and 'class="main-svg"' in chunk, f"{fid} was not drawn"
        assert re.search(r'class="(trace|scatterlayer)', chunk), f"{fid} has no trace"
    assert dom.count('class="plot js-plotly-plot"') == len(ids)
    return len(ids)


def test_harness_sees_console_errors(tmp_path):
    """The check below can fail: a page with an uncaught error and a network request is caught."""
    page = tmp_path / "broken.html"
    page.write_text("<html><body><img src='http://example.invalid/x.png'><script>notDefined();</script></body></html>")
    lines = console_lines(chromium(page.as_uri(), "--dump-dom"))
    assert any("Uncaught ReferenceError" in ln for ln in lines), lines


def test_report_renders_in_headless_chromium(tmp_path):
    out = write_fixture_report(tmp_path / "rep")
    html_path = render_all(out)[0]
    proc = chromium(html_path.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not console_lines(proc), console_lines(proc)
    n = check_drawn(proc.stdout, html_path.read_text())
    assert n == 14
    shot = tmp_path / "report.png"
    proc = chromium(html_path.as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    assert proc.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 80_000  # a blank or unstyled page compresses to ~10 kB
    try:
        shutil.copyfile(shot, SCREENSHOT_COPY)
    except OSError:
        pass  # the copy is a convenience for a person; the test's own screenshot is in tmp_path


def test_hostile_text_stays_text_in_the_browser(tmp_path):
    out = write_fixture_report(tmp_path / "bad", texts=HOSTILE, run_name=HOSTILE)
    html_path = render_all(out)[0]
    proc = chromium(html_path.as_uri(), "--dump-dom")
    assert not console_lines(proc), console_lines(proc)  # alert() would not log, but a broken script would
    dom = proc.stdout
    check_drawn(dom, html_path.read_text())
    elements = Elements()
    elements.feed(dom)  # the live DOM after every script ran, not the file
    assert "img" not in elements.tags and elements.tags.count("script") == 2  # nothing injected an element
    assert not elements.handlers, elements.handlers  # no on* attribute anywhere in the document
    title = re.search(r"<title>(.*?)</title>", dom, re.S).group(1)
    assert title.startswith("dpo-doctor: &lt;script&gt;alert(1)&lt;/script&gt;")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.split("</header>")[0]  # shown as text in the header


def test_compare_report_renders_in_headless_chromium(tmp_path):
    """The compare page (`dpo-doctor compare`): the hump, the per-run trends and the training losses all drawn."""
    from tests.fixtures.compare_fixture import write_fixture_compare

    html_path = render_all(write_fixture_compare(tmp_path / "cmp"))[0]
    proc = chromium(html_path.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not console_lines(proc), console_lines(proc)
    assert check_drawn(proc.stdout, html_path.read_text()) == 3
    shot = tmp_path / "compare.png"
    proc = chromium(html_path.as_uri(), f"--screenshot={shot}", "--window-size=1280,2000")
    assert proc.returncode == 0 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 60_000
    try:
        shutil.copyfile(shot, Path("/tmp/compare_screenshot.png"))
    except OSError:
        pass


def test_hostile_compare_text_stays_text_in_the_browser(tmp_path):
    from tests.fixtures.compare_fixture import write_fixture_compare

    html_path = render_all(write_fixture_compare(tmp_path / "bad", texts=HOSTILE))[0]
    proc = chromium(html_path.as_uri(), "--dump-dom")
    assert not console_lines(proc), console_lines(proc)
    check_drawn(proc.stdout, html_path.read_text())
    elements = Elements()
    elements.feed(proc.stdout)
    assert "img" not in elements.tags and elements.tags.count("script") == 2
    assert not elements.handlers, elements.handlers

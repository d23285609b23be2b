"""report.html opened in a real browser (Debian's headless chromium): it renders, every image loads, and
the selected configuration is named.

The browser itself says whether each image loaded: a probe script, added to a
copy of the page, writes the number of images and of broken ones (not
complete, or zero natural width) onto <body> once the page has loaded, and
``--dump-dom`` prints the DOM as the browser holds it.
"""

import base64
import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
from rich.console import Console
from study_files import write_study

from gdlab.report import LiveReport
from gdlab.study import run_study

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH: the browser test needs Debian's chromium (apt-get install chromium)",
)

PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  document.body.setAttribute("data-images", images.length);
  document.body.setAttribute("data-broken", images.filter(i => !i.complete || i.naturalWidth === 0).length);
});</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess:
    # --no-sandbox: the tests may run as root (a container), where chromium's sandbox refuses to start.
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    out = folder / "study"
    run_study(write_study(folder, seeds=2, epochs=1, implementation="both", lr="[0.05, 0.2]"), out_dir=out,
              console=Console(file=open(os.devnull, "w")), on_saved=LiveReport(Console(file=open(os.devnull, "w"))))
    return out


def test_every_image_is_an_embedded_png(study):
    html = (study / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(list((study / "plots").glob("*.png"))) >= 5
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        data = base64.b64decode(source.split(",", 1)[1], validate=True)
        image = matplotlib.image.imread(io.BytesIO(data), format="png")
        assert image.shape[0] > 100 and image.shape[1] > 100


def test_the_browser_renders_the_report_with_no_broken_image_and_the_selected_configuration(study, tmp_path):
    import json

    selected = json.loads((study / "summary.json").read_text())["selected"]["config_id"]
    probed = tmp_path / "report.html"
    probed.write_text((study / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    result = chromium("--virtual-time-budget=10000", "--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", result.stdout).group(1)
    counts = dict(re.findall(r'data-(images|broken)="(\d+)"', body))
    assert int(counts["images"]) >= 5 and counts["broken"] == "0"
    text = re.sub(r"<[^>]+>", " ", result.stdout)
    assert f"selected on validation: {selected}" in " ".join(text.split())

    screenshot = tmp_path / "page.png"
    result = chromium("--window-size=1200,2400", f"--screenshot={screenshot}", (study / "report.html").as_uri())
    assert result.returncode == 0, result.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (2400, 1200)
    assert pixels[..., :3].std() > 0.05  # text, tables and figures, not a blank page


def test_a_broken_image_would_be_seen(study, tmp_path):
    # The probe is not blind: an image that cannot decode counts as broken.
    page = tmp_path / "broken.html"
    page.write_text((study / "report.html").read_text().replace(
        "</h1>", '</h1><img src="data:image/png;base64,AAAA">').replace("</body>", PROBE + "</body>"))
    result = chromium("--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert 'data-broken="1"' in result.stdout

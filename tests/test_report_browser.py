"""The report, rendered by headless Chromium (Debian `chromium` + `chromium-driver`): the
figures decode, the ranking table has one row per strategy, and nothing is fetched."""

from __future__ import annotations

import os

import pytest

from lrkit.report import load_runs, summarize, write_report
from report_runs import classification_runs, write_store

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(
    not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)),
    reason=f"headless browser test needs {CHROMIUM} and {CHROMEDRIVER} "
           "(Debian: apt-get install chromium chromium-driver; `make test` installs them)")


#: per image, the fraction of its decoded pixels that are not white (drawn on a canvas)
INK_FRACTION = """
return Array.from(document.images).map(img => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  const px = context.getImageData(0, 0, canvas.width, canvas.height).data;
  let ink = 0;
  for (let k = 0; k < px.length; k += 4) if (px[k + 3] > 0 && Math.min(px[k], px[k + 1], px[k + 2]) < 240) ink++;
  return ink / (canvas.width * canvas.height);
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)  # explicit: no Selenium Manager
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    db = write_store(folder / "runs.sqlite", classification_runs())
    return write_report(db, folder / "report.html"), summarize(load_runs(db))


def test_chromium_renders_the_report_figures_and_table(browser, report):
    path, summary = report
    browser.get(path.resolve().as_uri())
    assert browser.title == f"lrkit report: {summary.task}"
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight, i.clientWidth]);")
    assert len(images) == 4
    for complete, natural_width, natural_height, shown_width in images:
        assert complete and natural_width == 1210 and natural_height > 300 and shown_width > 600
    # the size comes from the PNG header alone (a truncated PNG has it too): count drawn pixels
    ink = browser.execute_script(INK_FRACTION)
    assert all(fraction > 0.02 for fraction in ink), ink
    rows = browser.execute_script(
        "return Array.from(document.querySelectorAll('#ranking tbody tr')).map(r => r.cells[1].innerText);")
    assert len(rows) == len(summary.ranking) == 5
    assert [row.split("\n")[0].split("baseline")[0].split("diverged")[0].strip() for row in rows] == [
        s.strategy for s in summary.ranking]
    verdict = browser.execute_script("return document.getElementById('verdict').innerText;")
    assert summary.ranking[0].strategy in verdict and "seed noise" in verdict
    fetched = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).filter(n => !n.startsWith('data:'));")
    assert fetched == []


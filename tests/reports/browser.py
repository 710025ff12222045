"""Open a report in real headless Chromium (Debian's chromium + chromedriver) via selenium."""

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists() and shutil.which(Path(path).name) is None:
            return f"{path} not found: apt-get install chromium chromium-driver"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium not installed: pip install -e '.[dev]'"
    return None


@dataclass(frozen=True)
class Rendered:
    charts: int
    plotted: int
    """Chart holders in which plotly.js drew its SVG."""
    svgs: int
    console_errors: list[dict[str, Any]]
    title: str
    planted: Any
    """``window.planted``: set only if markup planted in the data ran as script."""
    percentile_traces: list[list[dict[str, str]]]
    """Per comparison percentile plot, the ``meta`` ({broker, kind}) of each trace plotly drew
    (``gd.data``)."""
    comparison_overflow: int
    """Pixels the comparison section is wider than its box at 1400 px (0: it fits)."""
    widths: dict[str, int] = field(default_factory=dict)
    """At 1400 px, every ``<details>`` opened: the page's ``client`` width and ``scroll``
    width (more: it scrolls sideways), and the right edges of the ``matrix`` (the summary)
    and ``check-matrix`` (every check) tables (-1: not on the page)."""


WIDTHS = """
const closed = [...document.querySelectorAll('details')].filter((details) => !details.open);
for (const details of closed) details.open = true;
const right = (id) => {
  const element = document.getElementById(id);
  return element ? Math.ceil(element.getBoundingClientRect().right) : -1;
};
const widths = {
  client: document.documentElement.clientWidth,
  scroll: document.documentElement.scrollWidth,
  matrix: right('matrix'),
  'check-matrix': right('check-matrix'),
};
for (const details of closed) details.open = false;
return widths;
"""


def render(html: Path, screenshots: list[Path], first_screen: Path | None = None) -> Rendered:
    """Load ``html`` from disk (offline), wait for the charts, collect console errors, save
    the first 1400 x 1000 px to ``first_screen`` and a full-page screenshot to each of
    ``screenshots``, and measure the widths (``Rendered.widths``)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1400,1000", "--host-resolver-rules=MAP * ~NOTFOUND"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(120)
        driver.get(html.resolve().as_uri())
        count = "return document.querySelectorAll('.chart').length"
        drawn = "return document.querySelectorAll('.chart.js-plotly-plot .main-svg').length > 0 ? document.querySelectorAll('.chart.js-plotly-plot').length : 0"  # noqa: E501
        charts = int(driver.execute_script(count))
        WebDriverWait(driver, 60).until(lambda d: int(d.execute_script(drawn)) >= charts)
        plotted = int(driver.execute_script(drawn))
        svgs = int(driver.execute_script("return document.querySelectorAll('svg.main-svg').length"))
        traces = driver.execute_script(
            "return [...document.querySelectorAll('.chart.percentiles')]"
            ".map(gd => gd.data.map(trace => trace.meta))"
        )
        overflow = int(driver.execute_script(
            "const s = document.getElementById('comparison');"
            "return s ? Math.max(0, s.scrollWidth - s.clientWidth) : 0"
        ))  # fmt: skip
        if first_screen is not None:
            first_screen.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(first_screen))
        widths = {name: int(value) for name, value in driver.execute_script(WIDTHS).items()}
        height = int(driver.execute_script("return document.documentElement.scrollHeight"))
        driver.set_window_size(1400, min(height + 50, 6000))
        for path in screenshots:
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
        logs = driver.get_log("browser")
        errors = [entry for entry in logs if entry.get("level") == "SEVERE"]
        planted = driver.execute_script(
            "return window.planted === undefined ? null : window.planted"
        )
        return Rendered(
            charts, plotted, svgs, errors, driver.title, planted, traces, overflow, widths
        )
    finally:
        driver.quit()

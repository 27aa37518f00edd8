"""The full report from real (tiny) runs: every section, every figure, the self-contained HTML,
and the page opened in a real headless browser."""
from __future__ import annotations

import io
import re
import shutil

import pytest
from hydra import compose, initialize_config_dir

from bench.core.job import run
from bench.core.config import CONF_DIR, CONFIG_NAME
from bench.report import write_report
from bench.core.results import write_json_atomic

TINY = ["+debug=tiny", "train.eval_batches=1", "train.steps=20", "train.eval_every=10", "variant=standard"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    sweep = tmp_path_factory.mktemp("sweep")
    for task in ("copy", "induction"):
        for seed in (0, 1):
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                cfg = compose(CONFIG_NAME, overrides=[*TINY, f"task={task}", f"seed={seed}"])
            run(cfg, sweep / f"{task}-{seed}", single_run=False, overrides=[])
    (sweep / "still-running").mkdir()
    write_json_atomic(sweep / "still-running" / "result.json", {"status": "running", "variant": "standard", "task": "copy", "seed": 2})
    return write_report(sweep, tmp_path_factory.mktemp("report"))


def test_every_section_is_there(report):
    text = report.read_text()
    for heading in ("Overview", "Summary", "Learning curves", "Accuracy by slice", "Length generalisation", "Attention patterns",
                    "Head scores", "Composition scores", "Runs that did not complete", "Provenance"):  # fmt: skip
        assert f"\n## {heading}\n" in text
    assert "5 runs from 1 sweep: 4 completed, 1 running." in text
    assert "| standard  | copy   |" in text and "L1H1" in text and "2× training length" in text


def test_the_html_holds_each_figure_once_and_the_markdown_links_to_it(report):
    from PIL import Image

    from bench.report.render import figures_in
    from plugin.plotting import MAX_WIDTH_PIXELS

    text, page = report.read_text(), (report.parent / "report.html").read_text()
    linked = re.findall(r"\*Figure (\d+): [^*]+\* \(\[in report.html\]\(report.html#figure-(\d+)\)\)", text)
    # verdicts, summary, accuracy and loss curves, slices, length generalisation, attention × 2 tasks, head scores, composition × 2 tasks
    assert len(linked) == 11 and all(number == anchor for number, anchor in linked)
    figures = figures_in(page)
    assert len(figures) == 11 and all(f"id='figure-{number}'" in page for number, _ in linked)
    for png in figures.values():
        with Image.open(io.BytesIO(png)) as image:
            assert image.format == "PNG" and image.width <= MAX_WIDTH_PIXELS and image.mode == "P", "one 256-colour PNG, readable width"
    assert not (report.parent / "figures").exists(), "each figure is stored once, in the page"
    assert "src='http" not in page and 'src="http' not in page, "self-contained: nothing fetched"


def test_the_page_renders_in_headless_chromium(report, tmp_path):
    browser, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.skip("no browser: Debian's chromium and chromium-driver are not installed (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'profile'}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.set_window_size(1366, 768)  # a laptop's screen
        driver.get((report.parent / "report.html").as_uri())
        first_screen = driver.execute_script(
            "const f = document.querySelector('#figure-1'); const r = f.getBoundingClientRect();"
            "return [f.querySelector('figcaption').textContent, r.top < window.innerHeight, r.width, window.innerWidth]"
        )
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        errors = [entry for entry in driver.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]
        title = driver.title
    finally:
        driver.quit()
    assert len(images) == 11 and all(complete and width > 100 and height > 100 for complete, width, height in images)
    assert errors == [] and title.startswith("Sweep ")
    caption, visible, width, screen = first_screen
    assert caption.startswith("Figure 1: Verdict per variant") and visible, "the verdict heatmap is on the first screen"
    assert width <= screen, "and no wider than it"


def test_bar_panels_list_only_their_own_settings_down_the_side_without_group_prefixes(tmp_path, monkeypatch):
    """An experiment of many tasks and difficulty points (MAD's) gives long setting labels and panels that
    share few settings: each panel lists its own, horizontally, and its figure is as tall as they need."""
    import pandas as pd

    from plugin import plotting

    captured = {}
    monkeypatch.setattr(plotting, "save", lambda figure, path: captured.setdefault("figure", figure) and path)
    rows = [{"setting": f"{variant} task.seq_len={length}", "variant": variant, "task": task, "metric": "test accuracy", "value": 0.5 + 0.1 * seed}
            for task, lengths in (("fuzzy_recall", (64, 128)), ("selective_copy", (64,))) for length in lengths
            for variant in ("standard", "sliding_window") for seed in range(2)]  # fmt: skip
    plotting.bars_with_points(pd.DataFrame(rows), "value", col="task", row="metric", value_label="test accuracy", path=tmp_path / "bars.png")
    axes = [axis for axis in captured["figure"].axes if axis.get_visible()]
    labels = [[label.get_text() for label in axis.get_yticklabels()] for axis in axes]
    assert labels == [["sliding_window seq_len=128", "sliding_window seq_len=64", "standard seq_len=128", "standard seq_len=64"],
                      ["sliding_window seq_len=64", "standard seq_len=64"]]  # fmt: skip
    assert all(label.get_rotation() == 0 for axis in axes for label in axis.get_yticklabels())
    assert [axis.get_xlabel() for axis in axes] == ["test accuracy"] * 2


def test_many_settings_split_between_panels_get_a_legend_beside_each_panel_naming_its_own(tmp_path, monkeypatch):
    import pandas as pd

    from bench.report import figures
    from plugin import plotting

    captured = {}
    monkeypatch.setattr(figures, "save", lambda figure, path: captured.setdefault("figure", figure) and path)
    curves = pd.DataFrame([{"run": f"{task}{length}{seed}", "setting": f"standard task.seq_len={length}", "variant": "standard", "task": task,
                            "seed": seed, "step": step, "test_accuracy": 0.1 * step + 0.01 * seed}
                           for task, lengths in (("copy", range(10, 16)), ("induction", range(20, 24))) for length in lengths
                           for seed in range(2) for step in range(3)])  # fmt: skip
    assert curves["setting"].nunique() > plotting.MAX_SHARED_LEGEND
    figures.learning_curves(curves, "test_accuracy", "test accuracy", tmp_path / "curves.png")
    figure = captured["figure"]
    assert not figure.legends, "no shared legend of every setting"
    legends = {axis.get_title(): [text.get_text() for text in axis.get_legend().get_texts()] for axis in figure.axes}
    assert legends == {"copy": [f"standard seq_len={n}" for n in range(10, 16)], "induction": [f"standard seq_len={n}" for n in range(20, 24)]}

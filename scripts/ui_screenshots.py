#!/usr/bin/env python3
"""Screenshots of what Dagster's UI shows of the materialized sample: row counts, column schemas,
per-partition check results and freshness.

Not part of the test suite (a browser and a running ``dagster dev``). It needs Debian's Chromium
and its driver (``apt-get install chromium chromium-driver``) and Selenium
(``pip install -e '.[screenshots]'``). On the quick start's warehouse (docs/quickstart.md):

    DAGSTER_HOME=$PWD/.materializer/dagster_home dagster dev -p 3000 &
    python scripts/ui_screenshots.py http://127.0.0.1:3000 /tmp/screens

It asks the webserver's GraphQL API for the latest materialized cell of ``iceberg_table`` and its
first check, then opens each page headless and waits until the text it is taken for is rendered
(the UI is a single-page app: a page's HTML says nothing until its queries have answered). It
prints one line per PNG written and exits non-zero if a page never showed what it was taken for.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER_NAMES = ("chromedriver",)
WINDOW = (1600, 1000)
RENDER_TIMEOUT_S = 60
# After the awaited text appears, charts and tags around it still settle for a moment.
SETTLE_S = 2.0
COMMUNITY_DIALOG = "Join the Dagster community"


@dataclass
class Shot:
    """One PNG: a page, the texts that prove it rendered, and the steps before the picture.

    Steps, in order: ``("click", label)`` clicks the element whose text is ``label`` (a tab, a
    partition key), ``("type", placeholder, text)`` types into the input with that placeholder,
    ``("scroll", heading)`` brings a heading to the top.
    """

    name: str
    path: str
    wait_for: list[str]
    steps: list[tuple[str, ...]] = field(default_factory=list)
    width: int = WINDOW[0]
    height: int = WINDOW[1]


def find_binary(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def graphql(base_url: str, query: str, variables: dict) -> dict:
    request = urllib.request.Request(
        f"{base_url}/graphql",
        json.dumps({"query": query, "variables": variables}).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.load(response)
    if answer.get("errors"):
        raise SystemExit(f"GraphQL error from {base_url}: {answer['errors']}")
    return answer["data"]


LATEST = """query($key: AssetKeyInput!) { assetNodeOrError(assetKey: $key) { __typename ... on AssetNode {
  assetMaterializations(limit: 1) { partition }
  assetChecksOrError { ... on AssetChecks { checks { name } } } } } }"""


def latest_cell_and_check(base_url: str, asset: str) -> tuple[str, str | None]:
    node = graphql(base_url, LATEST, {"key": {"path": [asset]}})["assetNodeOrError"]
    if node["__typename"] != "AssetNode":
        raise SystemExit(f"{base_url} does not know the asset {asset!r} ({node['__typename']})")
    materializations = node["assetMaterializations"]
    if not materializations:
        raise SystemExit(f"{asset} was never materialized here: run `materializer run --date ...` first")
    checks = node["assetChecksOrError"].get("checks") or []
    return materializations[0]["partition"], (checks[0]["name"] if checks else None)


def asset_url(asset: str, **params: str) -> str:
    return f"/assets/{asset}?{urllib.parse.urlencode(params)}"


def planned_shots(base_url: str) -> list[Shot]:
    cell, check = latest_cell_and_check(base_url, "iceberg_table")
    day, model = cell.split("|", 1)
    shots = [Shot("asset_catalog", "/assets", ["iceberg_table", "reward_dataset"])]
    for asset in ("iceberg_table", "reward_dataset"):
        overview = asset_url(asset, view="overview")
        shots += [
            # Wide enough for the four status columns: a narrower one puts the latest cell's key over
            # the check results beside it.
            Shot(f"{asset}_overview", overview, ["Row count", "Freshness policy", "Latest check results"],
                 width=2000),
            Shot(f"{asset}_columns", overview, ["Columns", "trace_id"], [("scroll", "Columns")], height=1400),
        ]
    shots += [
        # Metadata → Plots → Events: every numeric entry, dagster/row_count among them, per
        # materialization. (The "Partitions" axis plots only the definition's latest 120 partition
        # keys, days before today, where an old day's cells, like the sample's, are not.) The
        # "Events" clicked is the plot axis button: it comes after the page's "Events" tab.
        Shot("iceberg_table_row_count_plots", asset_url("iceberg_table", view="overview"), ["Metadata"],
             [("click", "Plots"), ("click", "Events"), ("scroll", "Metadata")], height=1400),
        # The Overview's metadata table leaves out row count, schema and table name (it places them
        # elsewhere on the page); an event's and a cell's metadata tables show every entry.
        Shot("iceberg_table_events", asset_url("iceberg_table", view="events"), ["dagster/table_name"], height=1400),
        Shot("iceberg_table_partition", asset_url("iceberg_table", view="partitions", partition=cell),
             ["dagster/partition_row_count"], height=1400),
        Shot("reward_dataset_metadata", asset_url("reward_dataset", view="overview"), ["mean_final_reward"],
             [("type", "Filter metadata keys", "mean"), ("scroll", "Metadata")], height=1400),
    ]
    if check:
        checks = asset_url("iceberg_table", view="checks", checkDetail=check)
        shots += [
            Shot("iceberg_table_checks", checks, [check, "Partition"]),
            Shot("iceberg_table_check_history", checks, [check], [("click", "Execution history")]),
            # The partition grid lists every day since the start date: narrow it to the cell's days.
            Shot("iceberg_table_check_partitions", checks, [check],
                 [("click", "Partitions"), ("type", "Filter by date…", day[:-1]), ("click", day), ("click", model)]),
        ]
    # A WARN check that fails on every sample cell (the sample carries malformed records on purpose).
    warn = asset_url("raw_traces", view="checks", checkDetail="no_rejected_records")
    shots.append(Shot("raw_traces_warn_check_history", warn, ["no_rejected_records"], [("click", "Execution history")]))
    return shots


def body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def wait_for_texts(driver, texts: list[str], timeout: float = RENDER_TIMEOUT_S) -> list[str]:
    """The texts still missing after ``timeout`` seconds (none: the page rendered them)."""
    deadline = time.monotonic() + timeout
    while True:
        text = body_text(driver)
        missing = [t for t in texts if t not in text]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.5)


def quote(text: str) -> str:
    """A double-quoted XPath or CSS string (json.dumps would escape "…" the way neither reads)."""
    if '"' in text:
        raise ValueError(f"cannot quote {text!r}")
    return f'"{text}"'


def visible_with_text(driver, text: str):
    """The last visible element, in document order, whose own text is ``text`` (or whose title is:
    Dagster shortens long partition keys in the middle and keeps the whole key as the title)."""
    from selenium.webdriver.common.by import By

    quoted = quote(text)
    candidates = driver.find_elements(By.XPATH, f"//*[normalize-space(text())={quoted} or @title={quoted}]")
    return next((element for element in reversed(candidates) if element.is_displayed()), None)


def run_step(driver, step: tuple[str, ...]) -> str | None:
    """Does one step; returns what went wrong, or None."""
    from selenium.webdriver.common.by import By

    kind, *args = step
    if kind == "type":
        placeholder, text = args
        inputs = [e for e in driver.find_elements(By.CSS_SELECTOR, f"input[placeholder={quote(placeholder)}]")
                  if e.is_displayed()]
        if not inputs:
            return f"no input {placeholder!r}"
        inputs[0].send_keys(text)
        return None
    element = visible_with_text(driver, args[0])
    if element is None:
        return f"nothing to {kind} named {args[0]!r}"
    if kind == "click":
        driver.execute_script("arguments[0].click();", element)
    else:
        driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    return None


def open_browser(chromium: str, chromedriver: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def dismiss_welcome_dialog(driver) -> None:
    """A fresh browser profile gets Dagster's "Join the Dagster community" dialog over every page."""
    if COMMUNITY_DIALOG in body_text(driver):
        run_step(driver, ("click", "Skip"))
        time.sleep(0.5)


def take(driver, base_url: str, shot: Shot, out: Path) -> str | None:
    """Writes the PNG; returns what went wrong, or None."""
    # The viewport itself, not the window (whose size includes the browser's own bars).
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": shot.width, "height": shot.height, "deviceScaleFactor": 1, "mobile": False})
    driver.get(base_url + shot.path)
    missing = wait_for_texts(driver, shot.wait_for)
    problem = f"never showed {missing}" if missing else None
    dismiss_welcome_dialog(driver)
    for step in shot.steps:
        problem = run_step(driver, step) or problem
        time.sleep(SETTLE_S)
    time.sleep(SETTLE_S)
    driver.save_screenshot(str(out / f"{shot.name}.png"))
    return problem


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("base_url", nargs="?", default="http://127.0.0.1:3000", help="dagster dev's URL")
    parser.add_argument("out", nargs="?", default="ui-screenshots", help="folder for the PNGs")
    args = parser.parse_args(argv)
    base_url = args.base_url.rstrip("/")

    chromium, chromedriver = find_binary(CHROMIUM_NAMES), find_binary(CHROMEDRIVER_NAMES)
    if not chromium or not chromedriver:
        print("Chromium and its driver are needed: apt-get install chromium chromium-driver "
              f"(found chromium={chromium}, chromedriver={chromedriver})", file=sys.stderr)
        return 2
    try:
        import selenium
    except ImportError:
        print("Selenium is needed: pip install -e '.[screenshots]'", file=sys.stderr)
        return 2
    print(f"selenium {selenium.__version__}, {chromium}, {chromedriver}")
    try:
        urllib.request.urlopen(f"{base_url}/server_info", timeout=10).close()
    except OSError as exc:
        print(f"no Dagster webserver answers at {base_url} ({exc}): start `dagster dev` first", file=sys.stderr)
        return 2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    shots = planned_shots(base_url)
    failures = 0
    driver = open_browser(chromium, chromedriver)
    try:
        for shot in shots:
            problem = take(driver, base_url, shot, out)
            failures += problem is not None
            print(f"{'FAIL' if problem else 'ok  '} {out / (shot.name + '.png')}  {base_url}{shot.path}"
                  + (f"  ({problem})" if problem else ""))
    finally:
        driver.quit()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

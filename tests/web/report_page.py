"""The audit report in Chromium (its tests, screenshots and benchmark): open it once its script
has rendered the table, read every row's name, and keep its policy violations and console
errors."""

from __future__ import annotations

import time
from typing import Any

from tests.web.views import TIMEOUT_S, wait_for

# Installed before any script of the page runs: every policy violation is kept.
WATCH_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation",
  (event) => window.__violations.push(event.violatedDirective + " " + event.blockedURI));
"""
# Every row of the report's table, page by page: the text of its name cell.
ROW_NAMES = """
const names = [];
const column = [...document.querySelectorAll("#results thead th")]
  .findIndex((th) => th.textContent.startsWith("name"));  // a sorted column gains an arrow
const pager = document.getElementById("pager");
for (let guard = 0; guard < 1000; guard++) {
  for (const row of document.querySelectorAll("#results tbody tr")) {
    names.push(row.cells[column].textContent);
  }
  const [page, pages] = pager.textContent.match(/\\d+/g).map(Number);
  if (page >= pages) break;
  document.getElementById("next").click();
}
return names;
"""


def watch_violations(driver: Any) -> None:
    """From the next page on, keep its policy violations (`violations`)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_VIOLATIONS})


def violations(driver: Any) -> list[str]:
    found: list[str] = driver.execute_script("return window.__violations || []")
    return found


def console_errors(driver: Any) -> list[str]:
    """The console's errors since the last call, but Chromium's note that a policy given in a
    <meta> element cannot say frame-ancestors (the on-disk report's policy is one)."""
    ignored = "'frame-ancestors' is ignored when delivered via a <meta> element"
    messages = [entry["message"] for entry in driver.get_log("browser")]
    return [message for message in messages if ignored not in message]


def open_report(driver: Any, url: str) -> None:
    """Load the report at `url` and wait for its table."""
    driver.get(url)
    wait_for(driver, "#shown")
    deadline = time.monotonic() + TIMEOUT_S
    while not driver.execute_script("return document.getElementById('shown').textContent"):
        assert time.monotonic() < deadline, "the report's script never rendered the table"
        time.sleep(0.1)


def report_names(driver: Any) -> list[str]:
    """Every row the report's table shows (all pages)."""
    names: list[str] = driver.execute_script(ROW_NAMES)
    return names

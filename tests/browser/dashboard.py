"""Drives the dashboard in a real browser (Debian's chromium through chromium-driver and
Selenium) for tests/dashboard.rs, which starts holdfast, makes the runs happen and checks
what this script reports.

    dashboard.py SCENARIO BASE_URL SCREENSHOTS_DIR [TOKEN]

Scenarios: `live` (a run followed live, a failing run turning red, the Restore panel),
`token` (the login page of a listener that needs a token) and `perf` (the overview of
many policies, timed by the browser: LOADS loads, each with an empty cache, default 3;
bench/dashboard.sh uses it too). Each prints JSON lines: `{"step": ...}` when it
waits for the test (which answers with one line on stdin), then one `{"result": ...}`.
Any failure raises: the test sees the exit status and the traceback.
"""

import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait


def say(**fields):
    print(json.dumps(fields), flush=True)


def step(name):
    """Tells the test we reached `name` and waits for its go-ahead."""
    say(step=name)
    line = sys.stdin.readline()
    if not line:
        raise SystemExit(f"the test went away at step {name}")


def browser(width=1280, height=900):
    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-extensions", "--disable-background-networking",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
    return webdriver.Chrome(service=service, options=options)


def wait(driver, seconds, what, check):
    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: check(d))
    except TimeoutException:
        raise AssertionError(f"timed out after {seconds} s waiting for {what}; page:\n"
                             + driver.find_element(By.TAG_NAME, "body").text[:3000]
                             + "\nconsole:\n" + console(driver)) from None


def console(driver):
    try:
        return "\n".join(e["message"] for e in driver.get_log("browser"))
    except Exception:  # noqa: BLE001 - the log is only a help for reading failures
        return ""


# The page re-renders as events arrive: read elements in one script, never through an
# element reference that a re-render may have replaced.
def row_state(driver, kind, name):
    return driver.execute_script(
        "const r = document.getElementById(arguments[0]); return r && r.dataset.state",
        f"row-{kind}-{name}")


def text_of(driver, selector):
    return driver.execute_script(
        "const e = document.querySelector(arguments[0]); return e && e.textContent", selector)


def count(driver, selector):
    return driver.execute_script("return document.querySelectorAll(arguments[0]).length", selector)


def open_page(driver, url, what, ready, seconds=30):
    """Loads `url` until `ready` holds. Chromium drops requests in flight when the host's
    network changes (Docker adding a container's interface does that): such a load is
    tried again, up to twice; any other failure is the page's."""
    for attempt in range(3):
        driver.get(url)
        try:
            return wait(driver, seconds, what, ready)
        except AssertionError as failure:
            # The message holds the console: reading the log again would find it emptied.
            if attempt == 2 or "ERR_NETWORK_CHANGED" not in str(failure):
                raise
            print(f"reloading {url}: the host's network changed during the load",
                  file=sys.stderr)


def external_requests(driver, base):
    urls = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    return [u for u in urls if not u.startswith(base) and not u.startswith("data:")]


def live(driver, base, shots):
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "Asia/Tokyo"})
    open_page(driver, base + "/", "the overview", lambda d: row_state(d, "BackupPolicy", "steady"))
    wait(driver, 10, "the event stream", lambda d: text_of(d, "#live") == "live")
    driver.execute_script("window.__notReloaded = true")

    # A running backup: its row turns blue, its run page shows log lines while it runs.
    step("start-slow")
    wait(driver, 30, "steady running", lambda d: row_state(d, "BackupPolicy", "steady") == "run")
    driver.find_element(By.CSS_SELECTOR, "#row-BackupPolicy-steady a[href^='#/run/']").click()
    wait(driver, 10, "the run page", lambda d: d.find_elements(By.ID, "log"))
    wait(driver, 20, "a log line while the run runs", lambda d: count(d, "#log li"))
    running_badge = text_of(driver, "#phase .badge")
    lines_while_running = count(driver, "#log li")
    wait(driver, 60, "the run to end on the page",
         lambda d: text_of(d, "#phase .badge") == "Succeeded")
    lines_at_end = count(driver, "#log li")
    time.sleep(0.5)
    driver.save_screenshot(os.path.join(shots, "run.png"))
    run_url = driver.current_url

    # A failing run: the open overview turns its row red without a reload.
    open_page(driver, base + "/#/", "the overview again",
              lambda d: row_state(d, "BackupPolicy", "broken"))
    wait(driver, 10, "the event stream", lambda d: text_of(d, "#live") == "live")
    driver.execute_script("""
        window.__notReloaded = true;
        window.__redAt = null;
        new MutationObserver(() => {
          const row = document.getElementById('row-BackupPolicy-broken');
          if (row && row.dataset.state === 'bad' && window.__redAt === null) window.__redAt = Date.now();
        }).observe(document.getElementById('main'), {subtree: true, childList: true, attributes: true});
    """)
    before = row_state(driver, "BackupPolicy", "broken")
    step("fail-broken")
    wait(driver, 60, "broken turning red", lambda d: d.execute_script("return window.__redAt"))
    red_at = driver.execute_script("return window.__redAt")
    not_reloaded = driver.execute_script("return window.__notReloaded === true")
    status = driver.execute_script(
        "return fetch('/api/v1/policies/broken').then(r => r.json()).then(j => j.status)")
    finished = status["lastRun"]["completionTime"]
    spec_errors = driver.execute_script(
        "return [...document.querySelectorAll('section.errors li')].map(e => e.textContent)")
    time_title = driver.execute_script(
        "const t = document.querySelector('#row-BackupPolicy-steady time'); return t && t.title")
    driver.save_screenshot(os.path.join(shots, "overview.png"))

    # The keyboard: "/" goes to the filter, which hides what does not match.
    driver.find_element(By.TAG_NAME, "body").send_keys("/")
    focused = driver.execute_script("return document.activeElement.id")
    driver.switch_to.active_element.send_keys("brok")
    visible = [r.get_attribute("id") for r in driver.find_elements(By.CSS_SELECTOR, "tbody tr[data-name]")
               if r.is_displayed()]
    driver.switch_to.active_element.send_keys(Keys.CONTROL, "a", Keys.DELETE)

    # A phone's width in dark mode: nothing wider than the screen but the scrolling tables.
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia",
                           {"features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    driver.set_window_size(390, 844)
    time.sleep(0.5)
    overflow = driver.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
    background = driver.execute_script("return getComputedStyle(document.documentElement).backgroundColor")
    driver.save_screenshot(os.path.join(shots, "overview-phone-dark.png"))
    driver.set_window_size(1280, 900)
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # The object's page: its chart, runs, archives and YAML.
    open_page(driver, f"{base}/#/object/BackupPolicy/steady", "the object page",
              lambda d: count(d, ".uplot") and count(d, "pre.yaml") == 2)
    object_runs = count(driver, "table.grid tbody tr a[href^='#/run/']")
    object_archives = count(driver, "table.grid tbody tr a[href^='#/backup/']")
    spec_yaml = text_of(driver, "pre.yaml")
    driver.save_screenshot(os.path.join(shots, "object.png"))

    # The archive of the steady run, and the Restore the panel writes for it.
    step("archive")
    archive = driver.execute_script(
        "return fetch('/api/v1/policies/steady').then(r => r.json()).then(j => j.status.lastRun.archiveId)")
    open_page(driver, f"{base}/#/backup/default/steady/{archive}", "the archive page",
              lambda d: d.find_elements(By.ID, "restore-yaml"))
    artifacts = len(driver.find_elements(By.CSS_SELECTOR, "a.download"))
    driver.find_element(By.CSS_SELECTOR, "select[name=mode]").send_keys("InPlace")
    driver.find_element(By.CSS_SELECTOR, "input[name=volumes]").click()
    restore_yaml = text_of(driver, "#restore-yaml")
    driver.save_screenshot(os.path.join(shots, "archive.png"))

    # The fleet: this host, from the summary its daemon publishes into the repository
    # (written within seconds of a change; each load reads it again).
    hosts = []
    for _ in range(10):
        open_page(driver, base + "/#/", "the overview", lambda d: row_state(d, "BackupPolicy", "steady"))
        hosts = driver.execute_script(
            "return [...document.querySelectorAll('#hosts tbody tr')].map(r => r.textContent)")
        if hosts:
            break
        time.sleep(2)
    say(result={
        "runningBadge": running_badge,
        "linesWhileRunning": lines_while_running,
        "linesAtEnd": lines_at_end,
        "runUrl": run_url,
        "brokenBefore": before,
        "redAtMs": red_at,
        "finished": finished,
        "notReloaded": not_reloaded,
        "timeTitle": time_title,
        "specErrors": spec_errors,
        "hosts": hosts,
        "focusedBySlash": focused,
        "visibleAfterFilter": visible,
        "phoneOverflowPx": overflow,
        "darkBackground": background,
        "artifacts": artifacts,
        "objectRuns": object_runs,
        "objectArchives": object_archives,
        "specYaml": spec_yaml,
        "restoreYaml": restore_yaml,
        "external": external_requests(driver, base),
        "console": console(driver),
    })


def token(driver, base, shots, secret):
    open_page(driver, base + "/", "the login page", lambda d: d.find_elements(By.ID, "login-token"))
    text_without = text_of(driver, "body")
    rows_without = len(driver.find_elements(By.CSS_SELECTOR, "tbody tr"))
    driver.save_screenshot(os.path.join(shots, "login.png"))
    field = driver.find_element(By.ID, "login-token")
    field.send_keys("not-the-token-at-all")
    field.submit()
    wait(driver, 20, "the refusal", lambda d: "refused" in (text_of(d, "#login-why") or ""))
    refused = text_of(driver, "#login-why")
    field = driver.find_element(By.ID, "login-token")
    field.send_keys(secret)
    field.submit()
    wait(driver, 20, "the overview with the token",
         lambda d: row_state(d, "BackupPolicy", "steady") is not None)
    wait(driver, 10, "the event stream", lambda d: text_of(d, "#live") == "live")
    stored = driver.execute_script("return sessionStorage.getItem('holdfast.token') !== null")
    in_url = secret in driver.current_url
    # A reload keeps the token of this tab.
    driver.refresh()
    wait(driver, 20, "the overview after a reload",
         lambda d: row_state(d, "BackupPolicy", "steady") is not None)
    say(result={
        "textWithoutToken": text_without,
        "rowsWithoutToken": rows_without,
        "refused": refused,
        "stored": stored,
        "tokenInUrl": in_url,
        "external": external_requests(driver, base),
    })


def perf(driver, base, shots):
    # A browser already running, as a person's is: one visit warms its processes and
    # connection, then each measured load starts with an empty cache, assets and all.
    rendered = "return performance.getEntriesByName('holdfast:overview-rendered').length"
    open_page(driver, base + "/", "the warm-up load", lambda d: d.execute_script(rendered))
    loads = []
    for _ in range(int(os.environ.get("LOADS", "3"))):
        driver.get("about:blank")
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        open_page(driver, base + "/", "the overview rendered", lambda d: d.execute_script(rendered))
        mark = driver.execute_script(
            "return performance.getEntriesByName('holdfast:overview-rendered')[0].startTime")
        rows = driver.execute_script("return document.querySelectorAll('tbody tr[data-name]').length")
        detail = driver.execute_script("""
            const nav = performance.getEntriesByType('navigation')[0];
            const api = performance.getEntriesByType('resource').find(e => e.name.endsWith('/api/v1/overview'));
            const fetched = performance.getEntriesByName('holdfast:overview-fetched')[0];
            return {htmlMs: nav.responseEnd, domInteractiveMs: nav.domInteractive,
                    apiStartMs: api && api.startTime, apiEndMs: api && api.responseEnd,
                    fetchedMs: fetched && fetched.startTime}""")
        loads.append({"renderedMs": mark, "rows": rows, **detail})
    sizes = driver.execute_script("""
        return performance.getEntriesByType('resource')
          .filter(e => e.name.includes('/ui/'))
          .map(e => ({name: e.name, encoded: e.encodedBodySize, decoded: e.decodedBodySize}))""")
    driver.save_screenshot(os.path.join(shots, "overview-1000.png"))
    say(result={"loads": loads, "assets": sizes, "external": external_requests(driver, base)})


def main():
    scenario, base, shots = sys.argv[1], sys.argv[2].rstrip("/"), sys.argv[3]
    os.makedirs(shots, exist_ok=True)
    driver = browser()
    try:
        if scenario == "live":
            live(driver, base, shots)
        elif scenario == "token":
            token(driver, base, shots, sys.argv[4])
        elif scenario == "perf":
            perf(driver, base, shots)
        else:
            raise SystemExit(f"unknown scenario {scenario}")
    finally:
        driver.quit()


if __name__ == "__main__":
    main()

"""Draw a "1" on demo.html in headless Chromium, move it 3 px right, and save the page as plots/demo.png, with
what the models read into results/demo_screenshot.json, for the README.

    python -m scripts.demo_screenshot [--out PATH] [--screenshot PATH]   # with the report's seed-0 checkpoints
                                                                         # in checkpoints/ (make report)

browser() and draw() are also what tests/test_demo.py drives the page with. They need Debian's chromium and
chromium-driver packages, and Selenium.
"""
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

from benchmarks import output
from mnistlab import files
from mnistlab.cli import OneLineErrorParser, emit, run
from mnistlab.errors import RunFailed, UsageError
from mnistlab.recipes import MODEL_NAMES, run_name

PROG = "demo_screenshot"
COMMITTED = files.ROOT / "results" / "demo_screenshot.json"

# Strokes in the canvas's 280x280 pixels: a "1" and a "0".
ONE = [[(140, 50), (140, 235)]]
ZERO = [[(140 + 62 * math.sin(2 * math.pi * t / 24), 140 - 92 * math.cos(2 * math.pi * t / 24)) for t in range(25)]]
SHIFT = 3


def browser_missing():
    """Why a browser cannot be driven here, or None where it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "Selenium is not installed (pip install -r requirements.txt)"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "no chromium and chromedriver on PATH (apt-get install chromium chromium-driver)"
    return None


def browser(width=1200, height=780):
    """Headless Chromium, driven through the system's chromedriver (no download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     f"--window-size={width},{height}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def draw(driver, strokes):
    """Draw strokes on the page's pad with real pointer events: press, move through the points, release."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    pad = driver.find_element(By.ID, "pad")
    for stroke in strokes:
        # Offsets are from the pad's centre; ActionChains moves in whole CSS pixels.
        actions = ActionChains(driver).move_to_element_with_offset(pad, round(stroke[0][0] - 140),
                                                                   round(stroke[0][1] - 140)).click_and_hold()
        for (x0, y0), (x1, y1) in zip(stroke, stroke[1:]):
            actions.move_by_offset(round(x1) - round(x0), round(y1) - round(y0))
        actions.release().perform()


def requests(driver):
    """(sent, answered): the page's requests to the server so far."""
    counts = driver.execute_script("return document.body.dataset")
    return int(counts["sent"]), int(counts["answered"])


def predicted(driver, after, timeout=20):
    """{model: digit it reads} from the page, once it has sent more than `after` requests and all are answered."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout).until(lambda d: requests(d)[0] > after and requests(d)[0] == requests(d)[1])
    return {box.get_attribute("data-model"): int(box.find_element(By.CLASS_NAME, "digit").text)
            for box in driver.find_elements(By.CLASS_NAME, "model")}


def serve(checkpoints):
    """demo.py itself, started as a user starts it, on a free port, reading with checkpoints: (its process, the
    address it serves on). RunFailed, with demo.py's own line, where it does not start."""
    process = subprocess.Popen([sys.executable, str(files.ROOT / "demo.py"), "--port", "0",
                                *[part for path in checkpoints for part in ("--checkpoint", str(path))]],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in process.stdout:
        address = re.search(r"http://127\.0\.0\.1:\d+/", line)
        if address:
            return process, address.group(0)
    process.wait()
    raise RunFailed(f"demo.py did not start: {process.stderr.read().strip()}")


def get_args_parser():
    parser = OneLineErrorParser(prog=PROG, description="Draw a 1 on the demo page in headless Chromium, move it "
                                                       "3 px right, and save the page and what the models read.")
    parser.add_argument("--out", type=Path, help="where what the models read goes, as JSON; default: "
                                                 "results/demo_screenshot.json")
    parser.add_argument("--screenshot", type=Path, metavar="PATH",
                        help="where the screenshot goes, a PNG; default: plots/demo.png beside the committed "
                             "results/demo_screenshot.json, else beside --out, named after it")
    return parser


def outputs(args):
    """The JSON and the screenshot to write, checked before any work; the committed screenshot only beside the
    committed JSON, so that the README's picture and its text come from the same run."""
    out = files.check_output(args.out or COMMITTED, "--out")
    return out, output.figure_beside(out, args.screenshot, COMMITTED, files.ROOT / "plots" / "demo.png",
                                    out.with_suffix(".png"), "--screenshot", "picture")


def main(argv=None):
    args = get_args_parser().parse_args(argv)

    def body():
        out, screenshot = outputs(args)
        missing = browser_missing()
        if missing:
            raise UsageError(f"{missing}; the screenshot needs a browser to drive")
        checkpoints = [files.RunPaths.of(files.ROOT, run_name(model)).checkpoint for model in MODEL_NAMES]
        take(checkpoints, out, screenshot)
        return 0
    return run(PROG, body, interrupted=f"{PROG}: interrupted")


def take(checkpoints, out, screenshot):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    server, address = serve(checkpoints)
    try:  # the server is stopped whatever fails, the browser's start included
        driver = browser()
        try:
            driver.get(address)
            draw(driver, ONE)
            centred = predicted(driver, 0)
            sent = requests(driver)[0]
            driver.find_element(By.ID, "shift-x").send_keys(Keys.ARROW_RIGHT * SHIFT)
            shifted = predicted(driver, sent + SHIFT - 1)
            driver.execute_script("window.scrollTo(0, 0)")
            # The PNG's bytes, not save_screenshot: that writes in place, and a full disk would leave half a picture.
            files.save(screenshot, files.atomic_write, lambda f: f.write(driver.get_screenshot_as_png()))
            files.save(out, files.write_json, {"drawn": 1, "shift": [SHIFT, 0], "centred": centred,
                                               "shifted": shifted})
            emit(f"read as {centred}, then moved {SHIFT} px right: {shifted}; wrote {screenshot} and {out}")
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    sys.exit(main())

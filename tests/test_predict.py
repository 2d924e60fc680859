"""predict.py: MNIST-style preprocessing of users' images, checked step by step on images drawn here, and the
command line with good and bad input."""
import errno
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import checkpoints
import dataset
import engine
import files
import predict
import preprocess
from conftest import ROOT, check_advice_in, interrupted_while_starting, png_declaring, start


def drawing(digit, size=(300, 400), offset=(0, 0), scale=1.0, ink=20, paper=235, mode="L", gradient=0.0):
    """A thick "1" or a ring "0", dark on light, drawn with PIL; optionally moved, scaled, or lit unevenly."""
    image = Image.new(mode, size, paper if mode == "L" else (paper,) * 3)
    draw = ImageDraw.Draw(image)
    cx, cy = size[0] / 2 + offset[0], size[1] / 2 + offset[1]
    if digit == 1:
        draw.line([(cx, cy - 130 * scale), (cx, cy + 130 * scale)], fill=ink if mode == "L" else (ink,) * 3,
                  width=round(26 * scale))
    else:
        draw.ellipse([cx - 75 * scale, cy - 120 * scale, cx + 75 * scale, cy + 120 * scale],
                     outline=ink if mode == "L" else (ink,) * 3, width=round(26 * scale))
    if gradient:
        pixels = np.asarray(image.convert("L"), dtype=np.float32)
        ramp = np.linspace(-gradient / 2, gradient / 2, size[0])[None, :] * 255
        image = Image.fromarray(np.clip(pixels + ramp, 0, 255).astype(np.uint8))
    return image


def similar(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = dataset.read_split(train=False)
    return images.numpy(), labels


def test_the_mnist_constants_are_measured_on_the_training_set():
    digits = dataset.read_split(train=True)[0].double() / 255
    mass = digits.sum((1, 2))
    rows = (digits.sum(2) * torch.arange(28)).sum(1) / mass
    cols = (digits.sum(1) * torch.arange(28)).sum(1) / mass
    assert rows.mean().item() == pytest.approx(preprocess.MASS_CENTRE, abs=0.05)
    assert cols.mean().item() == pytest.approx(preprocess.MASS_CENTRE, abs=0.05)
    heights = (digits > 0).any(2).sum(1)
    assert ((digits > 0.5).sum((1, 2)) / heights).mean().item() == pytest.approx(preprocess.STROKE, abs=0.1)


def test_transparency_is_composited_onto_white():
    image = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image.putpixel((5, 5), (0, 0, 0, 255))
    grey = np.asarray(preprocess.to_grey(image))
    assert grey[5, 5] == 0 and (grey == 255).sum() == 99
    palette = Image.new("P", (4, 4), 0)
    palette.info["transparency"] = 0
    assert (np.asarray(preprocess.to_grey(palette)) == 255).all()


def test_dark_ink_on_light_paper_comes_out_white_on_black():
    field = preprocess.mnist_like(drawing(1))
    assert field.shape == (28, 28) and field.dtype == np.float32
    assert field.max() == pytest.approx(1.0) and field.min() == 0.0
    assert field[:, :4].max() == 0 and field[:, -4:].max() == 0  # the paper around the stroke is blank


def test_the_ink_is_scaled_to_20_pixels_and_centred_by_mass():
    for digit in (0, 1):
        field = preprocess.mnist_like(drawing(digit, scale=0.6))
        rows = np.nonzero(field.max(1) > 0.3)[0]
        assert 19 <= rows.max() - rows.min() + 1 <= 21
        mass = field.sum()
        centre = ((np.arange(28)[:, None] * field).sum() / mass, (np.arange(28)[None, :] * field).sum() / mass)
        assert centre == pytest.approx((preprocess.MASS_CENTRE, preprocess.MASS_CENTRE), abs=0.5)


@pytest.mark.parametrize("digit", [0, 1])
@pytest.mark.parametrize("change", ["shifted", "smaller", "inverted", "gradient", "rgb"])
def test_the_same_digit_changed_gives_nearly_the_same_field(digit, change):
    reference = preprocess.mnist_like(drawing(digit))
    changed = {
        "shifted": lambda: drawing(digit, size=(500, 420), offset=(120, -20)),
        "smaller": lambda: drawing(digit, scale=0.4),
        "inverted": lambda: drawing(digit, ink=235, paper=20),
        "gradient": lambda: drawing(digit, gradient=0.45),
        "rgb": lambda: drawing(digit, mode="RGB"),
    }[change]()
    field = preprocess.mnist_like(changed)
    assert similar(field, reference) > 0.9
    assert np.abs(field - reference).mean() < 0.05


def test_a_thin_pen_stroke_is_thickened_towards_mnists():
    thin = preprocess.mnist_like(drawing(0, scale=1.0).resize((300, 400)))
    pen = Image.new("L", (300, 400), 235)
    ImageDraw.Draw(pen).ellipse([75, 80, 225, 320], outline=20, width=3)
    field = preprocess.mnist_like(pen)
    assert (field > 0.5).sum() > 0.6 * (thin > 0.5).sum()


def test_mnist_digits_come_through_nearly_unchanged(mnist_test):
    images, _ = mnist_test
    diffs = [np.abs(preprocess.mnist_like(Image.fromarray(image)) - image / 255).mean() for image in images[:300]]
    assert np.mean(diffs) < 0.005 and max(diffs) < 0.1


@pytest.mark.parametrize("image", ["uniform", "noise"])
def test_an_image_without_ink_is_blank(image):
    if image == "uniform":
        blank = Image.new("L", (120, 90), 200)
    else:
        blank = Image.fromarray(np.random.default_rng(0).normal(200, 6, (90, 120)).clip(0, 255).astype(np.uint8))
    with pytest.raises(preprocess.Blank):
        preprocess.mnist_like(blank)


def test_mnist_pngs_read_from_files_get_the_same_predictions_as_the_tensors(trained_runs, mnist_test, tmp_path):
    images, labels = mnist_test
    count = 500
    for i in range(count):
        Image.fromarray(images[i]).save(tmp_path / f"{i:04d}.png")
    model, _ = checkpoints.load_model(trained_runs / "checkpoints" / "lenet5_seed0.pt", torch.device("cpu"))
    direct = engine.probabilities(model, dataset.load_splits()[2][:count]).argmax(1)
    fields = [preprocess.read(tmp_path / f"{i:04d}.png")[1] for i in range(count)]
    from_files = engine.probabilities(model, preprocess.normalize(fields)).argmax(1)
    assert (from_files == direct).double().mean().item() >= 0.99
    assert (from_files == labels[:count]).double().mean().item() > 0.95


# ---------------------------------------------------------------- the command line

@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    drawing(1).save(folder / "one.png")
    drawing(0, mode="RGB").save(folder / "zero.jpg", quality=80)
    Image.new("L", (100, 100), 255).save(folder / "blank.png")
    (folder / "fake.png").write_text("not an image")
    png = (folder / "one.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[:len(png) // 2])
    (folder / "empty").mkdir()
    (folder / "no-images").mkdir()
    (folder / "no-images" / "notes.txt").write_text("")
    return folder


@pytest.fixture
def run_predict(capsys):
    """predict.py in-process: run_predict(*argv) returns (exit status, stdout, stderr), each flag its refusals name
    checked to be one predict.py accepts."""
    def run(*argv):
        status = predict.main(predict.get_args_parser().parse_args([str(a) for a in argv]))
        out, err = capsys.readouterr()
        check_advice_in("predict", err)
        return status, out, err
    return run


def test_predict_runs_as_a_program(trained_runs, images):
    process = start("predict.py", images / "one.png", "--checkpoint", trained_runs / "checkpoints" / "lenet5_seed0.pt")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0 and out.startswith(f"{images / 'one.png'}: 1 (") and "Traceback" not in err


def test_good_images_are_read_and_blank_ones_reported(trained_runs, images, tmp_path, run_predict):
    checkpoint = trained_runs / "checkpoints" / "lenet5_seed0.pt"
    status, out, err = run_predict(images / "one.png", images / "zero.jpg", images / "blank.png", "--checkpoint",
                                   checkpoint, "--top", "3", "--preview", tmp_path / "preview.png")
    assert status == 0 and "Traceback" not in err
    lines = out.splitlines()
    assert lines[0].startswith(f"{images / 'one.png'}: 1 (") and lines[0].count("%") == 3
    assert lines[1].startswith(f"{images / 'zero.jpg'}: 0 (")
    assert lines[2] == f"{images / 'blank.png'}: blank, no ink found"
    assert (tmp_path / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_json_output_parses_and_holds_the_fields(trained_runs, images, run_predict):
    status, out, _ = run_predict(images / "one.png", images / "blank.png", images / "fake.png", "--json", "--top",
                                 "2", "--checkpoint", trained_runs / "checkpoints" / "custom_mlp_seed0.pt")
    assert status == 1
    one, blank, fake = json.loads(out)
    assert one["file"] == str(images / "one.png") and one["digit"] == 1
    assert [entry["digit"] for entry in one["top"]][0] == 1 and len(one["top"]) == 2
    assert len(one["probabilities"]) == 10 and sum(one["probabilities"]) == pytest.approx(1, abs=1e-4)
    assert one["probability"] == max(one["probabilities"])
    assert blank == {"file": str(images / "blank.png"), "blank": True}
    assert fake["file"] == str(images / "fake.png") and "not an image" in fake["error"]


def test_bad_inputs_are_reported_and_the_good_ones_still_read(trained_runs, images, run_predict):
    status, out, err = run_predict(images, images / "empty", images / "no-images", images / "missing.png",
                                   "--checkpoint", trained_runs / "checkpoints" / "lenet5_seed0.pt")
    assert status == 1 and "Traceback" not in err
    problems = {line.split(": ")[2]: line for line in err.splitlines() if line.startswith("predict.py: error:")}
    assert set(problems) == {str(images / name) for name in ("fake.png", "truncated.png", "empty", "no-images",
                                                              "missing.png")}
    assert "not an image" in problems[str(images / "fake.png")]
    assert "truncated" in problems[str(images / "truncated.png")]
    assert "an empty folder" in problems[str(images / "empty")]
    assert "a folder with no images" in problems[str(images / "no-images")]
    assert "no such file or folder" in problems[str(images / "missing.png")]
    assert f"{images / 'one.png'}: 1 (" in out and f"{images / 'zero.jpg'}: 0 (" in out


@pytest.mark.parametrize("case", ["no checkpoint at all", "missing", "not a checkpoint", "other model"])
def test_a_missing_or_incompatible_checkpoint_is_exit_2(case, trained_runs, images, tmp_path, monkeypatch,
                                                        run_predict):
    (tmp_path / "junk.pt").write_bytes(b"junk")
    argv = {"no checkpoint at all": [], "missing": ["--checkpoint", tmp_path / "none.pt"],
            "not a checkpoint": ["--checkpoint", tmp_path / "junk.pt"],
            "other model": ["--model", "lenet5_regularized", "--checkpoint",
                            trained_runs / "checkpoints" / "lenet5_seed0.pt"]}[case]
    if case == "no checkpoint at all":
        monkeypatch.setattr(files, "DEFAULT_OUT_DIR", tmp_path)
    status, out, err = run_predict(images / "one.png", *argv)
    assert status == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
    if case == "no checkpoint at all":
        assert "train one with `python main.py --model lenet5_regularized`" in err


def test_a_checkpoint_flag_naming_another_file_is_never_advised_deleted(trained_runs, images, tmp_path, run_predict):
    results = tmp_path / "lenet5_seed0.json"  # a committed results file, as results/ holds them
    shutil.copy(trained_runs / "results" / "lenet5_seed0.json", results)
    status, out, err = run_predict(images / "one.png", "--checkpoint", results)
    assert status == 2 and out == "" and err == (f"predict.py: error: --checkpoint: {results} is not a checkpoint of "
                                                 f"main.py (BadZipFile); pass the .pt file that main.py wrote\n")
    assert results.read_bytes() == (trained_runs / "results" / "lenet5_seed0.json").read_bytes()
    status, out, _ = run_predict(images / "one.png", "--checkpoint", trained_runs / "checkpoints" / "lenet5_seed0.pt")
    assert status == 0 and f"{images / 'one.png'}: 1 (" in out  # as advised


def test_the_default_is_the_best_finished_checkpoint(trained_runs, tmp_path):
    best = checkpoints.best_checkpoint(trained_runs)
    accuracies = {path.name: checkpoints.read(path)["history"][-1]["eval_acc"]
                  for path in (trained_runs / "checkpoints").glob("*.pt")}
    assert best.name == max(accuracies, key=accuracies.get)
    assert checkpoints.best_checkpoint(trained_runs, "custom_mlp").name == "custom_mlp_seed0.pt"
    assert checkpoints.best_checkpoint(tmp_path) is None


# ---------------------------------------------------------------- what careless and hostile users give it

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WITHOUT_ROOTS_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                          "--inh-caps=-dac_override,-dac_read_search"]


@pytest.fixture
def checkpoint(trained_runs):
    return trained_runs / "checkpoints" / "lenet5_seed0.pt"


def run_program(*argv, stdout=subprocess.PIPE, **kwargs):
    """predict.py as a child process: (exit status, stdout bytes, stderr text)."""
    process = subprocess.run([sys.executable, str(ROOT / "predict.py"), *map(str, argv)], stdout=stdout,
                             stderr=subprocess.PIPE, timeout=120, **kwargs)
    check_advice_in("predict", process.stderr.decode(errors="replace"))
    return process.returncode, process.stdout, process.stderr.decode()


def errors(err):
    """The error lines on standard error, after the line that names the checkpoint."""
    return [line for line in err.splitlines() if not line.startswith("reading with ")]


def with_zero_length_idat(png):
    """A PNG whose IDAT chunk claims length 0: Pillow raises SyntaxError on it, not OSError."""
    offset = png.index(b"IDAT") - 4
    return png[:offset] + b"\0\0\0\0" + png[offset + 4:]


@pytest.mark.parametrize("case", ["an input", "an input through a folder not yet made", "in a folder being read",
                                  "a folder", "a named pipe", "not a .png", "a read-only file"])
def test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work(case, checkpoint, tmp_path,
                                                                                  run_predict):  # case 1
    scans = tmp_path / "scans"
    scans.mkdir()
    drawing(1).save(scans / "a.png")
    drawing(0).save(tmp_path / "b.png")
    (tmp_path / "charts.png").mkdir()
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "kept.png").write_bytes(b"mine")
    (tmp_path / "kept.png").chmod(0o444)
    inputs, preview = {"an input": ([scans / "a.png", tmp_path / "b.png"], scans / "a.png"),
                       "an input through a folder not yet made": ([scans / "a.png"], scans / "nosuch" / ".." / "a.png"),
                       "a read-only file": ([scans], tmp_path / "kept.png"),
                       "in a folder being read": ([scans], scans / "new.png"),
                       "a folder": ([scans], tmp_path / "charts.png"),
                       "a named pipe": ([scans], tmp_path / "pipe.png"),
                       "not a .png": ([scans], tmp_path / "preview.jpg")}[case]
    before = (scans / "a.png").read_bytes()
    status, out, err = run_predict(*inputs, "--checkpoint", checkpoint, "--preview", preview)
    assert status == 2 and out == "" and err.count("\n") == 1 and err.startswith("predict.py: error: --preview")
    assert (scans / "a.png").read_bytes() == before and sorted(p.name for p in scans.iterdir()) == ["a.png"]
    assert stat.S_ISFIFO((tmp_path / "pipe.png").stat().st_mode) and (tmp_path / "charts.png").is_dir()
    assert (tmp_path / "kept.png").read_bytes() == b"mine"


def test_a_file_name_that_reads_as_mathtext_is_drawn_as_it_is(checkpoint, tmp_path, run_predict):
    drawing(1).save(tmp_path / "$\\foo$ a$^$b.png")
    status, _, err = run_predict(tmp_path / "$\\foo$ a$^$b.png", "--checkpoint", checkpoint, "--preview",
                                 tmp_path / "preview.png")
    assert status == 0 and "Traceback" not in err and (tmp_path / "preview.png").is_file()


def test_an_empty_path_is_refused_rather_than_read_as_the_current_folder(capsys):  # an unset "$DIR"
    with pytest.raises(SystemExit) as exit:
        predict.get_args_parser().parse_args([""])
    assert exit.value.code == 2 and "an empty path; name an image or a folder" in capsys.readouterr().err


def test_a_corrupt_file_is_one_line_and_the_rest_are_read(checkpoint, tmp_path, run_predict):  # case 2
    drawing(1).save(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(with_zero_length_idat((tmp_path / "good.png").read_bytes()))
    drawing(0).save(tmp_path / "good2.png")
    status, out, err = run_predict(*(tmp_path / name for name in ("good.png", "broken.png", "good2.png")),
                                   "--checkpoint", checkpoint)
    assert status == 1 and "Traceback" not in err
    assert [line.split(" (")[0] for line in out.splitlines()] == [f"{tmp_path}/good.png: 1", f"{tmp_path}/good2.png: 0"]
    [problem] = errors(err)
    assert problem.startswith(f"predict.py: error: {tmp_path}/broken.png: cannot decode it (broken PNG file")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv")
def test_unreadable_files_folders_and_checkpoints_are_one_line_each(checkpoint, tmp_path):  # cases 5 and 16
    drawing(1).save(tmp_path / "good.png")
    (tmp_path / "locked").mkdir()
    drawing(0).save(tmp_path / "locked" / "inside.png")
    shutil.copy(tmp_path / "good.png", tmp_path / "secret.png")
    shutil.copy(checkpoint, tmp_path / "secret.pt")
    for path in ("locked", "secret.png", "secret.pt"):
        (tmp_path / path).chmod(0)
    # Both commands in one process, to import torch once; without root's override, as a user runs them.
    both = ("import sys, predict; parse = predict.get_args_parser().parse_args; "
            f"print(predict.main(parse([{str(tmp_path / 'locked')!r}, {str(tmp_path / 'secret.png')!r}, "
            f"{str(tmp_path / 'good.png')!r}, '--checkpoint', {str(checkpoint)!r}])), flush=True); "
            f"print(predict.main(parse([{str(tmp_path / 'good.png')!r}, '--checkpoint', "
            f"{str(tmp_path / 'secret.pt')!r}])))")
    try:
        process = subprocess.run([*WITHOUT_ROOTS_OVERRIDE, sys.executable, "-c", both], capture_output=True,
                                 text=True, timeout=120, cwd=ROOT)
    finally:
        (tmp_path / "locked").chmod(0o755)
    out = process.stdout.splitlines()
    assert out[0].startswith(f"{tmp_path}/good.png: 1 (") and out[1:] == ["1", "2"], process.stderr
    assert errors(process.stderr) == [
        f"predict.py: error: {tmp_path}/locked: a folder, not readable (Permission denied); check its permissions",
        f"predict.py: error: {tmp_path}/secret.png: not readable (Permission denied); check its permissions",
        f"predict.py: error: --checkpoint: {tmp_path}/secret.pt is not readable (Permission denied); check its "
        f"permissions"]


def test_file_names_that_are_not_utf8_or_hold_a_newline_give_valid_output(checkpoint, tmp_path, monkeypatch,
                                                                           capsys):  # case 6
    folder = os.fsencode(tmp_path)
    for name in (b"bad\xff.png", b"new\nline.png"):
        drawing(1).save(os.path.join(folder, name).decode(errors="surrogateescape"))
    for json_output in (False, True):
        stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)
        monkeypatch.setattr(sys, "stdout", stdout)  # as a terminal under en_US.UTF-8 takes it
        status = predict.main(predict.get_args_parser().parse_args(
            [str(tmp_path), "--checkpoint", str(checkpoint)] + (["--json"] if json_output else [])))
        written = stdout.buffer.getvalue().decode("utf-8")
        assert status == 0
        if json_output:
            assert [entry["file"] for entry in json.loads(written)] == [f"{tmp_path}/bad\\xff.png",
                                                                        f"{tmp_path}/new\nline.png"]
        else:
            assert [line.split(": ")[0] for line in written.splitlines()] == [f"{tmp_path}/bad\\xff.png",
                                                                             f"{tmp_path}/new\\nline.png"]
    assert "Traceback" not in capsys.readouterr().err


def test_reading_the_worst_allowed_images_takes_under_600_mb(tmp_path):  # case 7
    # 7071x7071 is 49,999,041 pixels, just under the cap; all transparent, a few hundred KB on disk each. The most
    # memory per pixel: a palette with a transparent entry, which becomes RGBA. Two RGBA ones before it: decoded in
    # turn by different threads, they must not add up.
    side = 7071
    for name, colour_type, samples, extra in (("worst1.png", 6, 4, {}),
                                              ("worst3.png", 3, 1, dict(palette=bytes(768), transparent=b"\0"))):
        compressor = zlib.compressobj(1)
        rows = b"".join(compressor.compress(bytes(1 + samples * side)) for _ in range(side)) + compressor.flush()
        (tmp_path / name).write_bytes(png_declaring(side, side, rows, colour_type=colour_type, **extra))
    os.link(tmp_path / "worst1.png", tmp_path / "worst2.png")
    drawing(1).save(tmp_path / "worst4.png")
    (tmp_path / "worst5.png").write_bytes(png_declaring(13000, 13000))  # the bomb: refused before decoding
    # predict.py's own reading path, its threads included, without the model: torch alone takes 0.6 GB here.
    measure = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    read = ("import sys, predict; print([outcome if isinstance(outcome, str) else outcome[1] is None for batch in "
            "predict.readings(predict.find_images(sys.argv[1:]), False) for _, outcome in batch])")
    result = subprocess.run([sys.executable, "-c", measure, sys.executable, "-c", read,
                             *sorted(tmp_path.glob("worst*.png"))], capture_output=True, text=True, timeout=120,
                            cwd=ROOT)
    outcomes, peak_kb = result.stdout.splitlines()
    assert outcomes == str([True, True, True, False, "13000x13000 pixels, over 50,000,000; scale it down"])
    assert int(peak_kb) < 600 * 1024, f"peak {int(peak_kb) // 1024} MB"  # 0.51 GB when this was written


def test_results_print_as_they_are_ready_in_order(checkpoint, tmp_path, monkeypatch, capsys):  # case 7
    for name in ("a", "b", "c"):
        drawing(1).save(tmp_path / f"{name}.png")
    release, read = threading.Event(), predict.read

    def slow_for_c(path, thumbnail=False):
        if path.name == "c.png":
            release.wait(30)
        return read(path, thumbnail)
    monkeypatch.setattr(predict, "read", slow_for_c)
    args = predict.get_args_parser().parse_args([str(tmp_path), "--checkpoint", str(checkpoint)])
    outcome = []
    reader = threading.Thread(target=lambda: outcome.append(predict.main(args)))
    reader.start()
    printed, deadline = "", time.monotonic() + 30
    while printed.count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        printed += capsys.readouterr().out
    release.set()
    reader.join(30)
    printed += capsys.readouterr().out
    assert [line.split(":")[0] for line in printed.splitlines()] == [f"{tmp_path}/{n}.png" for n in "abc"]
    assert outcome == [0] and time.monotonic() < deadline  # a and b came out while c was still being read


def test_no_full_size_copy_is_kept(tmp_path):  # case 7: a 1-bit scan once kept a full-size RGBA thumbnail
    scan = drawing(1, size=(4000, 3000), scale=8).convert("1", dither=Image.Dither.NONE)
    scan.save(tmp_path / "scan.png")
    thumbnail, field = predict.read(tmp_path / "scan.png")
    assert thumbnail is None and field is not None
    thumbnail, _ = predict.read(tmp_path / "scan.png", thumbnail=True)
    assert max(thumbnail.size) <= 256


def test_a_reader_that_goes_away_ends_it_quietly(checkpoint, tmp_path):  # case 8: `predict.py many/ | head -1`
    for i in range(200):
        drawing(i % 2, size=(60, 80), scale=0.2).save(tmp_path / f"{i:03d}.png")
    process = subprocess.Popen([sys.executable, ROOT / "predict.py", tmp_path, "--json", "--top", "10",
                                "--checkpoint", checkpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"[\n"
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(60) == 141 and errors(err) == []


def test_a_full_disk_for_the_output_is_one_line(checkpoint, tmp_path, monkeypatch, capsys):  # case 8: > /dev/full
    drawing(1).save(tmp_path / "one.png")
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        status = predict.main(predict.get_args_parser().parse_args([str(tmp_path / "one.png"), "--checkpoint",
                                                                    str(checkpoint)]))
    assert status == 1 and errors(capsys.readouterr().err) == [
        "predict.py: error: cannot write the output (No space left on device); free some space or send it elsewhere"]


@pytest.mark.parametrize("where", ["a new folder", "/proc", "a read-only folder", "a disk that fills up"])
def test_a_preview_that_cannot_be_written_is_one_line(where, checkpoint, tmp_path, monkeypatch, request,
                                                      run_predict):  # case 8
    drawing(1).save(tmp_path / "one.png")
    preview = {"a new folder": tmp_path / "new" / "deeper" / "preview.png", "/proc": Path("/proc/preview.png"),
               "a read-only folder": tmp_path / "preview.png", "a disk that fills up": tmp_path / "preview.png"}[where]
    if where == "a read-only folder":
        request.getfixturevalue("read_only_probe")
    if where == "a disk that fills up":
        def full(path, fig):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(files, "save_figure", full)
    status, out, err = run_predict(tmp_path / "one.png", "--checkpoint", checkpoint, "--preview", preview)
    if where == "a new folder":
        assert status == 0 and preview.read_bytes()[:8] == PNG_SIGNATURE
        return
    assert "Traceback" not in err and len(errors(err)) == 1, err
    if where == "a disk that fills up":  # found only at the end: the results are out, and the exit status says so
        assert status == 1 and out.startswith(f"{tmp_path}/one.png: 1 (")
        assert errors(err)[0] == (f"predict.py: error: cannot write {preview} (No space left on device); free some "
                                  f"space or pass another --preview")
    else:  # found before any image is read
        assert status == 2 and out == "" and f"--preview {preview} cannot be written (" in err


def test_ctrl_c_while_starting_is_one_line(checkpoint, tmp_path):  # case 9
    drawing(1).save(tmp_path / "one.png")
    status, out, err = interrupted_while_starting("predict.py", tmp_path / "one.png", "--checkpoint", checkpoint)
    assert status == 130 and out == "" and err.strip() == "predict.py: interrupted", err


def test_what_is_not_an_image_file_is_named_for_what_it_is(checkpoint, tmp_path, run_predict):  # case 16
    os.mkfifo(tmp_path / "pipe.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "gone.png").symlink_to("nowhere.png")
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "folder" / "inside.png")
    status, out, err = run_predict(*(tmp_path / name for name in ("pipe.png", "loop.png", "gone.png", "folder")),
                                   "/dev/zero", "--checkpoint", checkpoint)
    assert status == 1 and out == ""
    assert errors(err) == [f"predict.py: error: {tmp_path}/pipe.png: a named pipe (FIFO), not an image file",
                           f"predict.py: error: {tmp_path}/loop.png: a symbolic link loop",
                           f"predict.py: error: {tmp_path}/gone.png: a broken symbolic link",
                           f"predict.py: error: {tmp_path}/folder/inside.png: a named pipe (FIFO), not an image file",
                           "predict.py: error: /dev/zero: a device, not an image file"]


def test_white_ink_on_a_transparent_background_reads_as_dark_ink_does():  # case 17
    dark = drawing(1)
    alpha = Image.eval(dark, lambda v: 255 - v)  # the ink opaque, the paper transparent
    for ink in (0, 255):
        transparent = Image.merge("LA", (Image.new("L", dark.size, ink), alpha))
        np.testing.assert_allclose(preprocess.mnist_like(transparent), preprocess.mnist_like(dark), atol=0.05)


def test_a_digit_cropped_without_a_margin_reads_as_with_one(mnist_test):  # case 17
    images, _ = mnist_test
    for digit in images[:20]:
        rows, cols = np.nonzero(digit)
        cropped = 255 - digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]  # dark ink, touching each edge
        photo = Image.fromarray(cropped).resize((cropped.shape[1] * 10, cropped.shape[0] * 10),
                                                Image.Resampling.BILINEAR)
        assert similar(preprocess.mnist_like(photo), preprocess.mnist_like(Image.fromarray(digit))) > 0.75

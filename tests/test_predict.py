"""predict.py: MNIST-style preprocessing of users' images, checked step by step on images drawn here, and the
command line with good and bad input."""
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import dataset
import predict
from helpers import PNGS, ROOT, drawing, guards, interrupted_while_starting, nan_answers, similar, start
from mnistlab import checkpoints, engine, figures, files, preprocess
from mnistlab.errors import UsageError


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = dataset.read_split(train=False)
    return images.numpy(), labels


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


WITHOUT_ROOTS_OVERRIDE = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                          "--inh-caps=-dac_override,-dac_read_search"]


def errors(err):
    """The error lines on standard error, after the line that names the checkpoint."""
    return [line for line in err.splitlines() if not line.startswith("reading with ")]


def with_zero_length_idat(png):
    """A PNG whose IDAT chunk claims length 0: Pillow raises SyntaxError on it, not OSError."""
    offset = png.index(b"IDAT") - 4
    return png[:offset] + b"\0\0\0\0" + png[offset + 4:]


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


@guards("mnistlab/preprocess.py",
        "an unreadable image is a problem line, not a crash",
        "    try:\n        image = images.open_image(path)\n    except images.Unreadable as e:\n        return str(e)\n",
        "    image = images.open_image(path)\n")
@guards("predict.py",
        "find_images: an argument that cannot be looked at is a problem line",
        "        try:\n            mode = path.stat().st_mode\n        except OSError as e:\n"
        "            yield path, str(paths.problem(e, path))\n            continue\n",
        "        mode = path.stat().st_mode\n")
@guards("predict.py",
        "find_images: only files named as images are read from a folder",
        "        if path.suffix.lower() in images.EXTENSIONS:\n",
        "        if True:\n")
@guards("predict.py",
        "find_images: a folder with no images is a problem line",
        "    if not found:\n        yield folder",
        "    if False:\n        yield folder")
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


@guards("predict.py",
        "no checkpoint: exit 2, saying how to train one",
        "    if checkpoint is None:\n        raise UsageError",
        "    if False:\n        raise UsageError")
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


def test_the_default_is_the_best_finished_checkpoint(trained_runs, tmp_path):
    best = checkpoints.best_checkpoint(trained_runs)
    accuracies = {path.name: checkpoints.read(path)["history"][-1]["eval_acc"]
                  for path in (trained_runs / "checkpoints").glob("*.pt")}
    assert best.name == max(accuracies, key=accuracies.get)
    assert checkpoints.best_checkpoint(trained_runs, "custom_mlp").name == "custom_mlp_seed0.pt"
    assert checkpoints.best_checkpoint(tmp_path) is None


@guards("predict.py",
        "--preview: a name that does not end in .png refused",
        '    if preview.suffix.lower() != ".png":\n',
        "    if False:\n",
        case='not a .png')
@guards("predict.py",
        "--preview: a folder or anything but a regular file refused",
        "    if mode is not None and not stat.S_ISREG(mode):\n",
        "    if False:\n",
        case='a folder')
@guards("predict.py",
        "--preview: a read-only file refused",
        "    if mode is not None and not mode & 0o222:\n",
        "    if False:\n",
        case='a read-only file')
@guards("predict.py",
        "--preview: a file in a folder being read refused",
        "        if given.is_dir() and preview.parent.exists() and preview.parent.samefile(given):\n",
        "        if False:\n",
        case='in a folder being read')
@guards("predict.py",
        "--preview: one of the inputs refused",
        "        if mode is not None and given.exists() and preview.samefile(given):\n",
        "        if False:\n",
        case='an input')
@guards("predict.py",
        "--preview: resolved as the kernel will resolve it (nosuch/.. and links)",
        "    preview = Path(os.path.realpath(given_path))",
        "    preview = Path(given_path)",
        case='an input through a folder not yet made')
@pytest.mark.parametrize("case", ["an input", "an input through a folder not yet made", "in a folder being read",
                                  "a folder", "a named pipe", "not a .png", "a read-only file"])
def test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work(case, checkpoint, tmp_path,
                                                                                  run_predict):
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


@guards("predict.py",
        "an empty path refused, not read as the current folder",
        "    if not text:\n        raise argparse.ArgumentTypeError",
        "    if False:\n        raise argparse.ArgumentTypeError")
def test_an_empty_path_is_refused_rather_than_read_as_the_current_folder(capsys):  # an unset "$DIR"
    with pytest.raises(SystemExit) as exit:
        predict.get_args_parser().parse_args([""])
    assert exit.value.code == 2 and "an empty path; name an image or a folder" in capsys.readouterr().err


def test_a_corrupt_file_is_one_line_and_the_rest_are_read(checkpoint, tmp_path, run_predict):
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


def test_results_print_as_they_are_ready_in_order(checkpoint, tmp_path, monkeypatch, capsys):
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


def test_a_reader_that_goes_away_ends_it_quietly(checkpoint, tmp_path):
    for i in range(200):
        drawing(i % 2, size=(60, 80), scale=0.2).save(tmp_path / f"{i:03d}.png")
    process = subprocess.Popen([sys.executable, ROOT / "predict.py", tmp_path, "--json", "--top", "10",
                                "--checkpoint", checkpoint], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"[\n"
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(60) == 141 and errors(err) == []


def test_a_full_disk_for_the_output_is_one_line(checkpoint, tmp_path, monkeypatch, capsys):
    drawing(1).save(tmp_path / "one.png")
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        status = predict.main(predict.get_args_parser().parse_args([str(tmp_path / "one.png"), "--checkpoint",
                                                                    str(checkpoint)]))
    assert status == 1 and errors(capsys.readouterr().err) == [
        "predict.py: error: cannot write the output (No space left on device); free some space or send it elsewhere"]


@guards("predict.py",
        "--preview: a folder that cannot be written refused before any image is read",
        "    try:\n        files.make_writable(preview.parent)\n    except OSError as e:\n"
        "        raise UsageError(f\"--preview {printable(preview)} cannot be written ({e.strerror or e}); pass "
        "another \"\n"
        "                         f\"path\") from None\n",
        "    files.make_writable(preview.parent)\n")
@guards("predict.py",
        "--preview: a preview that cannot be saved is one line, exit 1",
        "        try:\n            files.save_figure(args.preview, figures.predictions(preview_rows, total=read_count))\n"
        "        except OSError as e:\n",
        "        files.save_figure(args.preview, figures.predictions(preview_rows, total=read_count))\n"
        "        if False:\n")
@pytest.mark.parametrize("where", ["a new folder", "/proc", "a read-only folder", "a disk that fills up"])
def test_a_preview_that_cannot_be_written_is_one_line(where, checkpoint, tmp_path, monkeypatch, request,
                                                      run_predict):
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


def test_ctrl_c_while_starting_is_one_line(checkpoint, tmp_path):
    drawing(1).save(tmp_path / "one.png")
    status, out, err = interrupted_while_starting("predict.py", tmp_path / "one.png", "--checkpoint", checkpoint)
    assert status == 130 and out == "" and err.strip() == "predict.py: interrupted", err


def test_what_is_not_an_image_file_is_named_for_what_it_is(checkpoint, tmp_path, run_predict):
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


def test_white_ink_on_a_transparent_background_reads_as_dark_ink_does():
    dark = drawing(1)
    alpha = Image.eval(dark, lambda v: 255 - v)  # the ink opaque, the paper transparent
    for ink in (0, 255):
        transparent = Image.merge("LA", (Image.new("L", dark.size, ink), alpha))
        np.testing.assert_allclose(preprocess.mnist_like(transparent), preprocess.mnist_like(dark), atol=0.05)


def test_a_digit_cropped_without_a_margin_reads_as_with_one(mnist_test):
    images, _ = mnist_test
    for digit in images[:20]:
        rows, cols = np.nonzero(digit)
        cropped = 255 - digit[rows.min():rows.max() + 1, cols.min():cols.max() + 1]  # dark ink, touching each edge
        photo = Image.fromarray(cropped).resize((cropped.shape[1] * 10, cropped.shape[0] * 10),
                                                Image.Resampling.BILINEAR)
        assert similar(preprocess.mnist_like(photo), preprocess.mnist_like(Image.fromarray(digit))) > 0.75


@pytest.mark.parametrize("link", ["symbolic", "hard", "symbolic to its folder"])
def test_a_preview_that_reaches_an_input_through_a_link_is_refused(link, tmp_path):
    (tmp_path / "scans").mkdir()
    image = tmp_path / "scans" / "a.png"
    image.write_bytes(PNGS[1])
    if link == "symbolic to its folder":
        (tmp_path / "elsewhere").symlink_to(tmp_path / "scans")
        preview = tmp_path / "elsewhere" / "a.png"
    else:
        preview = tmp_path / "preview.png"
        (preview.symlink_to if link == "symbolic" else preview.hardlink_to)(image)
    with pytest.raises(UsageError, match="is one of the images to read; write the preview elsewhere"):
        predict.check_preview(preview, [str(image)])
    assert image.read_bytes() == PNGS[1]


@guards("predict.py",
        "find_images: an argument that is not a regular file is refused",
        '            yield path, None if stat.S_ISREG(mode) else f"{paths.kind(mode)}, not an image file"',
        "            yield path, None")
def test_find_images_names_an_argument_that_is_not_a_file(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    assert list(predict.find_images([str(tmp_path / "pipe.png"), "/dev/null"])) == [
        (tmp_path / "pipe.png", "a named pipe (FIFO), not an image file"), (Path("/dev/null"), "a device, not an image file")]


@guards("predict.py",
        "find_images: a file in a folder that cannot be looked at is a problem line",
        "        try:\n            mode = path.stat().st_mode\n        except OSError as e:\n"
        "            problem = str(paths.problem(e, path))\n        else:\n",
        "        mode = path.stat().st_mode\n        if True:\n")
@guards("predict.py",
        "find_images: subfolders are not opened",
        "            if stat.S_ISDIR(mode):\n                continue\n",
        "")
@guards("predict.py",
        "find_images: a file in a folder that is not a regular file is refused",
        '            problem = None if stat.S_ISREG(mode) else f"{paths.kind(mode)}, not an image file"',
        "            problem = None")
def test_find_images_in_a_folder_names_what_it_cannot_read_and_skips_subfolders(tmp_path):
    (tmp_path / "a.png").write_bytes(PNGS[1])
    os.mkfifo(tmp_path / "b.png")
    (tmp_path / "c.png").symlink_to("nowhere.png")
    (tmp_path / "d.png").mkdir()
    (tmp_path / "d.png" / "e.png").write_bytes(PNGS[1])
    (tmp_path / "notes.txt").write_text("")
    assert list(predict.find_images([str(tmp_path)])) == [
        (tmp_path / "a.png", None), (tmp_path / "b.png", "a named pipe (FIFO), not an image file"),
        (tmp_path / "c.png", "a broken symbolic link")]


@guards("predict.py",
        "find_images: a folder that cannot be listed is a problem line",
        "    try:\n        entries = sorted(folder.iterdir())\n    except OSError as e:\n"
        "        yield folder, f\"a folder, {paths.problem(e, folder)}\"\n        return\n",
        "    entries = sorted(folder.iterdir())\n")
def test_a_folder_that_cannot_be_listed_is_one_problem(tmp_path, monkeypatch):
    def refused(self):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))
    monkeypatch.setattr(Path, "iterdir", refused)
    assert list(predict.find_images([str(tmp_path)])) == [
        (tmp_path, "a folder, not readable (Permission denied); check its permissions")]


@guards("predict.py",
        "AHEAD: at most 64 files read ahead of the one printed",
        "while len(pending) < AHEAD and (entry := next(entries, None)):",
        "while (entry := next(entries, None)):")
def test_no_more_than_AHEAD_files_are_read_ahead(monkeypatch):
    monkeypatch.setattr(predict, "read", lambda path, thumbnails: (None, None))
    taken = []

    def entries():
        for i in range(3 * predict.AHEAD):
            taken.append(i)
            yield Path(f"{i}.png"), None
    readings = predict.readings(entries(), False)
    batches = [next(readings)]
    assert len(taken) <= predict.AHEAD
    batches += list(readings)
    assert sum(map(len, batches)) == 3 * predict.AHEAD and max(map(len, batches)) <= predict.AHEAD


@guards("predict.py",
        "reads not started are cancelled when the reader stops",
        "pool.shutdown(wait=False, cancel_futures=True)",
        "pool.shutdown(wait=False)")
def test_reads_not_started_are_dropped_when_the_reader_stops(monkeypatch):
    pools, started, release, pool = [], [], threading.Event(), predict.ThreadPoolExecutor
    monkeypatch.setattr(predict, "ThreadPoolExecutor", lambda workers: pools.append(pool(workers)) or pools[-1])

    def read(path, thumbnails):
        started.append(path.name)
        if path.name != "0.png":
            release.wait(10)
        return None, None
    monkeypatch.setattr(predict, "read", read)
    readings = predict.readings(((Path(f"{i}.png"), None) for i in range(40)), False)
    assert [path.name for path, _ in next(readings)] == ["0.png"]
    readings.close()  # as Ctrl-C, or a reader that went away, stops predict.py
    release.set()
    pools[0].shutdown(wait=True)
    assert len(started) <= 1 + predict.WORKERS


@guards("predict.py",
        "--top from 1 to 10",
        "choices=range(1, 11)",
        "choices=range(0, 100)")
@pytest.mark.parametrize("top", ["0", "11"])
def test_top_outside_1_to_10_is_refused(top, capsys):
    with pytest.raises(SystemExit) as exit:
        predict.get_args_parser().parse_args(["a.png", "--top", top])
    assert exit.value.code == 2 and "--top" in capsys.readouterr().err


@guards("predict.py",
        "--preview: a path that cannot be looked at refused in one line",
        "    except OSError as e:\n        raise UsageError(f\"--preview {printable(preview)} is "
        "{paths.problem(e, preview)}; give another path\") from None\n",
        "")
@pytest.mark.parametrize("where", ["under a file", "a symbolic link loop"])
def test_a_preview_path_that_cannot_be_looked_at_is_refused(where, tmp_path):
    (tmp_path / "a.png").write_bytes(PNGS[1])
    (tmp_path / "loop.png").symlink_to("loop.png")
    preview = tmp_path / ("a.png/preview.png" if where == "under a file" else "loop.png")
    problem = "no such file or folder" if where == "under a file" else "a symbolic link loop"
    with pytest.raises(UsageError, match=f"is {problem}; give another path$"):
        predict.check_preview(preview, [str(tmp_path / "a.png")])


@guards("predict.py",
        "--preview keeps only the rows it draws (PREDICTIONS_SHOWN)",
        "if args.preview and len(preview_rows) < figures.PREDICTIONS_SHOWN:",
        "if args.preview:")
def test_the_preview_keeps_only_the_rows_it_draws(trained_runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "scans").mkdir()
    count = figures.PREDICTIONS_SHOWN + 3
    for i in range(count):
        (tmp_path / "scans" / f"{i:02d}.png").write_bytes(PNGS[i % 2])
    drawn, predictions = [], figures.predictions
    monkeypatch.setattr(figures, "predictions",
                        lambda rows, total=None: drawn.append((len(rows), total)) or predictions(rows, total=total))
    args = predict.get_args_parser().parse_args([str(tmp_path / "scans"), "--preview", str(tmp_path / "preview.png"),
                                                 "--checkpoint", str(trained_runs / "checkpoints" / "lenet5_seed0.pt")])
    assert predict.main(args) == 0
    assert drawn == [(figures.PREDICTIONS_SHOWN, count)] and capsys.readouterr().out.count("\n") == count


@guards("predict.py",
        "a model that answers NaN is an error line",
        "                if probabilities is not None and not torch.isfinite(probabilities).all():\n",
        "                if False:\n")
def test_a_model_that_answers_nan_is_an_error_line_in_predict(trained_runs, tmp_path, monkeypatch, capsys):
    (tmp_path / "a.png").write_bytes(PNGS[1])
    nan_answers(monkeypatch)
    args = predict.get_args_parser().parse_args([str(tmp_path / "a.png"), "--checkpoint",
                                                 str(trained_runs / "checkpoints" / "lenet5_seed0.pt")])
    assert predict.main(args) == 1
    out, err = capsys.readouterr()
    assert out == "" and "a.png: the model's answer is not a number: its checkpoint is broken" in err

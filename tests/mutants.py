"""Every defence, and the test that notices it going.

Each entry below is a refusal, cap, timeout or check, written as the code that holds it (`old`) and the same code
with the defence deleted or loosened (`new`). `make defences` makes each change in turn, in a scratch copy of the
repository, runs the entry's test there, and reports the test red (it noticed), GREEN (a defence no test guards),
HUNG, or BROKEN (the change did not run at all: a bad entry). The working tree is never touched. The table goes to
results/defences.json, from which the README states how many defences are guarded. tests/test_mutants.py checks,
in the ordinary suite, that each `old` still reads as listed and that results/defences.json is this table's.

    python -m tests.mutants --jobs 2        # every entry, two at once, into results/defences.json (make defences)
    python -m tests.mutants --only demo.py  # the entries whose file, defence or test holds this text, into runs/
"""
if __name__ == "__main__" and not __package__:  # `python tests/mutants.py`: the package's modules would not import
    raise SystemExit("mutants: run it from the repository's root as python -m tests.mutants (or make defences)")

import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import files
from cli import OneLineErrorParser, count, emit, run
from errors import UsageError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds a test may take with its defence gone; a test that hangs instead of failing is reported


@dataclass(frozen=True)
class Defence:
    file: str  # relative to the repository root
    what: str  # the defence, in words
    old: str  # its code, exactly once in file
    new: str  # that code without the defence
    test: str  # the pytest node that must fail without it


# What the report quotes and counts, and what --overwrite may replace (issue 26's last three cases).
QUOTED = [
    Defence("slots.py", "a report run's parameter count is the model's, counted afresh",
            'if results.get("params") != params or type(results.get("params")) is not int:',
            'if type(results.get("params")) is not int:',
            "tests/test_slots.py::test_the_parameter_count_is_counted_not_taken_from_the_file"),
    Defence("slots.py", "a report run's device, device name and torch version are plain text",
            "            if not is_plain_text(results.get(key)):",
            "            if not isinstance(results.get(key), str):",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("slots.py", "plain text has no double underscores (bold) and no emoji codes",
            r"(?!.*__)(?!.*:[\w+-]+:)", "",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("slots.py", "plain text is 1 to 200 characters", "]{1,200}\")", "]{0,2000}\")",
            "tests/test_slots.py::test_text_the_readme_quotes_from_a_run_is_plain"),
    Defence("slots.py", "a results file nested too deep is one line, not a RecursionError",
            "    except RecursionError:\n        raise BadResults(path, \"is not a run's results (JSON nested too deep "
            "to read)\", advice) from None\n", "",
            "tests/test_slots.py::test_a_missing_or_unreadable_results_file_is_one_line"),
    Defence("files.py", "read_json takes JSON nested too deep as unreadable, not a RecursionError",
            "    except (OSError, ValueError, RecursionError):", "    except (OSError, ValueError):",
            "tests/test_scripts.py::test_a_missing_or_unreadable_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "a benchmark file's text is plain and its figures are figures",
            "                for bench in benches.values():\n                    check_plain(bench)\n", "",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "a benchmark file's figures are numbers from 0 to MAX_FIGURE, never true or false",
            "    elif type(value) not in (int, float) or not 0 <= value <= MAX_FIGURE:", "    elif value != value:",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "the README states a whole table of defences, not an --only run's",
            '    if table["complete"] is not True:', "    if False:",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "the fast sweep's choice is recipes.py's fast recipe",
            "    check_choice(fast_sweep()[0],", "    (fast_sweep()[0],",
            "tests/test_slots.py::test_a_believable_score_that_chooses_another_fast_recipe_than_recipes_py_is_refused"),
    Defence("scripts/report.py", "each default sweep's choice is recipes.py's recipe",
            "        check_choice(chosen, RECIPES[model], f'RECIPES[\"{model}\"]', tune.TUNING_DIR)", "        pass",
            "tests/test_slots.py::test_a_default_recipe_other_than_the_sweeps_choice_is_refused"),
    Defence("scripts/report.py", "only the runs a sweep scores are read and counted",
            "    return [tune.read_run(path) for path in sorted(seen)]",
            "    return [tune.read_run(path) for path in sorted((tune.FAST_DIR if fast else tune.TUNING_DIR)"
            '.glob("*.json"))]',
            "tests/test_slots.py::test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted"),
    Defence("scripts/report.py", "make readme checks every file, and the sweeps' choices, before it renders anything",
            "        check_all()  # slots.BadResults is a UsageError: one line, exit 2\n", "",
            "tests/test_slots.py::test_a_believable_score_that_chooses_another_fast_recipe_than_recipes_py_is_refused"),
    Defence("scripts/report.py", "a left-out tuning file's name is shown on one line",
            "leaves out {paths.shown(path)}:", "leaves out {path}:",
            "tests/test_slots.py::test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted"),
    Defence("runs.py", "no plan trains over the report's measurements, --overwrite or not",
            '    if extra and plan.action != "done":', "    if False:",
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
    Defence("runs.py", "no --overwrite advice where it would strip measurements",
            'replace="" if extra else\n                 ", or --overwrite to replace it")',
            'replace=", or --overwrite to replace it")',
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
    Defence("runs.py", "a finished run whose checkpoint is gone is skipped by --resume and sweeps, not trained afresh",
            '        if not isinstance(saved, dict):\n            return Plan("fresh")\n        changed = '
            'differing(saved, recipe)  # finished',
            '        if True:\n            return Plan("fresh")\n        changed = '
            'differing(saved, recipe)  # finished',
            "tests/test_reliability.py::test_model_all_resume_skips_a_finished_run_whose_checkpoint_is_gone"),
    Defence("runs.py", "such a run with other settings is refused, not skipped as if it were this one",
            '        if changed:\n            raise UsageError(f"{paths.results} holds a finished run with',
            '        if False:\n            raise UsageError(f"{paths.results} holds a finished run with',
            "tests/test_reliability.py::test_model_all_resume_with_other_settings_never_trains_over_a_finished_run"),
]

# The demo, the images it reads and the predictions: demo.py, images.py, preprocess.py, predict.py, paths.py.
SERVING = [
    Defence("demo.py", "two Content-Length headers refused",
            "if len(lengths) > 1 or not (lengths[0]", "if not (lengths[0]",
            "tests/test_defences.py::test_two_content_length_headers_are_refused"),
    Defence("demo.py", "a body over MAX_BYTES refused (413)",
            "            if length > MAX_BYTES:\n", "            if length > 8 * MAX_BYTES:\n",
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
]

# Training, checkpoints and result files: runs.py, files.py, checkpoints.py, main.py, cli.py, slots.py,
# significance.py.
RUNS = [
    # runs.py
    Defence("runs.py", "a checkpoint this user may not read is refused without advice to overwrite it",
            "                if e.unreadable:  # a good run", "                if False:  # a good run",
            "tests/test_reliability.py::test_an_unreadable_checkpoint_is_not_called_damaged"),
    Defence("runs.py", "a damaged checkpoint is replaced only with --overwrite",
            '                raise UsageError(f"{paths.checkpoint} is not a readable checkpoint; pass --overwrite to '
            'replace "\n                                 f"it") from None',
            '                return Plan("fresh")',
            "tests/test_defences_runs.py::test_a_damaged_checkpoint_is_replaced_only_with_overwrite"),
    Defence("runs.py", "an unfinished run is not replaced without --resume or --overwrite",
            "            if not is_finished(paths, checkpoint):\n                raise",
            "            if False:\n                raise",
            "tests/test_reliability.py::test_a_fresh_run_refuses_to_replace_an_unfinished_one"),
    Defence("runs.py", "a finished run's results guard it where its checkpoint is gone",
            'saved = held.get("recipe") if isinstance(held, dict) and held.get("status") == "complete" else None',
            "saved = None",
            "tests/test_reliability.py::test_results_without_their_checkpoint_are_not_replaced_either"),
    Defence("runs.py", "a finished run with other settings is not replaced",
            '        if changed:\n            raise UsageError(f"{finished}, where',
            '        if False:\n            raise UsageError(f"{finished}, where',
            "tests/test_reliability.py::test_a_finished_run_is_not_replaced_by_one_with_other_settings"),
    Defence("runs.py", "a finished run with the same settings is not rerun (its results would be stripped)",
            '        raise UsageError(f"{finished}; {\'pass --resume to skip it, \' if skip_finished else \'\'}pass '
            '--tag NAME or "\n                         f"another --out-dir to train it again beside it{replace}")',
            '        return Plan("fresh")',
            "tests/test_reliability.py::test_a_rerun_never_strips_a_finished_runs_results"),
    Defence("runs.py", "--resume without a checkpoint is refused",
            '    if not exists:\n        raise UsageError(f"--resume: no checkpoint',
            '    if False:\n        raise UsageError(f"--resume: no checkpoint',
            "tests/test_main.py::test_resume_without_a_checkpoint_is_rejected"),
    Defence("runs.py", "--resume refuses another model's checkpoint",
            '    if saved["model"] != recipe["model"]:', "    if False:",
            "tests/test_main.py::test_resume_from_another_models_checkpoint_is_rejected"),
    Defence("runs.py", "--model all --resume refuses a run of the same name with other settings",
            "    if changed and skip_finished:", "    if False:",
            "tests/test_defences_runs.py::test_model_all_resume_refuses_a_run_of_the_same_name_with_other_settings"),
    Defence("runs.py", "--resume refuses other settings",
            '    if changed:\n        raise UsageError(f"--resume:',
            '    if False:\n        raise UsageError(f"--resume:',
            "tests/test_main.py::test_resume_with_other_settings_is_rejected"),
    Defence("runs.py", "--resume of a finished run is refused (nothing to resume)",
            "    if is_finished(paths, checkpoint):\n        if skip_finished:",
            "    if is_finished(paths, checkpoint) and skip_finished:\n        if skip_finished:",
            "tests/test_defences_runs.py::test_resume_of_a_finished_run_is_refused_and_leaves_its_files"),
    Defence("runs.py", "a --validation run is compared with a test-set run in every setting, validation too",
            "    return [key for key in RECIPE_KEYS if saved.get(key) != recipe.get(key)]",
            '    return [key for key in RECIPE_KEYS if key != "validation" and saved.get(key) != recipe.get(key)]',
            "tests/test_defences.py::test_a_validation_run_never_replaces_or_resumes_a_test_set_run"),
    Defence("runs.py", "a run counts as finished only with complete results",
            '            and results.get("status") == "complete" and isinstance', "            and isinstance",
            "tests/test_reliability.py::test_resume_finishes_a_run_stopped_during_its_final_pass"),
    Defence("runs.py", "a run counts as finished only with a history of every epoch",
            '            and len(results["history"]) == checkpoint["epoch"])', ")",
            "tests/test_defences_runs.py::test_results_with_a_short_history_do_not_finish_a_run"),
    Defence("runs.py", "a diverged run keeps the epochs before it",
            '        if history:\n            write_results("diverged")',
            '        if False:\n            write_results("diverged")',
            "tests/test_main.py::test_divergence_keeps_the_epochs_before_it"),
    Defence("runs.py", "a stopped or failed run writes its results so far",
            "        if history:\n            try:", "        if False:\n            try:",
            "tests/test_reliability.py::test_output_that_cannot_be_written_is_one_line_and_keeps_the_run_resumable"),
    Defence("runs.py", "a failed write of the results does not hide the error in flight",
            "            except files.WriteError:\n                pass",
            "            except ZeroDivisionError:\n                pass",
            "tests/test_defences_runs.py::test_a_failed_results_write_does_not_hide_the_first_error"),
    Defence("runs.py", "a second Ctrl-C while the results are written keeps the checkpoint and says so",
            "            except KeyboardInterrupt as again:\n                raise Interrupted(len(history), again, "
            "results_written=False) from None\n",
            "",
            "tests/test_defences_runs.py::"
            "test_a_second_ctrl_c_while_the_results_are_written_says_the_checkpoint_is_kept"),
    Defence("runs.py", "Ctrl-C says what was saved and how to resume",
            "        if isinstance(e, KeyboardInterrupt):\n            raise Interrupted(len(history), e, "
            "results_written=written) from None\n",
            "",
            "tests/test_reliability.py::test_resume_finishes_a_run_stopped_during_its_final_pass"),
    Defence("runs.py", "Ctrl-C on a full disk does not claim the results saved",
            "raise Interrupted(len(history), e, results_written=written) from None",
            "raise Interrupted(len(history), e) from None",
            "tests/test_defences_runs.py::test_ctrl_c_with_a_failed_results_write_does_not_claim_the_results_saved"),
    Defence("runs.py", "a failed first checkpoint does not advise resuming",
            "resumable=bool(history))", "resumable=True)",
            "tests/test_reliability.py::test_a_failed_first_checkpoint_does_not_advise_resuming"),
    Defence("runs.py", "a reader that went away leaves the run's results marked interrupted",
            '"interrupted" if isinstance(e, (KeyboardInterrupt, BrokenPipeError)) else "failed"',
            '"interrupted" if isinstance(e, KeyboardInterrupt) else "failed"',
            "tests/test_reliability.py::test_a_broken_pipe_ends_the_run_quietly_and_keeps_it_resumable"),
    # files.py
    Defence("files.py", "atomic_write writes a temporary file and replaces the old one only once whole",
            '        with open(tmp, "wb") as f:\n            write(f)\n            f.flush()\n            '
            "os.fsync(f.fileno())\n        os.replace(tmp, path)",
            '        with open(path, "wb") as f:\n            write(f)\n            f.flush()\n            '
            "os.fsync(f.fileno())",
            "tests/test_defences.py::test_json_is_written_whole_or_not_at_all"),
    Defence("files.py", "atomic_write leaves no temporary file behind on failure",
            "        tmp.unlink(missing_ok=True)", "        pass",
            "tests/test_defences.py::test_json_is_written_whole_or_not_at_all"),
    Defence("files.py", "make_writable proves a folder writable with a probe file",
            '    probe.write_bytes(b"")\n    probe.unlink()', "    pass",
            "tests/test_reliability.py::test_a_folder_that_exists_but_refuses_writes_is_found_by_the_probe"),
    Defence("files.py", "make_writable removes its probe file",
            "    probe.unlink()", "    pass",
            "tests/test_reliability.py::test_the_number_of_images_used_is_recorded"),
    Defence("files.py", "prepare_out_dir probes each output folder",
            "        for folder in sorted(folders):\n            make_writable(folder)",
            "        for folder in sorted(folders):\n            folder.mkdir(parents=True, exist_ok=True)",
            "tests/test_reliability.py::test_a_folder_that_exists_but_refuses_writes_is_found_by_the_probe"),
    Defence("files.py", "prepare_out_dir turns an unwritable --out-dir into one line",
            "    except OSError as e:\n        where, way", "    except ZeroDivisionError as e:\n        where, way",
            "tests/test_reliability.py::test_an_out_dir_that_cannot_take_the_files_is_rejected_before_training"),
    Defence("files.py", "prepare_out_dir refuses a folder where an output file goes",
            "        if path.is_dir():", "        if False:",
            "tests/test_reliability.py::test_model_all_checks_where_its_comparison_figure_goes_before_training"),
    Defence("files.py", "check_output refuses anything but a regular file or a missing name",
            "    if mode is not None and not stat.S_ISREG(mode):", "    if mode is not None and stat.S_ISDIR(mode):",
            "tests/test_scripts.py::test_check_output_refuses_a_device_a_folder_and_a_named_pipe"),
    Defence("files.py", "check_output turns a path it cannot look at into one line",
            '    except OSError as e:\n        raise UsageError(f"{flag} {paths.shown(path)} is {paths.problem(e, '
            "path)}",
            '    except ZeroDivisionError as e:\n        raise UsageError(f"{flag} {paths.shown(path)} is '
            "{paths.problem(e, path)}",
            "tests/test_defences_runs.py::test_check_output_names_a_path_it_cannot_look_at"),
    Defence("files.py", "check_output probes the output's folder",
            '        make_writable(path.parent)\n    except OSError as e:\n        raise UsageError(f"{flag}',
            "        path.parent.mkdir(parents=True, exist_ok=True)\n    except OSError as e:\n        raise "
            'UsageError(f"{flag}',
            "tests/test_defences_runs.py::test_check_output_probes_its_folder"),
    Defence("files.py", "figure_beside refuses a figure at the JSON's own path",
            "    if figure.resolve() == out.resolve():", "    if False:",
            "tests/test_scripts.py::test_the_figure_beside_the_json_is_checked_too"),
    Defence("files.py", "RunLock: a second process of a run refuses while the first lives",
            "            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)", "            pass",
            "tests/test_reliability.py::test_a_second_process_of_the_same_run_refuses_while_the_first_lives"),
    Defence("files.py", "RunLock removes a killed run's temporary files",
            "                stale.unlink(missing_ok=True)", "                pass",
            "tests/test_defences_runs.py::test_a_killed_runs_temporary_files_are_removed_and_only_its_own"),
    Defence("files.py", "RunLock removes only this run's temporary files",
            'path.parent.glob(f".{path.name}.*.tmp")', 'path.parent.glob("*.tmp")',
            "tests/test_defences_runs.py::test_a_killed_runs_temporary_files_are_removed_and_only_its_own"),
    Defence("files.py", "read_json reads damaged JSON as no results",
            "    except (OSError, ValueError, RecursionError):  # RecursionError: arrays nested thousands deep\n"
            "        return None", "    except (OSError, RecursionError):\n        return None",
            "tests/test_defences_runs.py::test_results_that_are_not_json_do_not_stop_a_run"),
    Defence("files.py", "a failed write is one line naming the file",
            "        raise WriteError(path, e, resumable) from None", "        raise",
            "tests/test_reliability.py::test_a_full_disk_stops_the_run_in_one_line_and_keeps_the_last_checkpoint"),
    Defence("files.py", "a quick benchmark run never replaces the committed results",
            '    default = (DEFAULT_OUT_DIR if quick else ROOT / "results") / name',
            '    default = ROOT / "results" / name',
            "tests/test_scripts.py::test_a_quick_run_does_not_replace_the_committed_results"),
    # checkpoints.py
    Defence("checkpoints.py", "a file that is not a zip archive never reaches torch.load",
            '        raise ValueError(f"is not a checkpoint of main.py ({type(e).__name__})") from None\n    finally:',
            "        records = []\n    finally:",
            "tests/test_defences.py::test_a_checkpoint_that_is_not_a_zip_never_reaches_torch_load"),
    Defence("checkpoints.py", "a checkpoint with compressed records is refused before it expands",
            "    if any(record.compress_type != zipfile.ZIP_STORED for record in records):", "    if False:",
            "tests/test_defences_runs.py::test_a_compressed_record_is_refused_before_torch_reads_it"),
    Defence("checkpoints.py", "a checkpoint over the size cap is refused",
            "    if size > MAX_CHECKPOINT_BYTES:", "    if False:",
            "tests/test_defences_runs.py::test_a_checkpoint_over_the_cap_is_refused_before_torch_reads_it"),
    Defence("checkpoints.py", "the size cap is near the largest checkpoint main.py can write",
            "MAX_CHECKPOINT_BYTES = 2 * 1024**3", "MAX_CHECKPOINT_BYTES = 64 * 1024**3",
            "tests/test_defences_runs.py::"
            "test_the_size_cap_admits_the_largest_checkpoint_main_py_writes_and_little_more"),
    Defence("checkpoints.py", "torch.load reads tensors only, never arbitrary pickled objects",
            'checkpoint = torch.load(file, map_location="cpu", weights_only=True)',
            'checkpoint = torch.load(file, map_location="cpu", weights_only=False)',
            "tests/test_defences_runs.py::test_a_checkpoint_holding_a_pickled_call_is_refused_and_never_runs_it"),
    Defence("checkpoints.py", "a checkpoint must hold every key main.py saves",
            "    if not isinstance(checkpoint, dict) or CHECKPOINT_KEYS - set(checkpoint):",
            "    if not isinstance(checkpoint, dict):",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's epoch is from 1 to its recipe's epochs",
            '    if type(epoch) is not int or not 1 <= epoch <= recipe["epochs"]:', "    if type(epoch) is not int:",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's history is a list",
            "    if not isinstance(history, list):\n        raise", "    if False:\n        raise",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's history holds one record per epoch",
            "    if len(history) != epoch:", "    if False:",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "each history record is a dict",
            "        if not isinstance(record, dict):\n            raise", "        if False:\n            raise",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "each history record holds finite numbers",
            '        if missing:\n            raise ValueError(f"an epoch of its history has no finite',
            '        if False:\n            raise ValueError(f"an epoch of its history has no finite',
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "each history accuracy is a percentage",
            "        if wrong:\n            raise", "        if False:\n            raise",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's weights are a dict of tensors",
            "    if not isinstance(weights, dict) or not all(isinstance(w, torch.Tensor) for w in weights.values()):",
            "    if not isinstance(weights, dict):",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's weights have its recipe's model's shapes",
            "    if {key: value.shape for key, value in expected.items()} != {key: value.shape for key, value in "
            "weights.items()}:",
            "    if False:",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's weights are dense real tensors on the CPU",
            '        if value.layout != torch.strided or value.device.type != "cpu" or value.is_quantized or not '
            "kind_ok:",
            "        if False:",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "a checkpoint's weights are finite",
            "    if not all(torch.isfinite(w).all() for w in weights.values() if w.is_floating_point()):",
            "    if False:",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "load_model refuses another model's checkpoint",
            "    if model_name and saved != model_name:", "    if False:",
            "tests/test_main.py::test_evaluate_rejects_bad_checkpoints"),
    Defence("checkpoints.py", "restore refuses optimizer state of the wrong shape",
            "                if value.dim() and value.shape != parameter.shape:", "                if False:",
            "tests/test_defences_runs.py::test_a_checkpoint_that_does_not_fit_its_run_is_not_resumed"),
    Defence("checkpoints.py", "restore refuses a history that disagrees with the epoch",
            '        if len(checkpoint["history"]) != checkpoint["epoch"] or len(', "        if len(",
            "tests/test_defences_runs.py::test_a_checkpoint_that_does_not_fit_its_run_is_not_resumed"),
    Defence("checkpoints.py", "restore refuses a checkpoint without predictions",
            ' or len(checkpoint["predictions"]) == 0:', ":",
            "tests/test_defences_runs.py::test_a_checkpoint_that_does_not_fit_its_run_is_not_resumed"),
    Defence("checkpoints.py", "restore turns a state that does not load into one line",
            "    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as e:",
            "    except (KeyError, ValueError, TypeError, IndexError, AttributeError) as e:",
            "tests/test_reliability.py::test_a_damaged_checkpoint_is_refused_on_resume"),
    Defence("checkpoints.py", "best_checkpoint says which files it skipped",
            "            skipped(e)\n            continue", "            continue",
            "tests/test_defences_runs.py::test_best_checkpoint_names_each_file_it_skips"),
    Defence("checkpoints.py", "best_checkpoint passes over an unfinished run, and says so",
            '        if checkpoint["epoch"] < recipe["epochs"]:', "        if False:",
            "tests/test_defences_runs.py::test_best_checkpoint_names_each_file_it_skips"),
    Defence("checkpoints.py", "best_checkpoint prefers a full run to a --limit one",
            'full = not (recipe.get("limit") or ', "full = not (",
            "tests/test_defences_runs.py::test_best_checkpoint_prefers_a_full_run_to_any_quick_one"),
    Defence("checkpoints.py", "best_checkpoint prefers a full run to a --train-size one",
            'recipe.get("limit") or recipe.get("train_size") or ', 'recipe.get("limit") or ',
            "tests/test_defences_runs.py::test_best_checkpoint_prefers_a_full_run_to_any_quick_one"),
    Defence("checkpoints.py", "best_checkpoint prefers a full run to a --validation one",
            ' or recipe.get("validation"))', ")",
            "tests/test_defences_runs.py::test_best_checkpoint_prefers_a_full_run_to_any_quick_one"),
    Defence("checkpoints.py", "best_checkpoint reads only the asked model's runs",
            '        if model and recipe["model"] != model:', "        if False:",
            "tests/test_defences_runs.py::test_best_checkpoint_reads_only_the_asked_models_runs"),
    Defence("checkpoints.py", "a checkpoint this user may not read is not called damaged",
            "raise CheckpointError(flag, path, reason, advice, unreadable=e.unreadable) from None",
            "raise CheckpointError(flag, path, reason, advice) from None",
            "tests/test_reliability.py::test_an_unreadable_checkpoint_is_not_called_damaged"),
    Defence("checkpoints.py", "a check that raises TypeError, RuntimeError or NotImplementedError is one line too",
            "    except (ValueError, TypeError, RuntimeError, NotImplementedError) as e:",
            "    except ValueError as e:",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    Defence("checkpoints.py", "only real floating-point weights where floats belong",
            "REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)",
            "REAL_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64)",
            "tests/test_defences_runs.py::test_each_check_of_an_untrained_checkpoint_refuses_its_damage"),
    # main.py
    Defence("main.py", "--compile needs a C++ compiler on PATH",
            "        if args.compile and not any(map(shutil.which, COMPILERS)):", "        if False:",
            "tests/test_main.py::test_compile_without_a_cpp_compiler_is_one_line_before_any_work"),
    Defence("main.py", "--checkpoint without --evaluate is refused",
            "    if args.checkpoint and not args.evaluate:", "    if False:",
            "tests/test_main.py::test_bad_arguments_are_rejected"),
    Defence("main.py", "--evaluate refuses the flags that only training reads",
            "        if given:\n            flag", "        if False:\n            flag",
            "tests/test_main.py::test_bad_arguments_are_rejected"),
    Defence("main.py", "--evaluate refuses --no-batch-norm too",
            '"dropout", "batch_norm", "train_size", "amp", "compile", "resume", "overwrite")',
            '"dropout", "train_size", "amp", "compile", "resume", "overwrite")',
            "tests/test_main.py::test_bad_arguments_are_rejected"),
    Defence("main.py", "--evaluate --checkpoint refuses --model all",
            "    if args.checkpoint and len(names) > 1:", "    if False:",
            "tests/test_defences_runs.py::test_evaluate_checkpoint_with_model_all_is_refused"),
    Defence("main.py", "--evaluate checks its --out-dir before any work",
            "    if args.out_dir:\n        files.prepare_out_dir(args.out_dir, confusions)", "    pass",
            "tests/test_main.py::test_evaluate_checks_its_out_dir_before_any_work"),
    Defence("main.py", "--evaluate without a run says how to train it",
            "        if not args.checkpoint and not path.exists():", "        if False:",
            "tests/test_main.py::test_evaluate_without_a_run_says_how_to_train_it"),
    Defence("main.py", "--evaluate --validation refuses a run trained on the validation images",
            '        if args.validation and not checkpoint["recipe"]["validation"]:', "        if False:",
            "tests/test_main.py::test_evaluate_rejects_bad_checkpoints"),
    Defence("main.py", "the resume command printed after a signal drops --overwrite",
            '[a for a in sys.argv if a != "--overwrite"]', "list(sys.argv)",
            "tests/test_defences_runs.py::test_the_resume_command_after_an_interrupted_overwrite_drops_overwrite"),
    Defence("main.py", "--tag may not name a run like another model's or recipe's",
            "            check_run_name(name, args.tag, args.recipe)", "            pass",
            "tests/test_main.py::test_bad_arguments_are_rejected"),
    Defence("main.py", "training checks where its files go before any work",
            "    files.prepare_out_dir(out_dir, outputs)", "    pass",
            "tests/test_reliability.py::test_an_out_dir_that_cannot_take_the_files_is_rejected_before_training"),
    Defence("main.py", "training holds each run's lock",
            "            locks.enter_context(files.RunLock(path))", "            pass",
            "tests/test_reliability.py::test_a_second_process_of_the_same_run_refuses_while_the_first_lives"),
    Defence("main.py", "--evaluate refuses --compile, which only training reads",
            '"train_size", "amp", "compile", "resume"', '"train_size", "amp", "resume"',
            "tests/test_defences_runs.py::test_evaluate_refuses_every_flag_that_only_training_reads"),
    # cli.py
    Defence("cli.py", "a number flag is held to its bounds",
            "        if not (math.isfinite(value) and accept(value)):", "        if not math.isfinite(value):",
            "tests/test_main.py::test_bad_arguments_are_rejected"),
    Defence("cli.py", "a count is at least 1",
            "lambda v: 1 <= v <= high", "lambda v: 0 <= v <= high",
            "tests/test_sweep.py::test_bad_flags_get_one_line_before_any_run_or_ray"),
    Defence("cli.py", "a count is at most its cap",
            'lambda v: 1 <= v <= high, f"from 1 to {high}"', 'lambda v: 1 <= v, f"from 1 to {high}"',
            "tests/test_defences_runs.py::test_runner_counts_are_held_to_their_caps"),
    Defence("cli.py", "--gpus-per-run is at most one GPU",
            'lambda v: 0 < v <= 1, "above 0 and at most 1"', 'lambda v: 0 < v, "above 0 and at most 1"',
            "tests/test_sweep.py::test_bad_flags_get_one_line_before_any_run_or_ray"),
    Defence("cli.py", "--gpus-per-run is above 0",
            "type=number(float, lambda v: 0 < v", "type=number(float, lambda v: 0 <= v",
            "tests/test_defences_runs.py::test_runner_counts_are_held_to_their_caps"),
    Defence("cli.py", "--tag must be safe in a file name",
            "        return check_tag(text)", "        return text",
            "tests/test_main.py::test_bad_arguments_are_rejected"),
    Defence("cli.py", "--hidden widths are held to the schema's bounds",
            '    if not RECIPE_SCHEMA["hidden"].allows(widths):', "    if not widths:",
            "tests/test_defences_runs.py::test_hidden_widths_beyond_the_schema_are_refused"),
    Defence("cli.py", "an on-or-off flag takes only on or off",
            '    if text not in ("on", "off"):', "    if False:",
            "tests/test_sweep.py::test_bad_flags_get_one_line_before_any_run_or_ray"),
    Defence("cli.py", "a flag with choices takes only those",
            "            parser.add_argument(flag, choices=kind.choices, **values)",
            "            parser.add_argument(flag, **values)",
            "tests/test_defences_runs.py::test_an_optimizer_that_is_not_a_choice_is_refused"),
    Defence("cli.py", "SIGTERM stops a run as Ctrl-C does, keeping its files whole",
            "        signal.signal(signal.SIGTERM, terminate)", "        pass",
            "tests/test_reliability.py::test_a_signal_keeps_the_last_epoch_and_says_how_to_resume"),
    Defence("cli.py", "SIGTERM exits 143, not Ctrl-C's 130",
            "    return 143 if isinstance(interrupt, Terminated) else 130", "    return 130",
            "tests/test_reliability.py::test_a_signal_keeps_the_last_epoch_and_says_how_to_resume"),
    Defence("cli.py", "Ctrl-C ignored at start (nohup, a background job) stays ignored",
            "    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:", "    if False:",
            "tests/test_defences_runs.py::test_ctrl_c_stays_ignored_where_the_program_was_started_with_it_ignored"),
    Defence("cli.py", "output that cannot be written is one line, exit 1",
            "    except OSError as e:\n        raise OutputLost",
            "    except ZeroDivisionError as e:\n        raise OutputLost",
            "tests/test_reliability.py::test_output_that_cannot_be_written_is_one_line_and_keeps_the_run_resumable"),
    Defence("cli.py", "a reader that went away ends the program quietly, exit 141",
            "    except BrokenPipeError:\n        # The reader went away",
            "    except ZeroDivisionError:\n        # The reader went away",
            "tests/test_reliability.py::test_a_broken_pipe_ends_the_run_quietly_and_keeps_it_resumable"),
    # slots.py
    Defence("slots.py", "an unreadable results file is one line",
            '    except OSError as e:\n        raise BadResults(path, f"is not readable',
            '    except ZeroDivisionError as e:\n        raise BadResults(path, f"is not readable',
            "tests/test_slots.py::test_a_missing_or_unreadable_results_file_is_one_line"),
    Defence("slots.py", "a results file that is not UTF-8 is one line",
            "    except ValueError:  # bytes that are not UTF-8",
            "    except ZeroDivisionError:  # bytes that are not UTF-8",
            "tests/test_slots.py::test_a_missing_or_unreadable_results_file_is_one_line"),
    Defence("slots.py", "a results file that is not JSON is one line",
            '    except ValueError as e:\n        raise BadResults(path, f"is not JSON',
            '    except ZeroDivisionError as e:\n        raise BadResults(path, f"is not JSON',
            "tests/test_slots.py::test_a_missing_or_unreadable_results_file_is_one_line"),
    Defence("slots.py", "results must be a JSON object",
            "    if not isinstance(results, dict):\n        raise bad", "    if False:\n        raise bad",
            "tests/test_slots.py::test_a_file_that_is_not_a_runs_results_is_one_line"),
    Defence("slots.py", "only a complete run fills a slot",
            '    if status != "complete" and not (diverged', "    if False and not (diverged",
            "tests/test_slots.py::test_only_a_complete_run_fills_a_report_slot"),
    Defence("slots.py", "a diverged slot takes only a run that diverged",
            'not (diverged and isinstance(status, str) and status.startswith("diverged"))', "not diverged",
            "tests/test_defences_runs.py::test_an_interrupted_run_does_not_fill_a_slot_that_takes_a_diverged_one"),
    Defence("slots.py", "a file holds its slot's recipe",
            "        if not isinstance(held, dict) or completed(held) != completed(recipe):",
            "        if not isinstance(held, dict):",
            "tests/test_slots.py::test_a_3000_image_run_in_the_1000_image_slot_is_refused"),
    Defence("slots.py", "a file says its slot's seed",
            '        if results.get("seed") != recipe["seed"] or type(results.get("seed")) is not int:',
            '        if type(results.get("seed")) is not int:',
            "tests/test_slots.py::test_a_seed_field_of_7_in_a_seed_1_file_is_refused"),
    Defence("slots.py", "a seed is an int, not a bool or float equal to it",
            ' or type(results.get("seed")) is not int:', ":",
            "tests/test_defences_runs.py::test_a_seed_of_true_does_not_fill_seed_1s_slot"),
    Defence("slots.py", "a file was scored on its slot's split",
            '        if results.get("evaluated_on") != evaluated_on(recipe):', "        if False:",
            "tests/test_slots.py::test_a_tuning_file_scored_on_the_test_set_is_not_a_validation_score"),
    Defence("slots.py", "a file trained on its slot's number of images",
            '        if recipe.get("train_size") is not None and results.get("train_images") != recipe["train_size"]:',
            "        if False:",
            "tests/test_slots.py::test_train_images_must_be_the_slots_training_set"),
    Defence("slots.py", "a history is a list",
            "    if not isinstance(history, list):\n        raise bad", "    if False:\n        raise bad",
            "tests/test_slots.py::test_a_history_is_a_list"),
    Defence("slots.py", "a complete run's history is not empty",
            "    if complete and not history:", "    if False:",
            "tests/test_slots.py::test_an_empty_report_history_is_one_line_not_an_index_error"),
    Defence("slots.py", "a complete run's history has every epoch of its recipe",
            "        if complete and len(history) != epochs or not complete", "        if False or not complete",
            "tests/test_slots.py::test_a_history_short_of_the_recipes_epochs_is_refused"),
    Defence("slots.py", "a diverged run's history stops short of its recipe's epochs",
            " or not complete and len(history) >= epochs:", ":",
            "tests/test_slots.py::test_a_diverged_tuning_run_scores_zero_and_must_have_stopped_short"),
    Defence("slots.py", "each epoch holds finite numbers",
            "        if not isinstance(record, dict) or not all(is_number(record.get(key)) for key in HISTORY_KEYS):",
            "        if not isinstance(record, dict):",
            "tests/test_slots.py::test_every_epoch_holds_finite_numbers"),
    Defence("slots.py", "epochs count from one",
            '        if record["epoch"] != number:', "        if False:",
            "tests/test_slots.py::test_a_history_must_count_its_epochs_from_one"),
    Defence("slots.py", "accuracies are percentages",
            "            if not is_percentage(record[key]):", "            if False:",
            "tests/test_slots.py::test_a_final_accuracy_of_150_is_not_a_percentage"),
    Defence("slots.py", "losses and times are not negative",
            '        if not (is_loss(record["train_loss"]) and is_loss(record["eval_loss"]) and record["seconds"] >= '
            "0):",
            "        if False:",
            "tests/test_slots.py::test_losses_and_times_are_not_negative"),
    Defence("slots.py", "a file was scored on its slot's number of images",
            '    if results.get("eval_images") != images:', "    if False:",
            "tests/test_slots.py::test_eval_images_must_be_the_slots_image_count"),
    Defence("slots.py", "one prediction per image",
            "    if not isinstance(predictions, str) or len(predictions) != images:",
            "    if not isinstance(predictions, str):",
            "tests/test_slots.py::test_predictions_of_the_wrong_length_are_refused_whatever_eval_images_says"),
    Defence("slots.py", "predictions are ASCII digits",
            "    if not (predictions.isascii() and predictions.isdigit()):", "    if False:",
            "tests/test_slots.py::test_predictions_hold_ascii_digits_only"),
    Defence("slots.py", "the final accuracy is the predictions' score",
            "    if not math.isclose(accuracy, said, rel_tol=AGREEMENT):", "    if False:",
            "tests/test_slots.py::test_the_final_accuracy_must_be_the_predictions_score"),
    Defence("slots.py", "the agreement tolerance is below one image",
            "AGREEMENT = 1e-6", "AGREEMENT = 1e-3",
            "tests/test_slots.py::test_the_final_accuracy_must_be_the_predictions_score"),
    Defence("slots.py", "a report run holds its clean pass over the training set",
            '        if not isinstance(clean, dict) or not is_loss(clean.get("loss")) or not '
            'is_percentage(clean.get("acc")):',
            "        if False:",
            "tests/test_slots.py::test_a_file_without_the_clean_training_pass_is_one_line_not_a_key_error"),
    Defence("slots.py", "a report run holds its robustness sweep in percent",
            "        if not isinstance(measured, dict) or not all(is_percentage(measured.get(str(m))) for m in "
            "magnitudes):",
            "        if False:",
            "tests/test_slots.py::test_a_full_data_run_holds_its_robustness_sweep_in_percent"),
    Defence("slots.py", "a missing results file is Missing, which a sweep makes rather than reports",
            "    except FileNotFoundError:\n        raise Missing",
            "    except ZeroDivisionError:\n        raise Missing",
            "tests/test_slots.py::test_a_missing_or_unreadable_results_file_is_one_line"),
    # significance.py
    Defence("significance.py", "no discordant image is p = 1, not a binomial test of nothing",
            "    return stats.binomtest(first_only, discordant).pvalue if discordant else 1.0",
            "    return stats.binomtest(first_only, discordant).pvalue",
            "tests/test_significance.py::test_a_run_against_itself_differs_by_exactly_zero"),
    Defence("significance.py", "no discordant image gives no detectable difference",
            "    if not moved.size:\n        return None", "",
            "tests/test_significance.py::test_a_run_against_itself_differs_by_exactly_zero"),
    Defence("significance.py",
            "too few discordant images for McNemar's test: the interval alone says what is detectable",
            "    if lead is None:\n        return half_width", "",
            "tests/test_defences_runs.py::test_too_few_discordant_images_leave_the_interval_to_say_what_is_detectable"),
    Defence("significance.py", "a difference is real only where both tests say so",
            "        return self.p < ALPHA and excludes_zero(self.interval)", "        return self.p < ALPHA",
            "tests/test_defences_runs.py::test_a_difference_is_real_only_where_the_interval_excludes_zero_too"),
    Defence("significance.py", "a setting sharing no seed with the best is not compared",
            "                                        np.stack([correct[best][s] for s in seeds])) if seeds else None",
            "                                        np.stack([correct[best][s] for s in seeds]))",
            "tests/test_defences_runs.py::test_a_setting_that_shares_no_seed_with_the_best_gets_no_comparison"),
    Defence("significance.py", "the tests' level is 5%",
            "ALPHA = 0.05", "ALPHA = 0.1",
            "tests/test_significance.py::"
            "test_the_unpaired_interval_adds_both_figures_binomial_noise_and_their_seeds_spread"),
    # dataset.py
    Defence("dataset.py", "a bundle that decompresses to the wrong bytes is refused",
            "        if digest.hexdigest() != SHA256[target.name]:", "        if False:",
            "tests/test_dataset.py::test_a_bundle_with_the_wrong_content_is_rejected"),
    Defence("dataset.py", "a truncated bundle is one line and leaves nothing behind",
            "    except (EOFError, gzip.BadGzipFile, zlib.error) as e:",
            "    except (gzip.BadGzipFile, zlib.error) as e:",
            "tests/test_dataset.py::test_a_truncated_bundle_is_rejected_and_leaves_nothing_behind"),
    Defence("dataset.py", "a bundle that is not gzip is one line",
            "gzip.BadGzipFile, zlib.error) as e:", "zlib.error) as e:",
            "tests/test_defences_runs.py::test_a_bundle_that_is_not_gzip_is_one_line"),
    Defence("dataset.py", "a file that is not a folder as --data-dir is refused",
            "    if data_dir.exists() and not data_dir.is_dir():", "    if False:",
            "tests/test_main.py::test_a_data_dir_that_is_a_file_is_rejected"),
    Defence("dataset.py", "a missing --data-dir is refused",
            "    if not data_dir.is_dir():\n        raise", "    if False:\n        raise",
            "tests/test_dataset.py::test_a_missing_data_dir_is_rejected"),
    Defence("dataset.py", "an unreadable --data-dir is refused",
            "    if not os.access(data_dir, os.R_OK | os.X_OK):", "    if False:",
            "tests/test_defences_runs.py::test_an_unreadable_data_dir_is_refused_before_anything_is_read_from_it"),
    Defence("dataset.py", "a data folder that cannot take the extracted files is one line",
            '        except OSError as e:\n            raise DataError(f"cannot write the extracted data',
            '        except ZeroDivisionError as e:\n            raise DataError(f"cannot write the extracted data',
            "tests/test_defences_runs.py::test_a_data_dir_that_cannot_take_the_extracted_files_is_one_line"),
    Defence("dataset.py", "a data file that cannot be read is one line",
            '    except OSError as e:\n        raise DataError(f"cannot read {path}',
            '    except ZeroDivisionError as e:\n        raise DataError(f"cannot read {path}',
            "tests/test_defences_runs.py::test_a_data_file_that_cannot_be_read_is_one_line"),
    Defence("dataset.py", "each data file's bytes are checked against their SHA-256 before they are parsed",
            "    if hashlib.sha256(data).hexdigest() != SHA256[path.name]:", "    if False:",
            "tests/test_dataset.py::test_checksum_check_rejects_a_corrupted_file"),
    Defence("dataset.py", "a failed download is one line naming the fix",
            "    except Exception as e:\n        reason", "    except ValueError as e:\n        reason",
            "tests/test_dataset.py::test_without_bundle_or_network_the_error_names_the_fix"),
]

# The tools behind the report and many runs at once: scripts/, benchmarks/, sweep.py, runner.py.
TOOLS = [
    # scripts/report.py: the rerun, its staging folder and its moves
    Defence("scripts/report.py", "a staging folder that refuses the rerun says how to start over",
            "    except UsageError as e:\n        raise UsageError(f\"{e} (in the report's staging folder",
            "    except ZeroDivisionError as e:\n        raise UsageError(f\"{e} (in the report's staging folder",
            "tests/test_defences_tools.py::test_a_staging_folder_that_refuses_the_rerun_says_how_to_start_over"),
    Defence("scripts/report.py", "the committed folders checked before the rerun trains",
            "    files.prepare_out_dir(ROOT, [path for name, _ in named",
            "    (lambda *a: None)(ROOT, [path for name, _ in named",
            "tests/test_defences_tools.py::test_a_rerun_checks_the_committed_folders_before_it_trains"),
    Defence("scripts/report.py", "a failed run in the rerun: nothing moved into place",
            "    if failed:\n        raise RunFailed(f\"{len(failed)} runs failed",
            "    if False:\n        raise RunFailed(f\"{len(failed)} runs failed",
            "tests/test_defences_tools.py::test_a_rerun_with_a_failed_run_moves_nothing_into_place"),
    Defence("scripts/report.py", "a signal waits for the moves (deferred_signals around them)",
            "    with deferred_signals():\n        for name, _ in named:",
            "    with contextlib.nullcontext():\n        for name, _ in named:",
            "tests/test_defences_tools.py::test_a_signal_during_the_moves_lands_after_every_run_is_moved"),
    Defence("scripts/report.py", "deferred_signals holds Ctrl-C and SIGTERM back",
            "handlers[signum] = signal.signal(signum, lambda number, frame: held.append(number))",
            "handlers[signum] = signal.getsignal(signum)",
            "tests/test_report.py::test_signals_wait_for_the_moves_then_arrive"),
    Defence("scripts/report.py", "deferred_signals delivers a held signal after the block",
            "        for signum in held[:1]:\n            signal.raise_signal(signum)",
            "        for signum in held[:0]:\n            signal.raise_signal(signum)",
            "tests/test_report.py::test_signals_wait_for_the_moves_then_arrive"),
    # scripts/report.py: check_all, each file the README draws on read through its slot before anything is drawn
    Defence("scripts/report.py", "check_all: every experiment's runs",
            "    for label in EXPERIMENTS:\n        load(label)\n    check_choices()\n", "    check_choices()\n",
            "tests/test_slots.py::test_every_file_the_report_uses_is_checked_before_any_section"),
    Defence("scripts/report.py", "check_all: the tuning sweeps' scored runs, and their choices",
            "        load(label)\n    check_choices()\n", "        load(label)\n",
            "tests/test_defences_tools.py::test_check_all_holds_each_scored_tuning_run_to_its_slot"),
    Defence("scripts/report.py", "check_all: the tuning files no sweep scores are named",
            "    for path in left_out():\n", "    for path in []:\n",
            "tests/test_slots.py::test_a_tuning_file_no_sweep_scores_is_named_and_neither_read_nor_counted"),
    # scripts/report.py: the benchmark JSON files
    Defence("scripts/report.py", "a missing or non-object benchmark file is one line",
            "                if not isinstance(bench, dict):\n",
            "                if bench is None:\n",
            "tests/test_scripts.py::test_a_missing_or_unreadable_benchmark_file_stops_the_report_in_one_line"),
    Defence("scripts/report.py", "a damaged benchmark file is one line naming it (the exceptions caught)",
            "except (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError) as e:",
            "except (KeyError, TypeError) as e:",
            "tests/test_scripts.py::test_a_damaged_benchmark_file_stops_the_report_in_one_line"),
    # scripts/report.py: main
    Defence("scripts/report.py", "a README without a section's markers is refused",
            "        if not pattern.search(text):\n            raise UsageError(f\"README.md has no",
            "        if False:\n            raise UsageError(f\"README.md has no",
            "tests/test_defences_tools.py::test_a_readme_without_a_sections_markers_is_refused"),
    Defence("scripts/report.py", "README's and plots' folders proved writable before any work",
            "        for folder in (README.parent, PLOTS):  # checked",
            "        for folder in (README.parent,):  # checked",
            "tests/test_report.py::test_an_unwritable_plots_folder_is_one_line_before_any_work"),
    Defence("scripts/report.py", "a failed benchmark in a full rerun stops the report",
            "                raise RunFailed(\"benchmarks.bench_pipeline failed (above)",
            "                print(\"benchmarks.bench_pipeline failed (above)",
            "tests/test_defences_tools.py::test_a_failed_benchmark_in_a_full_rerun_stops_the_report"),
    Defence("scripts/report.py", "nothing drawn before every section is rendered",
            "        text = render_readme(README.read_text())\n        # Only now, with every file checked and all the "
            "text rendered, is anything drawn or written.\n        build_figures()\n",
            "        build_figures()\n        text = render_readme(README.read_text())\n",
            "tests/test_defences_tools.py::test_nothing_is_drawn_before_every_section_is_rendered"),
    Defence("scripts/report.py", "README replaced whole or not at all (atomic write)",
            "files.atomic_write(README, lambda f: f.write(text.encode()))", "README.write_text(text)",
            "tests/test_defences_tools.py::test_the_readme_is_replaced_whole_or_not_at_all"),
    Defence("scripts/report.py", "--rerun takes only the report's experiments",
            "metavar=\"EXPERIMENT\", choices=list(EXPERIMENTS),", "metavar=\"EXPERIMENT\",",
            "tests/test_defences_tools.py::test_an_unknown_experiment_to_rerun_is_refused_by_the_parser"),
    Defence("scripts/report.py", "an error, a signal or a lost output is one line (cli.run)",
            "    return run(\"report\", body, interrupted=stopped_line,",
            "    return body()\n    return run(\"report\", body, interrupted=stopped_line,",
            "tests/test_tuning.py::test_output_that_cannot_be_written_is_one_line"),
    Defence("scripts/report.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    # scripts/tune.py
    Defence("scripts/tune.py", "a damaged tuning file is trained again, not refused or skipped",
            "    except slots.BadResults as e:\n        emit(f\"tune: {e.path} {e.problem}; training it again\")\n"
            "        return None\n", "",
            "tests/test_slots.py::test_make_tune_trains_a_damaged_run_again_instead_of_skipping_it"),
    Defence("scripts/tune.py", "a tuning run that fails other than by diverging stops the sweep",
            "            if not error.startswith(\"training diverged\"):\n",
            "            if False:\n",
            "tests/test_defences_tools.py::test_a_tuning_run_that_fails_stops_the_sweep_and_is_not_stored_as_diverged"),
    Defence("scripts/tune.py", "--fast with --model refused",
            "        if args.fast and args.model:\n", "        if False:\n",
            "tests/test_defences_tools.py::test_fast_and_model_together_are_refused"),
    Defence("scripts/tune.py", "--model takes only the models with a search space",
            "\"--model\", choices=MODEL_NAMES, nargs=\"+\"", "\"--model\", nargs=\"+\"",
            "tests/test_defences_tools.py::test_tune_refuses_a_model_it_has_no_search_for"),
    Defence("scripts/tune.py", "an error, a signal or a lost output is one line (cli.run)",
            "    return run(\"tune\", body,", "    return body()\n    return run(\"tune\", body,",
            "tests/test_tuning.py::test_output_that_cannot_be_written_is_one_line"),
    # scripts/demo_screenshot.py
    Defence("scripts/demo_screenshot.py", "--out checked before any work",
            "    out = files.check_output(args.out or COMMITTED, \"--out\")",
            "    out = Path(args.out or COMMITTED)",
            "tests/test_scripts.py::test_every_output_is_checked_before_any_work"),
    Defence("scripts/demo_screenshot.py", "--screenshot checked before any work, and never --out itself",
            "    return out, files.figure_beside(out, args.screenshot, COMMITTED,",
            "    return out, args.screenshot or out.with_suffix(\".png\") or files.figure_beside(out, args.screenshot, "
            "COMMITTED,",
            "tests/test_scripts.py::test_the_figure_beside_the_json_is_checked_too"),
    Defence("scripts/demo_screenshot.py", "the committed screenshot drawn only beside the committed JSON",
            "                                    out.with_suffix(\".png\"), \"--screenshot\", \"picture\")",
            "                                    files.ROOT / \"plots\" / \"demo.png\", \"--screenshot\", \"picture\")",
            "tests/test_scripts.py::test_demo_screenshot_draws_beside_its_json_and_the_committed_one_only_beside_the_"
            "committed_json"),
    Defence("scripts/demo_screenshot.py", "no browser: one line before any work",
            "        if missing:\n            raise UsageError(f\"{missing}; the screenshot",
            "        if False:\n            raise UsageError(f\"{missing}; the screenshot",
            "tests/test_defences_tools.py::test_demo_screenshot_without_a_browser_is_one_line_before_any_work"),
    Defence("scripts/demo_screenshot.py", "a demo that does not start is RunFailed with its own line",
            "    process.wait()\n    raise RunFailed(f\"demo.py did not start:",
            "    process.wait()\n    return process, None\n    raise RunFailed(f\"demo.py did not start:",
            "tests/test_defences_tools.py::test_demo_screenshot_says_why_the_demo_did_not_start"),
    Defence("scripts/demo_screenshot.py", "the demo server stopped whatever fails",
            "    finally:\n        server.terminate()\n        server.wait()\n",
            "    finally:\n        pass\n",
            "tests/test_defences_tools.py::test_demo_screenshot_stops_the_demo_and_the_browser_whatever_fails"),
    Defence("scripts/demo_screenshot.py", "the browser quit whatever fails",
            "        finally:\n            driver.quit()\n", "        finally:\n            pass\n",
            "tests/test_defences_tools.py::test_demo_screenshot_stops_the_demo_and_the_browser_whatever_fails"),
    Defence("scripts/demo_screenshot.py", "the wait for the page's answers times out",
            "WebDriverWait(driver, timeout).until", "WebDriverWait(driver, 10**9).until",
            "tests/test_defences_tools.py::test_the_wait_for_the_pages_answers_times_out"),
    # benchmarks/: each parser's bounds (the upper ones; the lower are cli.count's)
    Defence("benchmarks/bench_predict.py", "--count at most 10000",
            "type=count(COUNT), default=COUNT", "type=count(), default=COUNT",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/reference.py", "--epochs at most 1000",
            "\"--epochs\", type=count(1000)", "\"--epochs\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/reference.py", "--limit at most 60000",
            "\"--limit\", type=count(60_000)", "\"--limit\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/reference.py", "--seed from 0 to 4294967295",
            "lambda v: 0 <= v < 2**32", "lambda v: v < 2**32",
            "tests/test_scripts.py::test_bad_arguments_are_one_line_and_exit_2"),
    Defence("benchmarks/reference.py", "--device one of the devices",
            "\"--device\", default=\"cpu\", choices=[\"auto\", \"cpu\", \"cuda\", \"mps\", \"xpu\"],",
            "\"--device\", default=\"cpu\",",
            "tests/test_scripts.py::test_bad_arguments_are_one_line_and_exit_2"),
    Defence("benchmarks/bench_pipeline.py", "--repeats at most 100",
            "\"--repeats\", type=count(100)", "\"--repeats\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_pipeline.py", "--batch-size at most 60000",
            "\"--batch-size\", type=count(60_000)", "\"--batch-size\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_gpu.py", "--epochs at most 1000",
            "\"--epochs\", type=count(1000)", "\"--epochs\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_gpu.py", "--limit at most 60000",
            "\"--limit\", type=count(60_000)", "\"--limit\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_gpu.py", "--device one of the devices",
            "\"--device\", default=\"cuda\", choices=[\"cuda\", \"mps\", \"xpu\", \"cpu\"],",
            "\"--device\", default=\"cuda\",",
            "tests/test_scripts.py::test_bad_arguments_are_one_line_and_exit_2"),
    Defence("benchmarks/bench_time_to_accuracy.py", "--seeds at most 100",
            "\"--seeds\", type=count(100)", "\"--seeds\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_time_to_accuracy.py", "--reference-seeds at most 100",
            "\"--reference-seeds\", type=count(100)", "\"--reference-seeds\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_sweep.py", "--runs at most 256",
            "\"--runs\", type=count(256)", "\"--runs\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_sweep.py", "--epochs at most 100",
            "\"--epochs\", type=count(100)", "\"--epochs\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    Defence("benchmarks/bench_sweep.py", "--repeats at most 20",
            "\"--repeats\", type=count(20)", "\"--repeats\", type=count()",
            "tests/test_defences_tools.py::test_each_benchmark_flag_is_held_to_its_bounds"),
    # benchmarks/: the output checked before any work, and a quick run kept off the committed results
    Defence("benchmarks/bench_pipeline.py", "--out checked before any work",
            "        out = files.bench_output(args.out, \"bench_pipeline.json\", quick=(",
            "        out = args.out or files.ROOT / \"results\" / \"bench_pipeline.json\"\n"
            "        (lambda *a, **k: None)(args.out, \"bench_pipeline.json\", quick=(",
            "tests/test_scripts.py::test_every_output_is_checked_before_any_work"),
    Defence("benchmarks/bench_pipeline.py", "a quick run writes runs/, not results/",
            "args.repeats, args.batch_size) != (REPEATS, RECIPES[\"lenet5\"][\"batch_size\"]))",
            "args.repeats, args.batch_size) == (REPEATS, RECIPES[\"lenet5\"][\"batch_size\"]) and False)",
            "tests/test_scripts.py::test_a_quick_run_does_not_replace_the_committed_results"),
    Defence("benchmarks/bench_predict.py", "--out checked before any work",
            "    out = files.bench_output(args.out, \"bench_predict.json\",",
            "    out = args.out or files.ROOT / \"results\" / \"bench_predict.json\"\n"
            "    (lambda *a, **k: None)(args.out, \"bench_predict.json\",",
            "tests/test_scripts.py::test_every_output_is_checked_before_any_work"),
    Defence("benchmarks/bench_predict.py", "--preview checked before any work, and never --out itself",
            "    return out, files.figure_beside(out, args.preview,",
            "    return out, args.preview or out.with_name(f\"{out.stem}_preview.png\") or files.figure_beside(out, "
            "args.preview,",
            "tests/test_scripts.py::test_the_figure_beside_the_json_is_checked_too"),
    Defence("benchmarks/bench_predict.py", "another checkpoint is a quick run",
            "quick=args.count != COUNT or args.checkpoint.resolve() != CHECKPOINT)", "quick=args.count != COUNT)",
            "tests/test_scripts.py::test_a_quick_run_does_not_replace_the_committed_results"),
    Defence("benchmarks/bench_predict.py", "the committed preview drawn only beside the committed JSON",
            "COMMITTED_PREVIEW, out.with_name(f\"{out.stem}_preview.png\"), \"--preview\")",
            "COMMITTED_PREVIEW, COMMITTED_PREVIEW, \"--preview\")",
            "tests/test_scripts.py::test_bench_predict_draws_its_preview_beside_its_json_and_the_committed_one_only_"
            "beside_the_committed_json"),
    Defence("benchmarks/bench_gpu.py", "--out checked before any work",
            "        out = files.bench_output(args.out, \"bench_gpu.json\",",
            "        out = args.out or ROOT / \"results\" / \"bench_gpu.json\"\n"
            "        (lambda *a, **k: None)(args.out, \"bench_gpu.json\",",
            "tests/test_scripts.py::test_every_output_is_checked_before_any_work"),
    Defence("benchmarks/bench_gpu.py", "fewer epochs, a --limit or the CPU is a quick run",
            "quick=args.epochs != EPOCHS or args.limit is not None or args.device == \"cpu\")",
            "quick=args.epochs != EPOCHS)",
            "tests/test_scripts.py::test_a_quick_run_does_not_replace_the_committed_results"),
    Defence("benchmarks/bench_gpu.py", "no such device: one line before any work",
            "        try:\n            device = engine.resolve_device(args.device)",
            "        rows = measure(args)\n        try:\n            device = engine.resolve_device(args.device)",
            "tests/test_scripts.py::test_bench_gpu_without_a_gpu_is_one_line_before_any_work"),
    Defence("benchmarks/bench_gpu.py", "a failed run stops the benchmark",
            "    if done.returncode:\n        sys.exit(f\"bench_gpu:", "    if False:\n        sys.exit(f\"bench_gpu:",
            "tests/test_defences_tools.py::test_a_failed_process_stops_each_benchmark"),
    Defence("benchmarks/bench_time_to_accuracy.py", "--out checked before any work",
            "        out = files.bench_output(args.out, \"bench_time_to_accuracy.json\",",
            "        out = args.out or ROOT / \"results\" / \"bench_time_to_accuracy.json\"\n"
            "        (lambda *a, **k: None)(args.out, \"bench_time_to_accuracy.json\",",
            "tests/test_scripts.py::test_every_output_is_checked_before_any_work"),
    Defence("benchmarks/bench_time_to_accuracy.py", "a quick run writes runs/, not results/",
            "quick=(args.seeds, args.reference_seeds) != (SEEDS, REFERENCE_SEEDS))",
            "quick=args.seeds != SEEDS)",
            "tests/test_scripts.py::test_a_quick_run_does_not_replace_the_committed_results"),
    Defence("benchmarks/bench_time_to_accuracy.py", "a failed run stops the benchmark",
            "    if process.wait():\n        sys.exit(", "    if process.wait() and False:\n        sys.exit(",
            "tests/test_defences_tools.py::test_a_failed_process_stops_each_benchmark"),
    Defence("benchmarks/bench_time_to_accuracy.py", "a signal stops the child run before the folder goes",
            "        process.terminate()\n        process.wait()\n        raise", "        raise",
            "tests/test_scripts.py::test_a_stopped_benchmark_is_one_line_and_leaves_no_folder_and_no_process"),
    Defence("benchmarks/bench_time_to_accuracy.py", "a failed import stops the start-up timing",
            "subprocess.run([sys.executable, \"-c\", code], cwd=ROOT, check=True)",
            "subprocess.run([sys.executable, \"-c\", code], cwd=ROOT)",
            "tests/test_defences_tools.py::test_a_failed_import_stops_the_start_up_timing"),
    Defence("benchmarks/bench_demo.py", "--out checked before any work",
            "        out = files.check_output(args.out or files.ROOT / \"results\" / \"bench_demo.json\", \"--out\")\n"
            "        result = measure(report_checkpoints())\n",
            "        result = measure(report_checkpoints())\n"
            "        out = files.check_output(args.out or files.ROOT / \"results\" / \"bench_demo.json\", \"--out\")\n",
            "tests/test_scripts.py::test_every_output_is_checked_before_any_work"),
    Defence("benchmarks/bench_demo.py", "a missing checkpoint named before the server starts",
            "        if not path.is_file():\n", "        if False:\n",
            "tests/test_scripts.py::test_bench_demo_names_a_missing_checkpoint_before_starting_the_server"),
    Defence("benchmarks/bench_demo.py", "a demo that does not start is RunFailed",
            "        if started is None:\n", "        if False:\n",
            "tests/test_defences_tools.py::test_bench_demo_says_the_demo_did_not_start"),
    Defence("benchmarks/bench_demo.py", "the demo server stopped whatever fails",
            "        server.terminate()\n        server.wait()\n", "        pass\n",
            "tests/test_defences_tools.py::test_bench_demo_stops_the_demo_when_a_request_fails"),
    Defence("benchmarks/bench_sweep.py", "--out checked before any work",
            "        out = files.bench_output(args.out, \"bench_sweep.json\",",
            "        out = args.out or ROOT / \"results\" / \"bench_sweep.json\"\n"
            "        (lambda *a, **k: None)(args.out, \"bench_sweep.json\",",
            "tests/test_defences_tools.py::test_bench_sweep_checks_its_output_before_any_work"),
    Defence("benchmarks/bench_sweep.py", "a quick run writes runs/, not results/",
            "quick=(args.runs, args.epochs, args.repeats) != (RUNS, EPOCHS, REPEATS))",
            "quick=(args.runs, args.epochs) != (RUNS, EPOCHS))",
            "tests/test_defences_tools.py::test_a_quick_bench_sweep_does_not_replace_the_committed_results"),
    Defence("benchmarks/bench_sweep.py", "a failed way stops the benchmark",
            "    if done.returncode:\n        last =", "    if False:\n        last =",
            "tests/test_defences_tools.py::test_a_failed_process_stops_each_benchmark"),
    Defence("benchmarks/bench_pipeline.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    Defence("benchmarks/bench_gpu.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    Defence("benchmarks/bench_predict.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    Defence("benchmarks/bench_demo.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    Defence("benchmarks/bench_time_to_accuracy.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    Defence("benchmarks/reference.py", "Ctrl-C while it starts is one line",
            "allow_ctrl_c = stop_on_ctrl_c(", "allow_ctrl_c = (lambda message: lambda: None)(",
            "tests/test_scripts.py::test_ctrl_c_while_a_script_starts_is_one_line"),
    # sweep.py
    Defence("sweep.py", "MAX_RUNS: at most 1000 runs a sweep",
            "MAX_RUNS = 1000", "MAX_RUNS = 100_000",
            "tests/test_defences_tools.py::test_a_grid_past_the_cap_is_refused_and_one_at_it_is_taken"),
    Defence("sweep.py", "a grid past MAX_RUNS refused",
            "        if len(runs_) > MAX_RUNS:", "        if len(runs_) > 2 * MAX_RUNS:",
            "tests/test_defences_tools.py::test_a_grid_past_the_cap_is_refused_and_one_at_it_is_taken"),
    Defence("sweep.py", "a verdict needs two seeds",
            "    if len(comparison.discordant) < 2:", "    if len(comparison.discordant) < 1:",
            "tests/test_sweep.py::test_one_seed_gets_no_verdict"),
    Defence("sweep.py", "a tag too long for the runs' names is one line",
            "            try:\n                check_tag(tag)\n            except ValueError:\n",
            "            if False:\n                check_tag(tag)\n            if False:\n",
            "tests/test_defences_tools.py::test_a_tag_too_long_for_the_runs_names_is_one_line"),
    Defence("sweep.py", "a tag that would name another model's runs refused",
            "            check_run_name(model, tag)\n", "",
            "tests/test_sweep.py::test_bad_flags_get_one_line_before_any_run_or_ray"),
    Defence("sweep.py", "a value given twice (a run named twice) refused",
            "    if repeated:\n", "    if False:\n",
            "tests/test_sweep.py::test_bad_flags_get_one_line_before_any_run_or_ray"),
    Defence("sweep.py", "--model takes only the models",
            "default=[\"lenet5\"], choices=MODEL_NAMES,", "default=[\"lenet5\"],",
            "tests/test_defences_tools.py::test_a_bad_choice_is_refused_by_the_parser"),
    Defence("sweep.py", "--recipe takes only the named recipes",
            "default=[\"default\"], choices=RECIPE_NAMES,", "default=[\"default\"],",
            "tests/test_defences_tools.py::test_a_bad_choice_is_refused_by_the_parser"),
    Defence("sweep.py", "--device takes only the devices",
            "p.add_argument(\"--device\", default=\"auto\", choices=[\"auto\", \"cpu\", \"cuda\", \"mps\", \"xpu\"],",
            "p.add_argument(\"--device\", default=\"auto\",",
            "tests/test_defences_tools.py::test_a_bad_choice_is_refused_by_the_parser"),
    Defence("sweep.py", "a stopped sweep says the command that continues it",
            "        except (KeyboardInterrupt, Interrupted) as e:", "        except ZeroDivisionError as e:",
            "tests/test_defences_tools.py::test_a_stopped_sweep_says_how_to_continue"),
    Defence("sweep.py", "a failed run: exit status 1",
            "        if failed:\n            print(f\"sweep.py:", "        if False:\n            print(f\"sweep.py:",
            "tests/test_sweep.py::test_a_run_that_fails_is_named_and_the_others_go_on"),
    Defence("sweep.py", "no finished run: no comparison",
            "    if not any(correct.values()):\n", "    if False:\n",
            "tests/test_defences_tools.py::test_a_table_with_no_finished_run_says_so"),
    Defence("sweep.py", "the table counts only runs that fill their slots",
            "\"train it again with this command\",\n                                 recipe=recipe, labels=labels)",
            "\"train it again with this command\")",
            "tests/test_defences_tools.py::test_the_table_counts_only_runs_that_fill_their_slots"),
    # runner.py: the flags
    Defence("runner.py", "--gpus-per-run refused without runs at once on Ray",
            "    if args.gpus_per_run and args.jobs == 1 and not address:", "    if False:",
            "tests/test_sweep.py::test_a_share_of_a_gpu_needs_runs_at_once"),
    Defence("runner.py", "RAY_ADDRESS only with --jobs above 1",
            "(os.environ.get(\"RAY_ADDRESS\") or None if args.jobs > 1 else None)",
            "(os.environ.get(\"RAY_ADDRESS\") or None)",
            "tests/test_defences_tools.py::test_ray_address_stands_in_for_address_only_for_runs_at_once"),
    Defence("runner.py", "--gpus-per-run refused where there is no GPU, before Ray starts",
            "                if settings.gpus and not gpus:\n", "                if False:\n",
            "tests/test_defences_tools.py::test_a_share_of_a_gpu_that_is_not_here_is_refused_before_ray_starts"),
    Defence("runner.py", "--address probed before Ray connects",
            "                reachable(settings.address)\n", "",
            "tests/test_defences_tools.py::test_an_address_where_nothing_answers_is_refused_before_ray_connects"),
    Defence("runner.py", "the probe's refusal: nothing answers there",
            "    except OSError as e:\n        raise UsageError(f\"--address {address}: nothing answers there",
            "    except ZeroDivisionError as e:\n"
            "        raise UsageError(f\"--address {address}: nothing answers there",
            "tests/test_defences_tools.py::test_an_address_where_nothing_answers_is_refused_before_ray_connects"),
    Defence("runner.py", "the probe times out",
            "int(port)), timeout=seconds).close()", "int(port))).close()",
            "tests/test_defences_tools.py::test_an_address_that_swallows_packets_is_refused_when_the_probe_times_out"),
    # runner.py: a private Ray instance
    Defence("runner.py", "a private instance listens on loopback only",
            "_node_ip_address=\"127.0.0.1\", ", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "a private instance takes token authentication",
            "\"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER\": \"0\", \"RAY_AUTH_MODE\": \"token\"}",
            "\"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER\": \"0\"}",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "a private instance's own token",
            "environment.update(PRIVATE_ENVIRONMENT, RAY_AUTH_TOKEN=token)", "environment.update(PRIVATE_ENVIRONMENT)",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "no usage statistics sent",
            "RAY_ENVIRONMENT = {\"RAY_USAGE_STATS_ENABLED\": \"0\", ", "RAY_ENVIRONMENT = {",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "no dashboard",
            "include_dashboard=False)", "include_dashboard=None)",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "a private instance's files in the scratch folder, removed with it",
            "_temp_dir=scratch, ", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "Ray's head finds its bootstrap file: no look for cloud metadata at 169.254.169.254",
            "        Path(boot_home, \"ray_bootstrap_config.yaml\").write_text(\"{}\\n\")\n", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "the driver's HOME given back after Ray starts",
            "            else:\n                os.environ[\"HOME\"] = home\n", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_stays_on_loopback_behind_its_own_token"),
    Defence("runner.py", "Ray's workers get the package alone: no .venv, tests or raw data",
            "PACKAGE = (\"*.py\", \"scripts/*.py\", \"data/bundle/*\")", "PACKAGE = (\"**/*.py\", \"data/bundle/*\")",
            "tests/test_defences_tools.py::test_rays_workers_get_the_package_and_nothing_else"),
    # runner.py: signals, leftover processes and the scratch folder
    Defence("runner.py", "reap: SIGKILL what holds a file in the scratch folder",
            "                os.kill(int(entry.name), signal.SIGKILL)", "                pass",
            "tests/test_defences_tools.py::test_reap_kills_what_holds_a_file_in_the_scratch_folder_and_nothing_else"),
    Defence("runner.py", "reap: only files inside the scratch folder, not beside it",
            "path.startswith(f\"{scratch}/\")", "path.startswith(f\"{scratch}\")",
            "tests/test_defences_tools.py::test_reap_kills_what_holds_a_file_in_the_scratch_folder_and_nothing_else"),
    Defence("runner.py", "reap: a descriptor closed while it looks does not hide the process",
            "            except OSError:  # closed since the listing: the others still count\n"
            "                continue\n",
            "            except OSError:\n                held = []\n                break\n",
            "tests/test_defences_tools.py::test_reap_kills_a_process_even_where_one_of_its_files_closes_while_it_"
            "looks"),
    Defence("runner.py", "reap: never the driver itself",
            "        if not entry.name.isdigit() or int(entry.name) == os.getpid():",
            "        if not entry.name.isdigit():",
            "tests/test_defences_tools.py::test_reap_spares_the_process_that_calls_it"),
    Defence("runner.py", "a private instance's leftover processes reaped",
            "            reap(scratch)\n", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_that_fails_to_start_leaves_no_folder_no_"
            "process_and_no_handler"),
    Defence("runner.py", "a private instance's scratch folder removed",
            "            shutil.rmtree(scratch, ignore_errors=True)\n", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_that_fails_to_start_leaves_no_folder_no_"
            "process_and_no_handler"),
    Defence("runner.py", "the signal handlers given back",
            "        for signum, handler in handlers.items():\n            signal.signal(signum, handler)\n", "",
            "tests/test_defences_tools.py::test_a_private_ray_instance_that_fails_to_start_leaves_no_folder_no_"
            "process_and_no_handler"),
    Defence("runner.py", "Ray's own SIGTERM exit during its start is a SIGTERM",
            "            except SystemExit:  # Ray's own SIGTERM handler, installed during ray.init, went off first\n"
            "                raise Terminated from None\n", "",
            "tests/test_defences_tools.py::test_rays_own_sigterm_exit_during_its_start_is_a_sigterm"),
    Defence("runner.py", "a Ray error cut to 300 characters",
            "{lines[-1] if lines else ''}\".strip()[:300]", "{lines[-1] if lines else ''}\".strip()",
            "tests/test_defences_tools.py::test_a_ray_error_is_one_short_line"),
    # runner.py: the runs' files
    Defence("runner.py", "more runs than the hard limit on open files refused",
            "    if hard != resource.RLIM_INFINITY and hard < wanted:\n", "    if False:\n",
            "tests/test_defences_tools.py::test_more_runs_than_the_hard_limit_on_open_files_is_refused"),
    Defence("runner.py", "a finished run with damaged results trained again",
            "                slots.load(paths.results, \"training it again\", recipe=recipe, "
            "labels=labels_of(recipe))\n",
            "",
            "tests/test_sweep.py::test_a_finished_run_whose_results_are_damaged_is_trained_again"),
    Defence("runner.py", "the output folders proved writable before any work",
            "    files.prepare_out_dir(out_dir, [path for job in jobs",
            "    (lambda *a: None)(out_dir, [path for job in jobs",
            "tests/test_defences_tools.py::test_plan_checks_the_output_folders_before_any_work"),
    Defence("runner.py", "each run's lock held while it trains",
            "            locks.enter_context(files.RunLock(job.paths))", "            pass",
            "tests/test_defences_tools.py::test_a_second_tuning_of_the_same_run_refuses_while_the_first_holds_it"),
    Defence("runner.py", "a run's results written last",
            "KINDS = (\"checkpoint\", \"curves\", \"results\")", "KINDS = (\"results\", \"checkpoint\", \"curves\")",
            "tests/test_defences_tools.py::test_a_run_whose_checkpoint_cannot_be_written_leaves_no_results"),
    Defence("runner.py", "a run's temporary folder removed",
            "tempfile.TemporaryDirectory(prefix=\"mnist-run-\") as folder",
            "contextlib.nullcontext(tempfile.mkdtemp(prefix=\"mnist-run-\")) as folder",
            "tests/test_defences_tools.py::test_a_run_trained_in_a_temporary_folder_leaves_none_behind"),
    # runner.py: runs on Ray (these tests start Ray, in a network namespace of its own: minutes each)
    Defence("runner.py", "a signal while runs are pending stops the sweep",
            "                while pending:\n                    stopped()\n", "                while pending:\n",
            "tests/test_sweep.py::test_a_stopped_sweep_keeps_its_finished_runs_and_the_same_command_runs_only_"
            "the_rest"),
    Defence("runner.py", "the driver's signal handlers put back after ray.init takes SIGTERM",
            "            finally:\n                listen()\n", "            finally:\n                pass\n",
            "tests/test_sweep.py::test_a_stopped_sweep_keeps_its_finished_runs_and_the_same_command_runs_only_"
            "the_rest"),
    Defence("runner.py", "a run whose node dies is run again",
            "max_retries=RETRIES,", "max_retries=0,",
            "tests/test_sweep.py::test_a_sweep_on_two_nodes_completes_when_one_dies_mid_sweep"),
    Defence("runner.py", "a private instance's runs keep their temporary folders in its scratch folder, removed "
                         "with it",
            '            if scratch:  # the runs\' temporary folders too, removed with it: a cancelled task is killed '
            'uncleaned\n                runtime_env["env_vars"]["TMPDIR"] = scratch\n', "",
            "tests/test_sweep.py::"
            "test_a_stopped_sweep_keeps_its_finished_runs_and_the_same_command_runs_only_the_rest"),
    Defence("runner.py", "a task killed by the signal that stops the sweep is the stop, not a failed run",
            "                            stopped()  # a task killed by the signal that stops the sweep is not a failed "
            "run\n", "",
            "tests/test_defences_tools.py::"
            "test_a_task_killed_by_the_signal_that_stops_the_sweep_is_the_stop_not_a_failed_run"),
    Defence("runner.py", "a signal that comes with the last run still stops the sweep",
            "                stopped()  # the signal that killed the last tasks, which ended the loop\n", "",
            "tests/test_defences_tools.py::test_a_signal_that_arrives_with_the_last_run_still_stops_the_sweep"),
]

DEFENCES = QUOTED + SERVING + RUNS + TOOLS


def tracked_files():
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name]


def scratch_copy(into):
    """The repository's files as they are in the working tree (ignored ones aside), and the extracted MNIST."""
    for name in tracked_files():
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    if (ROOT / "data" / "MNIST").is_dir():
        os.symlink(ROOT / "data" / "MNIST", into / "data" / "MNIST")


# The pytest processes under way, so that Ctrl-C stops them too, and not only the one this thread waits for.
RUNNING = set()


def pytest(repo, nodes):
    """(exit status of pytest running nodes in repo, its last lines); status None where it ran past TIMEOUT."""
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *nodes],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               # No bytecode: a mutant and its undoing can share a size and a second of mtime.
                               env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                               start_new_session=True)  # its own group, so that a hung test's children go with it
    RUNNING.add(process)
    try:
        out, _ = process.communicate(timeout=TIMEOUT)
        return process.returncode, out.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        return None, []
    finally:
        stop(process)
        process.communicate()
        RUNNING.discard(process)


def stop(process):
    """SIGKILL a pytest that is still running (past TIMEOUT, or Ctrl-C here), and what it started."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def verdict(status):
    # pytest exits 1 when a test failed; 2, 4 and 5 mean it never got to judge (an import broke, no such test).
    return {1: "red", 0: "GREEN", None: "HUNG"}.get(status, "BROKEN")


def try_one(defence, repos):
    """The defence's row of the table: its outcome and the seconds it took, in a scratch copy taken from repos
    for the while."""
    repo = repos.get()
    path = repo / defence.file
    source = path.read_text()
    started = time.monotonic()
    try:
        if source.count(defence.old) != 1:
            outcome = "BROKEN"
        else:
            path.write_text(source.replace(defence.old, defence.new))
            outcome = verdict(pytest(repo, [defence.test])[0])
    finally:
        path.write_text(source)
        repos.put(repo)
    return {"file": defence.file, "defence": defence.what, "test": defence.test, "outcome": outcome,
            "seconds": round(time.monotonic() - started, 1)}


def try_each(chosen, repos, jobs):
    """Each chosen defence's row, in order, jobs of them at once (each test is a process of its own, mostly
    waiting on one core)."""
    pool = ThreadPoolExecutor(jobs)
    try:
        yield from pool.map(lambda defence: try_one(defence, repos), chosen)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        for process in list(RUNNING):
            stop(process)
        pool.shutdown(wait=True)  # each thread puts its file back


def get_args_parser():
    parser = OneLineErrorParser(prog="mutants", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="only the entries whose file, defence or test holds this text; "
                                                   "default: every entry")
    parser.add_argument("--jobs", type=count(16), default=1, help="tests run at once, each in its own scratch copy, "
                                                                   "from 1 to 16")
    parser.add_argument("--out", type=Path, help="where the table goes, as JSON; default: results/defences.json for "
                                                 "every entry, runs/defences.json for some")
    return parser


def main(args):
    def body():
        chosen = [d for d in DEFENCES if args.only in f"{d.file} {d.what} {d.test}"]
        if not chosen:
            raise UsageError(f"no entry's file, defence or test holds --only {args.only!r}; see tests/mutants.py")
        out = files.bench_output(args.out, "defences.json", quick=len(chosen) < len(DEFENCES))
        with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
            repos = queue.SimpleQueue()
            for i in range(args.jobs):
                scratch_copy(Path(scratch, str(i)))
                repos.put(Path(scratch, str(i)))
            status, tail = pytest(Path(scratch, "0"), sorted({d.test for d in chosen}))
            if status != 0:
                raise UsageError("the tests fail with every defence in place; fix that first: " + " / ".join(tail))
            emit("| file | defence | test | without it |\n|---|---|---|---|")
            rows = []
            for row in try_each(chosen, repos, args.jobs):
                rows.append(row)
                emit(f"| {row['file']} | {row['defence']} | `{row['test'].split('::', 1)[1]}` | {row['outcome']} "
                     f"({row['seconds']:.0f} s) |")
        red = sum(row["outcome"] == "red" for row in rows)
        files.write_json(out, {"red": red, "entries": len(rows), "complete": len(rows) == len(DEFENCES),
                               "python": platform.python_version(), "defences": rows})
        emit(f"{red} of {len(rows)} defences are guarded by a test that fails without them; wrote {out}")
        return 0 if red == len(rows) else 1
    return run("mutants", body, interrupted="mutants: interrupted; nothing written, the working tree untouched")


if __name__ == "__main__":
    sys.exit(main(get_args_parser().parse_args()))

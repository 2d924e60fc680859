"""Every defence, and the test that notices it going.

Each entry below is a refusal, cap, timeout or check, written as the code that holds it (`old`) and the same code
with the defence deleted or loosened (`new`). `python tests/mutants.py` (or `make defences`) makes each change in
turn, in a scratch copy of the repository, runs the entry's test there, and reports the test red (it noticed), green
(a defence no test guards) or broken (the change did not run at all: a bad entry). The working tree is never touched.
tests/test_mutants.py checks, in the ordinary suite, that each `old` still reads as listed, so the table cannot rot.

    python tests/mutants.py                 # all of them, ~15 min on 2 CPU cores
    python tests/mutants.py --only demo.py  # the entries whose file, defence or test contains this text
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300  # seconds a test may take with its defence gone; a test that hangs instead of failing is reported


@dataclass(frozen=True)
class Defence:
    file: str  # relative to the repository root
    what: str  # the defence, in words
    old: str  # its code, exactly once in file
    new: str  # that code without the defence
    test: str  # the pytest node that must fail without it


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
            'saved = results.get("recipe") if isinstance(results, dict) and results.get("status") == "complete" else '
            "None",
            "saved = None",
            "tests/test_reliability.py::test_results_without_their_checkpoint_are_not_replaced_either"),
    Defence("runs.py", "a finished run with other settings is not replaced",
            '        if changed:\n            raise UsageError(f"{finished}, where',
            '        if False:\n            raise UsageError(f"{finished}, where',
            "tests/test_reliability.py::test_a_finished_run_is_not_replaced_by_one_with_other_settings"),
    Defence("runs.py", "a finished run with the same settings is not rerun (its results would be stripped)",
            '        raise UsageError(f"{finished}; {\'pass --resume to skip it, \' if skip_finished else \'\'}pass '
            '--tag NAME or "\n                         f"another --out-dir to train it again beside it, or '
            '--overwrite to replace it")',
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
            "tests/test_defences_runs.py::test_a_second_ctrl_c_while_the_results_are_written_says_the_checkpoint_is_kept"),
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
            '    except OSError as e:\n        raise UsageError(f"--out-dir',
            '    except ZeroDivisionError as e:\n        raise UsageError(f"--out-dir',
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
            "    except (OSError, ValueError):\n        return None", "    except OSError:\n        return None",
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
            "tests/test_defences_runs.py::test_the_size_cap_admits_the_largest_checkpoint_main_py_writes_and_little_more"),
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
            "tests/test_significance.py::test_the_unpaired_interval_adds_both_figures_binomial_noise_and_their_seeds_spread"),
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
]

DEFENCES = SERVING + RUNS + TOOLS


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


def pytest(repo, nodes):
    """(exit status of pytest running nodes in repo, its last lines); status None where it ran past TIMEOUT."""
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *nodes],
                               cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               # No bytecode: a mutant and its undoing can share a size and a second of mtime.
                               env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
                               start_new_session=True)  # its own group, so that a hung test's children go with it
    try:
        out, _ = process.communicate(timeout=TIMEOUT)
        return process.returncode, out.strip().splitlines()[-3:]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return None, []
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def verdict(status):
    # pytest exits 1 when a test failed; 2, 4 and 5 mean it never got to judge (an import broke, no such test).
    return {1: "red", 0: "GREEN", None: "HUNG"}.get(status, "BROKEN")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="only the entries whose file, defence or test contains this text "
                                                   "(default: every entry)")
    args = parser.parse_args()
    chosen = [d for d in DEFENCES if args.only in f"{d.file} {d.what} {d.test}"]
    if not chosen:
        sys.exit(f"mutants.py: no entry matches --only {args.only!r}")
    with tempfile.TemporaryDirectory(prefix="mutants-") as scratch:
        repo = Path(scratch)
        scratch_copy(repo)
        status, tail = pytest(repo, sorted({d.test for d in chosen}))
        if status != 0:
            sys.exit("mutants.py: the tests fail with every defence in place; fix that first:\n" + "\n".join(tail))
        print("| file | defence | test | without it |\n|---|---|---|---|", flush=True)
        failures = 0
        for d in chosen:
            path = repo / d.file
            source = path.read_text()
            if source.count(d.old) != 1:
                outcome, seconds = "BROKEN (code not found once)", 0.0
            else:
                started = time.monotonic()
                path.write_text(source.replace(d.old, d.new))
                try:
                    status, tail = pytest(repo, [d.test])
                finally:
                    path.write_text(source)
                outcome, seconds = verdict(status), time.monotonic() - started
            failures += outcome != "red"
            print(f"| {d.file} | {d.what} | `{d.test.split('::', 1)[1]}` | {outcome} ({seconds:.0f} s) |", flush=True)
    print(f"\n{len(chosen) - failures} of {len(chosen)} defences are guarded by a test that fails without them")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

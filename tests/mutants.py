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
    Defence("demo.py", "MAX_BYTES, the body cap, is 2 MB",
            "MAX_BYTES = 2 * 1024 * 1024\n", "MAX_BYTES = 16 * 1024 * 1024\n",
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
    Defence("demo.py", "a body declared far over MAX_BYTES is refused unread, not drained",
            "if length <= 8 * MAX_BYTES:", "if True:",
            "tests/test_defences.py::test_a_body_declared_far_over_the_cap_is_refused_at_once_without_reading_it"),
    Defence("demo.py", "an empty body refused (400)",
            '    if not body:\n        raise BadRequest("empty body',
            '    if False:\n        raise BadRequest("empty body',
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
    Defence("demo.py", "a text body that is not a PNG data URL refused (415)",
            'if header != b"data:image/png;base64":', "if False:",
            "tests/test_demo.py::test_an_eps_body_never_reaches_a_decoder"),
    Defence("demo.py", "base64 decoded with validate: junk refused, not skipped",
            "base64.b64decode(data, validate=True)", "base64.b64decode(data)",
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
    Defence("demo.py", "a Content-Type other than image/png or text/plain refused (415)",
            '    elif content_type != "image/png":\n', "    elif False:\n",
            "tests/test_demo.py::test_an_eps_body_never_reaches_a_decoder"),
    Defence("demo.py", "only PNG reaches a decoder",
            'formats=("PNG",), max_pixels=MAX_PIXELS)', "max_pixels=MAX_PIXELS)",
            "tests/test_defences.py::test_a_body_in_another_format_is_not_decoded_even_as_image_png"),
    Defence("demo.py", "the demo's own pixel cap passed to open_image",
            ", max_pixels=MAX_PIXELS)", ")",
            "tests/test_defences.py::test_the_demo_holds_images_to_its_own_lower_pixel_cap"),
    Defence("demo.py", "MAX_PIXELS, the demo's pixel cap, is 4096x4096",
            "MAX_PIXELS = 4096 * 4096", "MAX_PIXELS = 8192 * 8192",
            "tests/test_defences.py::test_the_demo_holds_images_to_its_own_lower_pixel_cap"),
    Defence("demo.py", "an unreadable image is a 400, not a dropped connection",
            "    try:\n        return images.open_image(io.BytesIO(body), formats=(\"PNG\",), max_pixels=MAX_PIXELS)\n"
            "    except images.Unreadable as e:\n        raise BadRequest(str(e)) from None\n",
            "    return images.open_image(io.BytesIO(body), formats=(\"PNG\",), max_pixels=MAX_PIXELS)\n",
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
    Defence("demo.py", "a shift that is not a whole number refused (400)",
            '    try:\n        dx, dy = (int(parse_qs(query).get(key, ["0"])[0]) for key in ("dx", "dy"))\n'
            '    except ValueError:\n        raise BadRequest("dx and dy must be whole numbers") from None\n',
            '    dx, dy = (int(parse_qs(query).get(key, ["0"])[0]) for key in ("dx", "dy"))\n',
            "tests/test_demo.py::test_bad_input_gets_a_4xx_and_the_server_stays_up"),
    Defence("demo.py", "a shift beyond MAX_SHIFT either way refused",
            "if max(abs(dx), abs(dy)) > MAX_SHIFT:", "if max(dx, dy) > MAX_SHIFT:",
            "tests/test_defences.py::test_a_shift_beyond_the_bound_either_way_is_refused"),
    Defence("demo.py", "MAX_SHIFT is 10 pixels",
            "MAX_SHIFT = 10\n", "MAX_SHIFT = 28\n",
            "tests/test_defences.py::test_a_shift_beyond_the_bound_either_way_is_refused"),
    Defence("demo.py", "a model that answers NaN is a 500",
            "            if not torch.isfinite(probabilities).all():\n", "            if False:\n",
            "tests/test_defences.py::test_a_model_that_answers_nan_is_a_500_in_the_demo"),
    Defence("demo.py", "the request deadline (REQUEST_SECONDS) is started for each request",
            "            self.deadline.start()\n", "",
            "tests/test_demo.py::test_a_client_that_trickles_its_request_is_cut_off_at_the_deadline"),
    Defence("demo.py", "the request deadline covers the body, not only the headers",
            "                body = self.body()\n                self.deadline.cancel()\n",
            "                self.deadline.cancel()\n                body = self.body()\n",
            "tests/test_defences.py::test_the_deadline_covers_the_body_not_only_the_headers"),
    Defence("demo.py", "REQUEST_SECONDS, the whole-request deadline, is 30 s",
            "REQUEST_SECONDS = 30 ", "REQUEST_SECONDS = 300 ",
            "tests/test_defences.py::test_the_demos_limits_are_those_the_readme_promises"),
    Defence("demo.py", "TIMEOUT bounds every read and write on a connection",
            "        timeout = seconds  # for every read", "        timeout = None  # for every read",
            "tests/test_demo.py::test_a_client_that_stalls_is_cut_off_and_the_others_still_answered"),
    Defence("demo.py", "TIMEOUT, the longest silence, is 10 s",
            "TIMEOUT = 10 ", "TIMEOUT = None ",
            "tests/test_defences.py::test_the_demos_limits_are_those_the_readme_promises"),
    Defence("demo.py", "an HTTP/0.9 request line refused (505) with a status line",
            "            if len(self.raw_requestline.split()) == 2:\n", "            if False:\n",
            "tests/test_demo.py::test_malformed_requests_get_one_json_answer"),
    Defence("demo.py", "a GET with a Content-Length body closes its connection",
            '            if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:\n',
            '            if "Transfer-Encoding" in self.headers:\n',
            "tests/test_demo.py::test_a_body_the_server_does_not_read_is_never_the_next_request"),
    Defence("demo.py", "a GET with a chunked body closes its connection",
            '!= "0" or "Transfer-Encoding" in self.headers:', '!= "0":',
            "tests/test_defences.py::test_a_get_with_a_chunked_body_closes_its_connection"),
    Defence("demo.py", "a GET for another name refused (421)",
            "            if not self.from_here():\n                return\n            try:\n",
            "            try:\n",
            "tests/test_demo.py::test_a_request_for_another_name_gets_no_answer"),
    Defence("demo.py", "a POST for another name or from another origin refused",
            "                if not self.from_here():\n                    return\n", "",
            "tests/test_demo.py::test_a_request_for_another_name_gets_no_answer"),
    Defence("demo.py", "a GET whose URL cannot be read is a 400",
            "            try:\n                path = urlparse(self.path).path\n            except ValueError:\n"
            "                self.close_connection = True\n"
            "                return self.answer(400, {\"error\": \"the request's URL cannot be read\"}, head=head)\n",
            "            path = urlparse(self.path).path\n",
            "tests/test_demo.py::test_malformed_requests_get_one_json_answer"),
    Defence("demo.py", "a POST whose URL cannot be read is a 400",
            "                try:\n                    url = urlparse(self.path)\n                except ValueError:\n"
            "                    raise BadRequest(\"the request's URL cannot be read\") from None\n",
            "                url = urlparse(self.path)\n",
            "tests/test_demo.py::test_malformed_requests_get_one_json_answer"),
    Defence("demo.py", "a GET for any page but / is a 404",
            '            if path != "/":\n', "            if False:\n",
            "tests/test_defences.py::test_any_other_page_is_a_404"),
    Defence("demo.py", "a POST anywhere but /predict is a 404, its body unread",
            '                if url.path != "/predict":\n', "                if False:\n",
            "tests/test_defences.py::test_a_drawing_posted_anywhere_but_predict_is_a_404_and_not_read"),
    Defence("demo.py", "a refused POST closes its connection (its body may be unread)",
            "                self.close_connection = True  # its body may be unread",
            "                pass  # its body may be unread",
            "tests/test_demo.py::test_a_body_the_server_does_not_read_is_never_the_next_request"),
    Defence("demo.py", "READING_AT_ONCE drawings read at once, the others wait",
            "reading = threading.BoundedSemaphore(READING_AT_ONCE)",
            "reading = threading.BoundedSemaphore(4 * READING_AT_ONCE)",
            "tests/test_demo.py::test_only_a_few_drawings_are_read_at_once"),
    Defence("demo.py", "READING_AT_ONCE is 2",
            "READING_AT_ONCE = 2 ", "READING_AT_ONCE = 8 ",
            "tests/test_defences.py::test_the_demos_limits_are_those_the_readme_promises"),
    Defence("demo.py", "http.server's own refusals close their connection",
            "            self.close_connection = True\n            self.request_version = self.protocol_version",
            "            self.request_version = self.protocol_version",
            "tests/test_defences.py::test_a_request_http_server_refuses_closes_its_connection"),
    Defence("demo.py", "http.server's own refusals have a status line (not HTTP/0.9's bare body)",
            "            self.request_version = self.protocol_version  # not HTTP/0.9",
            "            pass  # not HTTP/0.9",
            "tests/test_demo.py::test_malformed_requests_get_one_json_answer"),
    Defence("demo.py", "a Host that is not ours refused (421)",
            "if len(hosts) != 1 or hosts[0].lower() not in ours:", "if len(hosts) != 1:",
            "tests/test_demo.py::test_a_request_for_another_name_gets_no_answer"),
    Defence("demo.py", "two Host headers refused (421)",
            "if len(hosts) != 1 or hosts[0].lower()", "if not hosts or hosts[0].lower()",
            "tests/test_defences.py::test_two_host_headers_are_refused_even_when_both_are_ours"),
    Defence("demo.py", "a Host without the port is ours only on port 80",
            "| (set(HOSTS) if port == 80 else set())", "| set(HOSTS)",
            "tests/test_demo.py::test_a_request_for_another_name_gets_no_answer"),
    Defence("demo.py", "a request for another name (421) closes its connection",
            "                self.close_connection = True\n                self.answer(421",
            "                self.answer(421",
            "tests/test_defences.py::test_a_request_refused_for_its_name_or_origin_closes_its_connection"),
    Defence("demo.py", "a POST from another origin refused (403)",
            'foreign = len(origins) > 1 or origins and origins[0] not in {f"http://{host}" for host in ours}',
            "foreign = len(origins) > 1",
            "tests/test_demo.py::test_a_drawing_sent_from_another_sites_page_is_refused"),
    Defence("demo.py", "two Origin headers refused (403)",
            "foreign = len(origins) > 1 or origins and", "foreign = origins and",
            "tests/test_demo.py::test_two_origins_are_refused_even_when_the_first_is_ours"),
    Defence("demo.py", "an Origin is ours only by its whole scheme, host and port",
            'origins[0] not in {f"http://{host}" for host in ours}',
            'not origins[0].startswith(("http://127.0.0.1", "http://localhost", "http://[::1]"))',
            "tests/test_defences.py::test_an_origin_is_ours_only_by_scheme_host_and_port"),
    Defence("demo.py", "a POST from another origin (403) closes its connection",
            "                self.close_connection = True\n                self.answer(403",
            "                self.answer(403",
            "tests/test_defences.py::test_a_request_refused_for_its_name_or_origin_closes_its_connection"),
    Defence("demo.py", "a chunked body refused (411)",
            '            if "Transfer-Encoding" in self.headers:\n                self.close_connection = True  # the chunks',
            "            if False:\n                self.close_connection = True  # the chunks",
            "tests/test_defences.py::test_a_chunked_body_with_a_content_length_as_well_gets_411"),
    Defence("demo.py", "a body without a Content-Length refused (411)",
            "            if not lengths:\n", "            if False:\n",
            "tests/test_demo.py::test_a_body_length_that_is_not_a_count_of_bytes_gets_a_4xx"),
    Defence("demo.py", "a Content-Length that is not a count of bytes refused (400)",
            "not (lengths[0].isascii() and lengths[0].isdigit())", "not lengths[0].isascii()",
            "tests/test_demo.py::test_a_body_length_that_is_not_a_count_of_bytes_gets_a_4xx"),
    Defence("demo.py", "a Content-Length in digits other than ASCII refused (400)",
            "(lengths[0].isascii() and lengths[0].isdigit())", "(lengths[0].isdigit())",
            "tests/test_defences.py::test_a_content_length_in_digits_other_than_ascii_is_refused"),
    Defence("demo.py", "MAX_CONNECTIONS open at once, the next get a 503",
            "threading.BoundedSemaphore(MAX_CONNECTIONS)", "threading.BoundedSemaphore(16 * MAX_CONNECTIONS)",
            "tests/test_demo.py::test_connections_beyond_the_cap_get_503_and_the_server_carries_on"),
    Defence("demo.py", "MAX_CONNECTIONS is 64",
            "MAX_CONNECTIONS = 64 ", "MAX_CONNECTIONS = 1024 ",
            "tests/test_defences.py::test_the_demos_limits_are_those_the_readme_promises"),
    Defence("demo.py", "a closed connection gives its place back",
            "        finally:\n            self.connections.release()", "        finally:\n            pass",
            "tests/test_demo.py::test_connections_beyond_the_cap_get_503_and_the_server_carries_on"),
    Defence("demo.py", "a listen backlog of 128, not 5, for bursts of clients",
            "    request_queue_size = 128", "    request_queue_size = 5",
            "tests/test_demo.py::test_a_burst_of_clients_waits_in_the_listen_backlog"),
    Defence("demo.py", "the server listens on 127.0.0.1 only",
            'Server(("127.0.0.1", port)', 'Server(("", port)',
            "tests/test_defences.py::test_the_server_listens_on_loopback_only"),
    Defence("demo.py", "no model: exit 2, nothing served",
            "        if not models:\n            raise UsageError", "        if False:\n            raise UsageError",
            "tests/test_defences.py::test_with_no_model_nothing_is_served"),
    Defence("demo.py", "a port that cannot be served on is one line, exit 2",
            "        try:\n            server = make_server(models, args.port)\n        except OSError as e:\n"
            "            raise UsageError(f\"cannot serve on 127.0.0.1:{args.port} ({e.strerror}); pass another --port\")"
            " from None\n",
            "        server = make_server(models, args.port)\n",
            "tests/test_defences.py::test_a_port_in_use_is_one_line_and_exit_2"),
    Defence("demo.py", "--port from 0 to 65535",
            "lambda v: 0 <= v <= 65535", "lambda v: True",
            "tests/test_demo.py::test_a_port_out_of_range_is_refused_in_one_line"),

    Defence("images.py", "only the formats asked for reach a decoder",
            "image = Image.open(source, formats=formats)", "image = Image.open(source)",
            "tests/test_images.py::test_a_format_we_do_not_read_never_reaches_a_decoder"),
    Defence("images.py", "TIFF is not among the formats read (libtiff writes to the terminal)",
            'FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")', 'FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")',
            "tests/test_defences.py::test_tiff_never_reaches_libtiff_unless_asked_for"),
    Defence("images.py", "an image over the pixel cap refused before decoding",
            "            if width * height > max_pixels:\n", "            if False:\n",
            "tests/test_images.py::test_an_image_over_the_pixel_cap_is_refused_before_decoding"),
    Defence("images.py", "MAX_PIXELS is 50,000,000",
            "MAX_PIXELS = 50_000_000", "MAX_PIXELS = 500_000_000",
            "tests/test_images.py::test_an_image_over_the_pixel_cap_is_refused_before_decoding"),
    Defence("images.py", "an image over Pillow's bomb limit refused in words of the cap",
            "        except Image.DecompressionBombError:\n"
            "            raise Unreadable(f\"over {max_pixels:,} pixels; scale it down\") from None\n", "",
            "tests/test_images.py::test_an_image_over_the_pixel_cap_is_refused_before_decoding"),
    Defence("images.py", "a file over MAX_FILE_BYTES refused before any decoder reads it",
            "        if size > MAX_FILE_BYTES:\n", "        if False:\n",
            "tests/test_images.py::test_a_file_over_the_size_cap_is_refused_before_any_decoder_reads_it"),
    Defence("images.py", "MAX_FILE_BYTES is 64 MB",
            "MAX_FILE_BYTES = 64 * 1024 * 1024", "MAX_FILE_BYTES = 1024 * 1024 * 1024",
            "tests/test_images.py::test_a_file_over_the_size_cap_is_refused_before_any_decoder_reads_it"),
    Defence("images.py", "a file refused for its size is closed",
            "            source.close()\n            raise Unreadable(", "            raise Unreadable(",
            "tests/test_defences.py::test_a_file_refused_for_its_size_is_closed"),
    Defence("images.py", "a path that is not a regular file is Unreadable, in one line",
            "        try:\n            source = paths.open_file(source)\n        except paths.NotAFile as e:\n"
            "            raise Unreadable(f\"{e}, not an image file\" if not (e.missing or e.unreadable) else str(e))"
            " from None\n",
            "        source = paths.open_file(source)\n",
            "tests/test_defences.py::test_a_path_that_is_not_a_regular_file_is_unreadable_in_one_line"),
    Defence("images.py", "a header a plugin cannot read is Unreadable",
            "        except Exception as e:  # a plugin that recognised the file can fail on its header in many ways\n"
            "            raise Unreadable(f\"cannot decode it ({one_line(e)})\") from None\n", "",
            "tests/test_images.py::test_fuzz_every_corrupted_image_is_read_or_one_problem"),
    Defence("images.py", "a decoder's failure is Unreadable",
            "                try:\n                    return upright_and_small(image)\n"
            "                except Exception as e:  # SyntaxError, struct.error, NotImplementedError, ... from a damaged "
            "file\n                    raise Unreadable(f\"cannot decode it ({one_line(e)})\") from None\n",
            "                return upright_and_small(image)\n",
            "tests/test_images.py::test_a_png_with_a_wrong_chunk_length_is_one_problem"),
    Defence("images.py", "the decoding budget held for each image's pixels",
            "            with DECODING.held(width * height):", "            with DECODING.held(0):",
            "tests/test_images.py::test_images_from_many_threads_never_decode_more_than_the_budget_at_once"),
    Defence("images.py", "the budget makes an image wait until it fits",
            "            self.changed.wait_for(lambda: self.free >= pixels)\n", "",
            "tests/test_defences.py::test_the_decoding_budget_makes_an_image_wait_for_room_and_lets_a_huge_one_through"),
    Defence("images.py", "an image over the whole budget waits for all of it, not forever",
            "        pixels = min(pixels, self.size)\n", "",
            "tests/test_defences.py::test_the_decoding_budget_makes_an_image_wait_for_room_and_lets_a_huge_one_through"),
    Defence("images.py", "the decoding budget is one image at MAX_PIXELS",
            "DECODING = Budget(MAX_PIXELS)", "DECODING = Budget(4 * MAX_PIXELS)",
            "tests/test_predict.py::test_reading_the_worst_allowed_images_takes_under_600_mb"),
    Defence("images.py", "Pillow's blocks of 64 MB, given back to the system when freed",
            "Image.core.set_block_size(64 * 1024 * 1024)\n", "",
            "tests/test_predict.py::test_reading_the_worst_allowed_images_takes_under_600_mb"),
    Defence("images.py", "a large JPEG decoded at reduced scale (WORK_SIDE)",
            "        image.draft(None, (max(1, image.width * WORK_SIDE // longest), "
            "max(1, image.height * WORK_SIDE // longest)))",
            "        pass",
            "tests/test_images.py::test_large_jpegs_decode_reduced_and_every_image_comes_back_small"),
    Defence("images.py", "every image scaled down to WORK_SIDE right after decoding",
            "    image = image.reduce(factor) if factor > 1 else image\n", "",
            "tests/test_images.py::test_large_jpegs_decode_reduced_and_every_image_comes_back_small"),
    Defence("images.py", "WORK_SIDE is 2048 px",
            "WORK_SIDE = 2048 ", "WORK_SIDE = 8192 ",
            "tests/test_images.py::test_large_jpegs_decode_reduced_and_every_image_comes_back_small"),
    Defence("images.py", "high-bit-depth greys beyond their range clipped, not wrapped",
            "np.clip(np.asarray(image, dtype=np.float32), 0, full)", "np.asarray(image, dtype=np.float32)",
            "tests/test_defences.py::test_float_greys_beyond_their_range_are_clipped_not_wrapped"),
    Defence("images.py", "Pillow's multi-line warnings silenced",
            'warnings.filterwarnings("ignore", module=r"PIL\\.")\n', "",
            "tests/test_defences.py::test_pillows_warnings_never_reach_the_terminal"),
    Defence("images.py", "a decoder's message made printable",
            '"".join(c if c.isprintable() else "?" for c in text[:120])', "text[:120]",
            "tests/test_defences.py::test_a_decoders_message_becomes_one_short_printable_line"),
    Defence("images.py", "a decoder's message cut to 120 characters",
            'for c in text[:120])', "for c in text)",
            "tests/test_defences.py::test_a_decoders_message_becomes_one_short_printable_line"),
    Defence("preprocess.py", "Blank: a few specks of ink are no digit",
            "    if ink.size < max(4, 2e-4 * small.size):\n", "    if ink.size == 0:\n",
            "tests/test_defences.py::test_specks_smudges_and_noise_are_blank"),
    Defence("preprocess.py", "Blank: ink must stand 6 noise deviations above the paper",
            "ink = flat[flat > max(6 * noise", "ink = flat[flat > max(3 * noise",
            "tests/test_defences.py::test_specks_smudges_and_noise_are_blank"),
    Defence("preprocess.py", "Blank: ink must stand at least 0.08 above the paper",
            "max(6 * noise, 0.08)]", "6 * noise]",
            "tests/test_defences.py::test_specks_smudges_and_noise_are_blank"),
    Defence("preprocess.py", "the ink is looked for on a thumbnail of WORK_SIDE",
            "    scale = max(1, math.ceil(max(grey.size) / WORK_SIDE))", "    scale = 1",
            "tests/test_defences.py::test_the_ink_is_looked_for_on_a_small_thumbnail"),
    Defence("preprocess.py", "the background plane fitted to 4,000 pixels at most",
            "    step = max(1, len(ys) // 4000)", "    step = 1",
            "tests/test_defences.py::test_the_background_plane_is_fitted_to_a_few_thousand_pixels_at_most"),
    Defence("preprocess.py", "a resized image keeps at least a pixel each way",
            "    size = (max(1, round(array.shape[1] * factor)), max(1, round(array.shape[0] * factor)))",
            "    size = (round(array.shape[1] * factor), round(array.shape[0] * factor))",
            "tests/test_defences.py::test_a_thin_line_along_the_images_edge_is_read_not_a_crash"),
    Defence("preprocess.py", "a digit heavy at its bottom or right pasted within the field",
            "    y0, x0 = max(0, top), max(0, left)", "    y0, x0 = top, left",
            "tests/test_defences.py::test_a_digit_heavy_at_one_end_is_centred_by_mass_within_the_field"),
    Defence("preprocess.py", "a digit heavy at its top or left pasted within the field",
            "    y1, x1 = min(28, top + digit.shape[0]), min(28, left + digit.shape[1])",
            "    y1, x1 = top + digit.shape[0], left + digit.shape[1]",
            "tests/test_defences.py::test_a_digit_heavy_at_one_end_is_centred_by_mass_within_the_field"),
    Defence("preprocess.py", "an unreadable image is a problem line, not a crash",
            "    try:\n        image = images.open_image(path)\n    except images.Unreadable as e:\n        return str(e)\n",
            "    image = images.open_image(path)\n",
            "tests/test_predict.py::test_bad_inputs_are_reported_and_the_good_ones_still_read"),
    Defence("preprocess.py", "the preview's thumbnail is small, never a full-size copy",
            'image.reduce(max(1, max(image.size) // 128)).convert("RGBA")', 'image.convert("RGBA")',
            "tests/test_predict.py::test_no_full_size_copy_is_kept"),

    Defence("predict.py", "find_images: an argument that cannot be looked at is a problem line",
            "        try:\n            mode = path.stat().st_mode\n        except OSError as e:\n"
            "            yield path, str(paths.problem(e, path))\n            continue\n",
            "        mode = path.stat().st_mode\n",
            "tests/test_predict.py::test_bad_inputs_are_reported_and_the_good_ones_still_read"),
    Defence("predict.py", "find_images: an argument that is not a regular file is refused",
            '            yield path, None if stat.S_ISREG(mode) else f"{paths.kind(mode)}, not an image file"',
            "            yield path, None",
            "tests/test_defences.py::test_find_images_names_an_argument_that_is_not_a_file"),
    Defence("predict.py", "find_images: a folder that cannot be listed is a problem line",
            "    try:\n        entries = sorted(folder.iterdir())\n    except OSError as e:\n"
            "        yield folder, f\"a folder, {paths.problem(e, folder)}\"\n        return\n",
            "    entries = sorted(folder.iterdir())\n",
            "tests/test_defences.py::test_a_folder_that_cannot_be_listed_is_one_problem"),
    Defence("predict.py", "find_images: a file in a folder that cannot be looked at is a problem line",
            "        try:\n            mode = path.stat().st_mode\n        except OSError as e:\n"
            "            problem = str(paths.problem(e, path))\n        else:\n",
            "        mode = path.stat().st_mode\n        if True:\n",
            "tests/test_defences.py::test_find_images_in_a_folder_names_what_it_cannot_read_and_skips_subfolders"),
    Defence("predict.py", "find_images: subfolders are not opened",
            "            if stat.S_ISDIR(mode):\n                continue\n", "",
            "tests/test_defences.py::test_find_images_in_a_folder_names_what_it_cannot_read_and_skips_subfolders"),
    Defence("predict.py", "find_images: a file in a folder that is not a regular file is refused",
            '            problem = None if stat.S_ISREG(mode) else f"{paths.kind(mode)}, not an image file"',
            "            problem = None",
            "tests/test_defences.py::test_find_images_in_a_folder_names_what_it_cannot_read_and_skips_subfolders"),
    Defence("predict.py", "find_images: only files named as images are read from a folder",
            "        if path.suffix.lower() in images.EXTENSIONS:\n", "        if True:\n",
            "tests/test_predict.py::test_bad_inputs_are_reported_and_the_good_ones_still_read"),
    Defence("predict.py", "find_images: a folder with no images is a problem line",
            "    if not found:\n        yield folder", "    if False:\n        yield folder",
            "tests/test_predict.py::test_bad_inputs_are_reported_and_the_good_ones_still_read"),
    Defence("predict.py", "AHEAD: at most 64 files read ahead of the one printed",
            "while len(pending) < AHEAD and (entry := next(entries, None)):",
            "while (entry := next(entries, None)):",
            "tests/test_defences.py::test_no_more_than_AHEAD_files_are_read_ahead"),
    Defence("predict.py", "reads not started are cancelled when the reader stops",
            "pool.shutdown(wait=False, cancel_futures=True)", "pool.shutdown(wait=False)",
            "tests/test_defences.py::test_reads_not_started_are_dropped_when_the_reader_stops"),
    Defence("predict.py", "an empty path refused, not read as the current folder",
            "    if not text:\n        raise argparse.ArgumentTypeError", "    if False:\n        raise argparse.ArgumentTypeError",
            "tests/test_predict.py::test_an_empty_path_is_refused_rather_than_read_as_the_current_folder"),
    Defence("predict.py", "--top from 1 to 10",
            "choices=range(1, 11)", "choices=range(0, 100)",
            "tests/test_defences.py::test_top_outside_1_to_10_is_refused"),
    Defence("predict.py", "--preview: a name that does not end in .png refused",
            '    if preview.suffix.lower() != ".png":\n', "    if False:\n",
            "tests/test_predict.py::test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work"
            "[not a .png]"),
    Defence("predict.py", "--preview: a path that cannot be looked at refused in one line",
            "    except OSError as e:\n        raise UsageError(f\"--preview {shown(preview)} is {paths.problem(e, preview)}; "
            "give another path\") from None\n", "",
            "tests/test_defences.py::test_a_preview_path_that_cannot_be_looked_at_is_refused"),
    Defence("predict.py", "--preview: a folder or anything but a regular file refused",
            "    if mode is not None and not stat.S_ISREG(mode):\n", "    if False:\n",
            "tests/test_predict.py::test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work"
            "[a folder]"),
    Defence("predict.py", "--preview: a read-only file refused",
            "    if mode is not None and not mode & 0o222:\n", "    if False:\n",
            "tests/test_predict.py::test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work"
            "[a read-only file]"),
    Defence("predict.py", "--preview: a file in a folder being read refused",
            "        if given.is_dir() and preview.parent.exists() and preview.parent.samefile(given):\n",
            "        if False:\n",
            "tests/test_predict.py::test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work"
            "[in a folder being read]"),
    Defence("predict.py", "--preview: one of the inputs refused",
            "        if mode is not None and given.exists() and preview.samefile(given):\n", "        if False:\n",
            "tests/test_predict.py::test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work"
            "[an input]"),
    Defence("predict.py", "--preview: resolved as the kernel will resolve it (nosuch/.. and links)",
            "    preview = Path(os.path.realpath(given_path))", "    preview = Path(given_path)",
            "tests/test_predict.py::test_a_preview_that_would_replace_what_it_must_not_is_refused_before_any_work"
            "[an input through a folder not yet made]"),
    Defence("predict.py", "--preview: a folder that cannot be written refused before any image is read",
            "    try:\n        files.make_writable(preview.parent)\n    except OSError as e:\n"
            "        raise UsageError(f\"--preview {shown(preview)} cannot be written ({e.strerror or e}); pass another \"\n"
            "                         f\"path\") from None\n",
            "    files.make_writable(preview.parent)\n",
            "tests/test_predict.py::test_a_preview_that_cannot_be_written_is_one_line"),
    Defence("predict.py", "--preview: a preview that cannot be saved is one line, exit 1",
            "        try:\n            files.save_figure(args.preview, figures.predictions(preview_rows, total=read_count))\n"
            "        except OSError as e:\n",
            "        files.save_figure(args.preview, figures.predictions(preview_rows, total=read_count))\n"
            "        if False:\n",
            "tests/test_predict.py::test_a_preview_that_cannot_be_written_is_one_line"),
    Defence("predict.py", "--preview keeps only the rows it draws (PREDICTIONS_SHOWN)",
            "if args.preview and len(preview_rows) < figures.PREDICTIONS_SHOWN:", "if args.preview:",
            "tests/test_defences.py::test_the_preview_keeps_only_the_rows_it_draws"),
    Defence("predict.py", "no checkpoint: exit 2, saying how to train one",
            "    if checkpoint is None:\n        raise UsageError", "    if False:\n        raise UsageError",
            "tests/test_predict.py::test_a_missing_or_incompatible_checkpoint_is_exit_2"),
    Defence("predict.py", "a model that answers NaN is an error line",
            "                if probabilities is not None and not torch.isfinite(probabilities).all():\n",
            "                if False:\n",
            "tests/test_defences.py::test_a_model_that_answers_nan_is_an_error_line_in_predict"),
    Defence("paths.py", "a pipe, device or folder refused before it is opened",
            "        if not stat.S_ISREG(mode):\n            raise NotAFile(kind(mode))\n        # O_NONBLOCK",
            "        # O_NONBLOCK",
            "tests/test_defences.py::test_pipes_devices_and_folders_are_refused_before_they_are_opened"),
    Defence("paths.py", "O_NONBLOCK: a pipe put in a file's place does not block the open",
            "os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY", "os.O_RDONLY | os.O_NOCTTY",
            "tests/test_defences.py::test_a_pipe_put_in_a_files_place_after_the_look_is_refused_without_blocking"),
    Defence("paths.py", "O_NOCTTY: a terminal put in a file's place never becomes the controlling terminal",
            "os.O_NONBLOCK | os.O_NOCTTY", "os.O_NONBLOCK",
            "tests/test_defences.py::test_a_terminal_put_in_a_files_place_never_becomes_the_controlling_terminal"),
    Defence("paths.py", "what was opened is checked again (fstat) and refused where not a regular file",
            "        mode = os.fstat(fd).st_mode\n        if not stat.S_ISREG(mode):\n            raise NotAFile(kind(mode))\n",
            "",
            "tests/test_defences.py::test_a_pipe_put_in_a_files_place_after_the_look_is_refused_without_blocking"),
    Defence("paths.py", "a file refused once open is closed",
            "    except BaseException:\n        os.close(fd)\n        raise", "    except BaseException:\n        raise",
            "tests/test_defences.py::test_a_file_refused_once_open_leaves_no_descriptor_open"),
    Defence("paths.py", "control characters in a shown path escaped",
            "    return text.translate(CONTROLS) if escape_controls else text", "    return text",
            "tests/test_predict.py::test_file_names_that_are_not_utf8_or_hold_a_newline_give_valid_output"),
    Defence("paths.py", "DEL escaped as the other control characters",
            "[*range(32), 127]", "range(32)",
            "tests/test_defences.py::test_shown_escapes_every_control_character_delete_included"),
    Defence("paths.py", "bytes that are not UTF-8 shown as \\xNN",
            '.decode("utf-8", "backslashreplace")', '.decode("utf-8", "surrogateescape")',
            "tests/test_predict.py::test_file_names_that_are_not_utf8_or_hold_a_newline_give_valid_output"),
]

# Training, checkpoints and result files: runs.py, files.py, checkpoints.py, main.py, cli.py, slots.py,
# significance.py.
RUNS = [
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

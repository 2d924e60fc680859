"""cli.py: what every program shares."""
import signal

import cli


def test_run_puts_back_the_signal_handlers_it_found():
    # A caller that goes on after run(), a test among others, is stopped by SIGTERM and SIGHUP as before it.
    before = {signum: signal.getsignal(signum) for signum in cli.ENDINGS}
    during = []
    assert cli.run("x", lambda: during.append([signal.getsignal(signum) for signum in cli.ENDINGS]) or 0) == 0
    assert during == [[signal.SIG_IGN if before[signum] is signal.SIG_IGN else cli.terminate for signum in cli.ENDINGS]]
    assert {signum: signal.getsignal(signum) for signum in cli.ENDINGS} == before

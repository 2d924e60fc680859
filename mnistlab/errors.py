"""The exceptions that the command-line tools turn into exit statuses (cli.run). No torch here, so that they can be
caught before torch is imported."""


class UsageError(Exception):
    """Bad input, exit status 2. The message names the problem and the fix."""


class RunFailed(Exception):
    """A run stopped on an error of its own, such as a diverging loss or a failed write: exit status 1."""


class Interrupted(Exception):
    """A signal stopped a run (`by`, a KeyboardInterrupt). Its checkpoint holds epochs_saved full epochs; its
    results and curves were written too unless a second signal came first or the write failed. done names the runs finished before."""

    def __init__(self, epochs_saved, by, results_written=True, done=()):
        super().__init__(f"interrupted after epoch {epochs_saved}" if epochs_saved else
                         "interrupted during the first epoch")
        self.epochs_saved, self.by, self.results_written, self.done = epochs_saved, by, results_written, done

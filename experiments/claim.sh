# Sourced by the experiment scripts so that two copies of one script (one per core) share its runs: a copy takes
# <dir>.lock before starting a run and skips runs another copy holds. flock(1) locks die with their process, so a
# copy killed mid-run leaves nothing stale: the next rerun takes the run up again.
claim() {  # claim <dir> <done file>: hold <dir>.lock on fd 9 until `release`; false when another copy holds it or
    # the run is done (checked under the lock: the other copy may have finished it since the caller last looked)
    mkdir -p "$(dirname "$1")"
    exec 9>"$1.lock"
    flock -n 9 && [ ! -e "$2" ] || { exec 9>&-; return 1; }
}
release() {  # release: drop the lock `claim` took
    exec 9>&-
}
settled() {  # settled <dir>: wait until no copy holds <dir>.lock (the other copy's run has ended)
    mkdir -p "$(dirname "$1")"
    flock "$1.lock" true
}

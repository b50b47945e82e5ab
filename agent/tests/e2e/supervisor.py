#!/usr/bin/python3
"""A plain supervisor for video-app, standing in for systemd in tests.

    supervisor.py --dir APPROOT --state DIR [--port N] [--port-file F] CMD

CMD is one of:
  start      run APPROOT/current/bin/video-app detached (its own session),
             stdout/stderr appended to DIR/app.log, pid in DIR/app.pid.
             Exits 0 once the app is ready (it has written its port file,
             which it does once listening: systemd's Type=notify would call
             that ready) or, if it never says so, is still alive 200 ms
             later; 1 if it died first (its exit status goes to the log);
             0 at once if already running. A build that crashes later still
             passes start, as with systemd.
  stop       SIGTERM to the process group, SIGKILL after 3 s. Exits 0.
  restart    stop, then start; exits as start does.
  is-active  exits 0 if the recorded process is alive (not a zombie, and
             not a recycled pid), 3 otherwise (systemctl's code).

The port comes from --port, else VIDEO_APP_PORT in this environment (passed
through). --port-file F is handed to video-app so callers can learn a port
chosen with --port 0; without it the app gets DIR/app.ready, the same file
under another name: start watches it as the app's readiness signal. No restart-on-failure: a crash is left for is-active
to see, which is what the agent's health window watches.

The agent's "command" service driver calls it as, for example:
  restart_cmd   = /usr/bin/python3 .../supervisor.py --dir D --state S restart
  is_active_cmd = /usr/bin/python3 .../supervisor.py --dir D --state S is-active

Files in DIR: app.pid (the pid, one line), app.start (the kernel start time
of that pid, against pid reuse), app.log, supervisor.lock, app.ready.
"""

import argparse
import fcntl
import os
import signal
import subprocess
import sys
import time

EXIT_INACTIVE = 3
STOP_TIMEOUT = 3.0
# How long an app that never says it is ready must live to pass start;
# $SUPERVISOR_SETTLE_MS changes it (tests).
START_SETTLE = 0.2
READY_POLL = 0.005


def proc_stat(pid):
    """(state, starttime) of pid from /proc, or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    rest = data[data.rfind(")") + 2:].split()
    if len(rest) < 20:
        return None
    return rest[0], rest[19]


def write_atomic(path, text):
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


class Supervisor:
    def __init__(self, approot, state, port, port_file):
        self.approot = approot
        self.state = state
        self.port = port
        self.port_file = port_file
        self.pid_file = os.path.join(state, "app.pid")
        self.start_file = os.path.join(state, "app.start")
        self.log_file = os.path.join(state, "app.log")
        # The app writes its port here once listening: its readiness signal.
        self.ready_file = port_file or os.path.join(state, "app.ready")

    def log(self, msg):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with open(self.log_file, "a") as f:
            f.write(f"{stamp} supervisor: {msg}\n")

    def recorded_pid(self):
        text = read_text(self.pid_file)
        try:
            pid = int(text)
        except (TypeError, ValueError):
            return None
        return pid if pid > 0 else None

    def alive(self, pid):
        st = proc_stat(pid)
        if st is None or st[0] in ("Z", "X", "x"):
            return False
        want = read_text(self.start_file)
        return not want or want == st[1]

    def running_pid(self):
        pid = self.recorded_pid()
        return pid if pid is not None and self.alive(pid) else None

    def forget(self):
        for path in (self.pid_file, self.start_file):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def start(self):
        pid = self.running_pid()
        if pid is not None:
            return 0
        binary = os.path.join(self.approot, "current", "bin", "video-app")
        if not os.access(binary, os.X_OK):
            self.log(f"start failed: {binary} is not executable")
            print(f"supervisor: {binary} is not executable", file=sys.stderr)
            return 1
        env = dict(os.environ)
        if self.port is not None:
            env["VIDEO_APP_PORT"] = str(self.port)
        try:
            os.unlink(self.ready_file)
        except FileNotFoundError:
            pass
        argv = [binary, "--port-file", self.ready_file]
        target = os.path.realpath(os.path.join(self.approot, "current"))
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=self.state, env=env, start_new_session=True, close_fds=True)
        st = proc_stat(proc.pid)
        write_atomic(self.start_file, (st[1] if st else "") + "\n")
        write_atomic(self.pid_file, f"{proc.pid}\n")
        self.log(f"started pid {proc.pid}: {binary} -> {target}")
        # We are its parent until we exit, so an early death is ours to reap.
        # Ready (the port file is there) ends the wait at once: a fixed settle
        # time made every restart cost 200 ms (agent/bench/README.md).
        deadline = time.monotonic() + settle_time()
        while True:
            rc = proc.poll()
            if rc is not None:
                self.log(f"pid {proc.pid} died at start: {describe(rc)}")
                print(f"supervisor: video-app died at start: {describe(rc)}",
                      file=sys.stderr)
                return 1
            if os.path.exists(self.ready_file) or time.monotonic() >= deadline:
                break
            time.sleep(READY_POLL)
        # Not waited for: once we exit, init (or a subreaper) adopts it.
        return 0

    def stop(self):
        pid = self.running_pid()
        if pid is None:
            self.forget()
            return 0
        self.signal(pid, signal.SIGTERM)
        if not self.wait_gone(pid, STOP_TIMEOUT):
            self.log(f"pid {pid} ignored SIGTERM for {STOP_TIMEOUT:g} s: SIGKILL")
            self.signal(pid, signal.SIGKILL)
            self.wait_gone(pid, STOP_TIMEOUT)
        self.log(f"stopped pid {pid}")
        self.forget()
        return 0

    def signal(self, pid, sig):
        # video-app leads its own session and group: take its children too.
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def wait_gone(self, pid, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive(pid):
                return True
            time.sleep(0.02)
        return not self.alive(pid)

    def is_active(self):
        return 0 if self.running_pid() is not None else EXIT_INACTIVE


def settle_time():
    try:
        ms = int(os.environ.get("SUPERVISOR_SETTLE_MS", ""))
    except ValueError:
        return START_SETTLE
    return ms / 1000 if 0 <= ms <= 60000 else START_SETTLE


def describe(rc):
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


def main(argv=None):
    ap = argparse.ArgumentParser(description="Plain supervisor for video-app (tests).")
    ap.add_argument("--dir", required=True, help="app root: holds current/bin/video-app")
    ap.add_argument("--state", required=True, help="directory for app.pid and app.log")
    ap.add_argument("--port", type=int, help="VIDEO_APP_PORT for the app")
    ap.add_argument("--port-file", help="passed to video-app as --port-file")
    ap.add_argument("command", choices=["start", "stop", "restart", "is-active"])
    args = ap.parse_args(argv)

    os.makedirs(args.state, exist_ok=True)
    sup = Supervisor(os.path.abspath(args.dir), os.path.abspath(args.state), args.port,
                     os.path.abspath(args.port_file) if args.port_file else None)
    if args.command == "is-active":
        return sup.is_active()
    # One changer at a time; is-active needs no lock.
    with open(os.path.join(sup.state, "supervisor.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if args.command == "start":
            return sup.start()
        if args.command == "stop":
            return sup.stop()
        sup.stop()
        return sup.start()


if __name__ == "__main__":
    sys.exit(main())

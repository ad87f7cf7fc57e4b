/**
 * The helper every one-off (`pier run`) starts in: a small Python program Pier ships inside its own code and hands
 * to `/usr/bin/python3 -I -S -c` (so no file an app controls is ever read for it: not the release, not the venv,
 * not a `pty.py` in the working folder, not PYTHON* variables). It runs as the app's user. Node has no PTY and
 * node-pty is not installed; Python's `os.openpty` + `termios` (TIOCSWINSZ) are in every Debian image, and a
 * helper that stays the command's parent also gives one place to deliver signals, window sizes and the hang-up.
 *
 * It waits on fd 3 (a socket pair to the runner) for one JSON line `{argv, env, pty, nofile, graceMs}` — sent only
 * once the runner has put the helper into the one-off's cgroups, so nothing of the app runs outside its limits —
 * then forks the command in a session of its own, with the given environment (the helper's own is minimal).
 * Without a terminal the command gets the helper's stdin/stdout/stderr pipes directly; with one, the helper
 * relays between them and the PTY master. Lines on fd 3, runner → helper: `w ROWS COLS` (resize), `k SIGNUM`
 * (signal the command's process group), `h` (hang up: SIGHUP, SIGKILL after graceMs). Helper → runner:
 * `p PID`, `e MESSAGE` (the command could not be executed), `x CODE SIGNUM` (it ended). EOF on fd 3 (the runner
 * died) hangs up too.
 */

/** Interpreter of the helper: Debian's, root's (never the venv's, which an app's build made). */
export const HELPER_PYTHON = '/usr/bin/python3';

/** Arguments that run the helper: isolated (-I), without site (-S), from this string. */
export function helperArgs(): string[] {
  return ['-I', '-S', '-c', HELPER_SOURCE];
}

const HELPER_SOURCE = String.raw`
import errno, fcntl, json, os, select, signal, struct, sys, termios, resource, time
CTL = 3
buf = b''
while b'\n' not in buf:
    chunk = os.read(CTL, 65536)
    if not chunk:
        os._exit(111)
    buf += chunk
first, buf = buf.split(b'\n', 1)
start = json.loads(first.decode())
argv = start['argv']
env = start['env']
size = start.get('pty')
grace = start.get('graceMs', 2000) / 1000.0

def say(text):
    try:
        os.write(CTL, (text + '\n').encode('utf-8', 'replace'))
    except OSError:
        pass

nofile = start.get('nofile')
if nofile:
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    except (ValueError, OSError):
        pass

master = None
if size:
    master, slave = os.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', size['rows'], size['cols'], 0, 0))
errr, errw = os.pipe()
pid = os.fork()
if pid == 0:
    try:
        os.close(errr)
        os.close(CTL)
        os.setsid()
        if master is not None:
            os.close(master)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
            if slave > 2:
                os.close(slave)
        for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
            signal.signal(s, signal.SIG_DFL)
        os.execvpe(argv[0], argv, env)
    except OSError as e:
        os.write(errw, ('%s: %s' % (argv[0], e.strerror or e)).encode('utf-8', 'replace'))
    os._exit(127)
os.close(errw)
if master is not None:
    os.close(slave)
err = b''
while True:
    c = os.read(errr, 4096)
    if not c:
        break
    err += c
os.close(errr)
if err:
    say('e ' + err.decode('utf-8', 'replace').replace('\n', ' '))
    os.waitpid(pid, 0)
    say('x 127 0')
    os._exit(127)
say('p %d' % pid)

# Pipes: the command holds them now; the helper lets go, so their ends reach the runner when the command's do.
devnull = os.open('/dev/null', os.O_RDWR)
if master is None:
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
else:
    os.dup2(devnull, 2)
    fl = fcntl.fcntl(master, fcntl.F_GETFL)
    fcntl.fcntl(master, fcntl.F_SETFL, fl | os.O_NONBLOCK)

wr, ww = os.pipe()
for fd in (wr, ww):
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
signal.set_wakeup_fd(ww)
signal.signal(signal.SIGCHLD, lambda *a: None)
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGHUP, signal.SIG_IGN)
signal.signal(signal.SIGPIPE, signal.SIG_IGN)

status = None
stdin_open = master is not None
ctl_open = True
pending = b''
kill_at = None

def killpg(sig):
    try:
        os.killpg(pid, sig)
    except OSError:
        pass

def hangup():
    global master, kill_at
    killpg(signal.SIGHUP)
    if master is not None:
        try:
            os.close(master)
        except OSError:
            pass
        master = None
    if kill_at is None:
        kill_at = time_now() + grace

def time_now():
    return time.monotonic()

def write_all(fd, data):
    while data:
        try:
            n = os.write(fd, data)
        except OSError as e:
            if e.errno == errno.EINTR:
                continue
            return False
        data = data[n:]
    return True

while True:
    if status is None:
        try:
            p, st = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            p, st = pid, 0
        if p == pid:
            status = st
    if status is not None and master is None:
        break
    if kill_at is not None and time_now() >= kill_at:
        killpg(signal.SIGKILL)
        kill_at = time_now() + 3600
    r = [wr]
    if ctl_open:
        r.append(CTL)
    if master is not None:
        r.append(master)
    if stdin_open and len(pending) < 65536:
        r.append(0)
    w = [master] if master is not None and pending else []
    timeout = 0.05 if status is not None else (0.1 if kill_at is not None else None)
    try:
        ready_r, ready_w, _ = select.select(r, w, [], timeout)
    except InterruptedError:
        continue
    if status is not None and not ready_r and not ready_w:
        break
    if wr in ready_r:
        try:
            os.read(wr, 4096)
        except OSError:
            pass
    if master is not None and master in ready_r:
        try:
            data = os.read(master, 65536)
        except OSError:
            data = b''
        if data:
            write_all(1, data)
        else:
            try:
                os.close(master)
            except OSError:
                pass
            master = None
            if status is None:
                continue
    if master is not None and master in ready_w and pending:
        try:
            n = os.write(master, pending)
            pending = pending[n:]
        except BlockingIOError:
            pass
        except OSError:
            pending = b''
    if stdin_open and 0 in ready_r:
        data = os.read(0, 65536)
        if data:
            pending += data
        else:
            stdin_open = False
            pending += b'\x04'
    if ctl_open and CTL in ready_r:
        chunk = os.read(CTL, 65536)
        if not chunk:
            ctl_open = False
            hangup()
            continue
        buf += chunk
        while b'\n' in buf:
            line, buf = buf.split(b'\n', 1)
            parts = line.decode().split()
            if not parts:
                continue
            if parts[0] == 'w' and master is not None and len(parts) == 3:
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack('HHHH', int(parts[1]), int(parts[2]), 0, 0))
            elif parts[0] == 'k' and len(parts) == 2:
                killpg(int(parts[1]))
            elif parts[0] == 'h':
                hangup()

if status is None:
    _, status = os.waitpid(pid, 0)
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    say('x %d %d' % (128 + sig, sig))
    os._exit(128 + sig)
code = os.WEXITSTATUS(status)
say('x %d 0' % code)
os._exit(code)
`;

"""A process's CPU time, resident memory and thread count, from /proc (shared by the
attack scripts here and in fifth/)."""
import os


def cpu_secs(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _status(pid, field):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def rss_kib(pid):
    return _status(pid, "VmRSS")


def threads(pid):
    return _status(pid, "Threads")

"""Set a title far longer than this process's command line, and a name longer
than 15 bytes; print whether set_title says it worked, how many of the title's
bytes /proc/self/cmdline shows, and the name /proc/self/comm shows."""

from bgjobs import procs

ok = procs.set_title("t" * 100_000, "a-name-longer-than-fifteen")
with open("/proc/self/cmdline", "rb") as f:
    kept = f.read().count(b"t")
with open("/proc/self/comm") as f:
    name = f.read()
print(ok, kept, name)

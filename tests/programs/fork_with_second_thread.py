"""Print what fork.start gives a process that has a second thread."""

import threading

from bgjobs import fork

threading.Thread(target=threading.Event().wait, daemon=True).start()
print(fork.start())
